//! End-to-end: the connection states tcptrace reports are those of the real
//! sockets. Real sockets in two namespaces joined by a veth pair are driven
//! into each state; tcptrace traces `if_a` in namespace a (it sees both
//! directions), and at each step the latest `STATE` line for each endpoint
//! must name the state `ss -tan` gives for that socket in its own namespace
//! (a socket `ss` does not list is `CLOSED`). Each scenario runs twice: with
//! every packet traced, and with `--flags SYN,FIN,RST`, where the kernel's
//! state-only records must give the same states. Needs root; run by
//! `cargo xtask test`.
//!
//! States that last only a round trip are held by a classic BPF socket filter
//! that drops everything a socket receives (`SO_ATTACH_FILTER`): the segment
//! still crosses `if_a`, but the socket never gets it, so neither the socket
//! nor its answer moves on until the filter is detached. Holding segments
//! this way is deterministic and needs no tc action or netfilter.

mod support;

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{BufRead, BufReader, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, RawFd},
    process::{Child, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use support::netns::{NetPair, in_ns, is_root, linger_zero};

/// How long a step may take to show up in both `ss` and tcptrace.
const STEP: Duration = Duration::from_secs(5);
/// For a step that waits for a SYN retransmission (1 s, then 2 s later).
const SYN_RETRY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// tcptrace sees every packet.
    All,
    /// `--flags SYN,FIN,RST`: the other state changes come from the kernel's
    /// state-only records.
    Flags,
}

/// What tcptrace printed so far.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    /// Latest state of each (endpoint, peer), as `tcpdump -n` prints them.
    state: HashMap<(String, String), String>,
    /// Every state each (endpoint, peer) went to, in order.
    history: HashMap<(String, String), Vec<String>>,
}

/// tcptrace on `if_a` in namespace a, its standard output parsed as it comes.
struct Tracer {
    mode: Mode,
    child: Child,
    seen: Arc<Mutex<Seen>>,
    reader: Option<JoinHandle<()>>,
    stderr: mpsc::Receiver<String>,
}

impl Tracer {
    fn start(pair: &NetPair, ports: &[u16], mode: Mode) -> Self {
        let mut cmd = NetPair::command(&pair.a, env!("CARGO_BIN_EXE_tcptrace"));
        cmd.args(["-i", &pair.if_a, "-n", "-l"]);
        for p in ports {
            cmd.args(["--port", &p.to_string()]);
        }
        if mode == Mode::Flags {
            cmd.args(["--flags", "SYN,FIN,RST"]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn tcptrace");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = s.lock().unwrap();
                if let Some((ep, peer, new)) = parse_state(&line) {
                    s.state.insert((ep.clone(), peer.clone()), new.clone());
                    s.history.entry((ep, peer)).or_default().push(new);
                }
                s.lines.push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let t = Self { mode, child, seen, reader: Some(reader), stderr: rx };
        // Loading the programs takes seconds of kernel time (the verifier),
        // longer when many tests start at once.
        loop {
            match t.stderr.recv_timeout(Duration::from_secs(120)) {
                Ok(l) if l.contains("listening on") => break,
                Ok(_) => {}
                Err(e) => panic!("tcptrace did not start: {e}"),
            }
        }
        t
    }

    /// The latest state tcptrace gave `ep` (talking to `peer`); `CLOSED` when
    /// it never named it.
    fn state(&self, ep: &Ep) -> String {
        let key = (dotted(ep.local), dotted(ep.peer));
        self.seen.lock().unwrap().state.get(&key).cloned().unwrap_or_else(|| "CLOSED".into())
    }

    fn history(&self, ep: &Ep) -> Vec<String> {
        let key = (dotted(ep.local), dotted(ep.peer));
        self.seen.lock().unwrap().history.get(&key).cloned().unwrap_or_default()
    }

    fn output(&self) -> String {
        self.seen.lock().unwrap().lines.iter().fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
    }

    /// SIGINT, then checks the exit status, and that with `--flags` only
    /// SYN/FIN/RST packet lines were printed. Returns the whole output.
    fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let err: Vec<String> = self.stderr.try_iter().collect();
        let out = self.output();
        assert!(status.success(), "tcptrace: {status}\n{}\n{out}", err.join("\n"));
        if self.mode == Mode::Flags {
            for l in out.lines().filter(|l| l.contains(" Flags [")) {
                let f = l.split("Flags [").nth(1).unwrap();
                assert!(f.starts_with(['S', 'F', 'R']), "--flags SYN,FIN,RST printed {l}");
            }
        }
        out
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `(endpoint, peer, new state)` of a `STATE` line:
/// `TIME STATE 10.0.0.1.40036 CLOSED -> SYN_SENT (sent SYN, peer 10.0.0.2.5555)`.
fn parse_state(line: &str) -> Option<(String, String, String)> {
    let t: Vec<&str> = line.split_whitespace().collect();
    let i = t.iter().position(|w| *w == "STATE")?;
    if t.get(i + 3) != Some(&"->") {
        return None;
    }
    let peer = t.last()?.strip_suffix(')')?;
    Some((t[i + 1].to_string(), peer.to_string(), t[i + 4].to_string()))
}

/// `addr.port`, as tcpdump -n prints it.
fn dotted(a: SocketAddr) -> String {
    format!("{}.{}", a.ip(), a.port())
}

/// One endpoint of a connection: a socket in namespace `ns`.
struct Ep {
    name: &'static str,
    ns: String,
    local: SocketAddr,
    peer: SocketAddr,
}

impl Ep {
    fn new(name: &'static str, ns: &str, local: SocketAddr, peer: SocketAddr) -> Self {
        Self { name, ns: ns.to_string(), local, peer }
    }
}

/// `ss -tanH state all` in `ns`.
fn ss(ns: &str) -> String {
    let out = NetPair::command(ns, "ss").args(["-tanH", "state", "all"]).output().expect("run ss");
    assert!(out.status.success(), "ss: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The state `ss` gives the socket of `ep` (in RFC 9293's spelling), from
/// `ss` output of its namespace; `CLOSED` when it is not listed.
fn ss_state(listing: &str, ep: &Ep) -> String {
    let (local, peer) = (ep.local.to_string(), ep.peer.to_string());
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5 && f[3] == local && f[4] == peer {
            let name = match f[0] {
                "SYN-SENT" => "SYN_SENT",
                "SYN-RECV" => "SYN_RECEIVED",
                "ESTAB" => "ESTABLISHED",
                "FIN-WAIT-1" => "FIN_WAIT_1",
                "FIN-WAIT-2" => "FIN_WAIT_2",
                "CLOSE-WAIT" => "CLOSE_WAIT",
                "CLOSING" => "CLOSING",
                "LAST-ACK" => "LAST_ACK",
                "TIME-WAIT" => "TIME_WAIT",
                "CLOSE" => "CLOSED",
                other => panic!("unexpected ss state {other}: {line}"),
            };
            return name.to_string();
        }
    }
    "CLOSED".to_string()
}

/// Waits until, for every endpoint, `ss` and tcptrace give the same state
/// and it is one of those allowed; fails with both views after `timeout`.
/// Returns the states reached.
fn expect(t: &Tracer, step: &str, want: &[(&Ep, &[&str])], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut listings: HashMap<&str, String> = HashMap::new();
        let mut rows = Vec::new();
        let mut ok = true;
        for (ep, allowed) in want {
            let listing = listings.entry(ep.ns.as_str()).or_insert_with(|| ss(&ep.ns));
            let (real, traced) = (ss_state(listing, ep), t.state(ep));
            ok &= real == traced && allowed.contains(&real.as_str());
            rows.push((ep, allowed, real, traced));
        }
        if ok {
            return rows.into_iter().map(|r| r.2).collect();
        }
        if Instant::now() >= deadline {
            let mut msg = format!("{:?}, {step}: tcptrace's states are not the sockets'\n", t.mode);
            for (ep, allowed, real, traced) in &rows {
                let _ = writeln!(
                    msg,
                    "  {} {} (peer {}): ss {real}, tcptrace {traced}, expected one of {allowed:?}",
                    ep.name, ep.local, ep.peer
                );
            }
            for (ns, listing) in &listings {
                let _ = write!(msg, "--- ss in {ns}\n{listing}");
            }
            let _ = write!(msg, "--- tcptrace\n{}", t.output());
            panic!("{msg}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Sockets, made with libc where std has no knob (backlog, bind before
// connect, non-blocking connect, socket filters).

/// `a` as a C socket address and its length.
fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn check(rc: libc::c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

/// A new TCP socket bound to `addr` (port 0: any), with SO_REUSEADDR.
fn bound_socket(addr: SocketAddr) -> RawFd {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket calls on a fd we own, with correctly sized arguments.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        check(fd, "socket");
        let one: libc::c_int = 1;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        check(rc, "SO_REUSEADDR");
        let (sa, len) = sockaddr(addr);
        check(libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len), "bind");
        fd
    }
}

/// `ip`, any port.
fn any_port(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 0)
}

/// A listener in namespace `ns` on `ip` (any port) with this backlog.
fn listener(ns: &str, ip: &str, backlog: i32) -> (TcpListener, SocketAddr) {
    let at = any_port(ip);
    let l = in_ns(ns, move || {
        let fd = bound_socket(at);
        // SAFETY: listen on our own bound socket, which the listener then owns.
        unsafe {
            check(libc::listen(fd, backlog), "listen");
            TcpListener::from_raw_fd(fd)
        }
    })
    .join()
    .unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A TCP socket in namespace `ns`, bound to `at`, and its address.
fn socket_in(ns: &str, at: SocketAddr) -> (TcpStream, SocketAddr) {
    let s = in_ns(ns, move || {
        // SAFETY: the stream owns the new fd from here on.
        unsafe { TcpStream::from_raw_fd(bound_socket(at)) }
    })
    .join()
    .unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// connect() `s` to `to`. With `wait`, it blocks and its result is returned;
/// without, the socket is made non-blocking and the connection only started.
fn start_connect(s: &TcpStream, to: SocketAddr, wait: bool) -> std::io::Result<()> {
    s.set_nonblocking(!wait).unwrap();
    let (sa, len) = sockaddr(to);
    // SAFETY: connect on our socket with a valid address.
    let rc = unsafe { libc::connect(s.as_raw_fd(), (&sa as *const libc::sockaddr_storage).cast(), len) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if !wait && e.raw_os_error() == Some(libc::EINPROGRESS) { Ok(()) } else { Err(e) }
}

/// A client socket in namespace `ns`, bound to `from`, connecting to `to`
/// (see [`start_connect`]); `filter` attaches [`drop_input`] first.
fn connect(
    ns: &str,
    from: SocketAddr,
    to: SocketAddr,
    wait: bool,
    filter: bool,
) -> (TcpStream, SocketAddr, std::io::Result<()>) {
    let (s, local) = socket_in(ns, from);
    if filter {
        drop_input(&s, true);
    }
    let res = start_connect(&s, to, wait);
    (s, local, res)
}

/// With `on`, attaches a classic BPF socket filter that drops every segment
/// the socket would receive; without, detaches it.
fn drop_input(s: &impl AsRawFd, on: bool) {
    let fd = s.as_raw_fd();
    let rc = if on {
        let mut prog = [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 }];
        let fprog = libc::sock_fprog { len: 1, filter: prog.as_mut_ptr() };
        // SAFETY: a valid one-instruction program; the kernel copies it.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        }
    } else {
        let zero: libc::c_int = 0;
        // SAFETY: SO_DETACH_FILTER ignores its value.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                (&zero as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    check(rc, if on { "SO_ATTACH_FILTER" } else { "SO_DETACH_FILTER" });
}

/// A client in a and a server in b (IPv4 or IPv6, as `to`), both
/// `ESTABLISHED` (checked).
struct Conn {
    client: TcpStream,
    server: TcpStream,
    c: Ep,
    s: Ep,
}

fn open(pair: &NetPair, t: &Tracer, listener: &TcpListener, to: SocketAddr) -> Conn {
    let from = any_port(if to.is_ipv4() { &pair.addr_a } else { &pair.addr6_a });
    let (client, local, res) = connect(&pair.a, from, to, true, false);
    res.expect("connect");
    let (server, _) = listener.accept().unwrap();
    let c = Ep::new("client", &pair.a, local, to);
    let s = Ep::new("server", &pair.b, to, local);
    expect(t, "established", &[(&c, &["ESTABLISHED"]), (&s, &["ESTABLISHED"])], STEP);
    Conn { client, server, c, s }
}

fn setup() -> NetPair {
    assert!(is_root(), "run as root (cargo xtask test does)");
    NetPair::new()
}

/// (a) A SYN to a listener whose accept queue is full: Linux drops it, so the
/// client is `SYN_SENT` and the server has no socket for it (`CLOSED`). Once
/// accept() makes room, a retransmitted SYN gets in.
fn syn_sent_backlog_full(mode: Mode) {
    let pair = setup();
    // Backlog 0: one connection fills the accept queue.
    let (listener, to) = listener(&pair.b, &pair.addr_b, 0);
    let t = Tracer::start(&pair, &[to.port()], mode);
    // The first connection completes its handshake and waits in the accept
    // queue, which is then full.
    let (_first, local, res) = connect(&pair.a, any_port(&pair.addr_a), to, true, false);
    res.expect("connect");
    let c1 = Ep::new("client 1", &pair.a, local, to);
    let s1 = Ep::new("server 1 (not accepted)", &pair.b, to, local);
    expect(&t, "queued, not accepted", &[(&c1, &["ESTABLISHED"]), (&s1, &["ESTABLISHED"])], STEP);

    let (_second, local, res) = connect(&pair.a, any_port(&pair.addr_a), to, false, false);
    res.expect("connect");
    let c = Ep::new("client 2", &pair.a, local, to);
    let s = Ep::new("server 2", &pair.b, to, local);
    expect(&t, "SYN to a full accept queue", &[(&c, &["SYN_SENT"]), (&s, &["CLOSED"])], STEP);
    assert_eq!(t.history(&s), Vec::<String>::new(), "the server never answered:\n{}", t.output());

    // accept() makes room: a retransmitted SYN gets in.
    let acceptor = std::thread::spawn(move || {
        let one = listener.accept().unwrap().0;
        let two = listener.accept().unwrap().0;
        (one, two)
    });
    expect(&t, "SYN retransmitted after accept()", &[(&c, &["ESTABLISHED"]), (&s, &["ESTABLISHED"])], SYN_RETRY);
    expect(&t, "first connection unchanged", &[(&c1, &["ESTABLISHED"]), (&s1, &["ESTABLISHED"])], STEP);
    let _ = acceptor.join().unwrap();
    t.stop();
}

/// (a) The SYN-ACK is lost on its way to the client (its socket filter drops
/// it): the client stays `SYN_SENT`, the server `SYN_RECEIVED`. Without the
/// filter, the retransmissions complete the handshake.
fn syn_received_synack_lost(mode: Mode) {
    let pair = setup();
    let (listener, to) = listener(&pair.b, &pair.addr_b, 16);
    let t = Tracer::start(&pair, &[to.port()], mode);
    let (client, local, res) = connect(&pair.a, any_port(&pair.addr_a), to, false, true);
    res.expect("connect");
    let c = Ep::new("client", &pair.a, local, to);
    let s = Ep::new("server", &pair.b, to, local);
    expect(&t, "SYN-ACK lost", &[(&c, &["SYN_SENT"]), (&s, &["SYN_RECEIVED"])], STEP);
    drop_input(&client, false);
    expect(&t, "handshake completed by retransmission", &[(&c, &["ESTABLISHED"]), (&s, &["ESTABLISHED"])], SYN_RETRY);
    drop(listener);
    t.stop();
}

/// (b, c, d) Established; one side (the client, or the server with
/// `server_first`) shuts down its sending side while the other's filter
/// drops its FIN (`FIN_WAIT_1` / `ESTABLISHED`, held), then without it
/// (`FIN_WAIT_2` / `CLOSE_WAIT`);
/// the other closes while the first one's filter drops its FIN (`LAST_ACK` /
/// `FIN_WAIT_2`, held); without the filter, the retransmitted FIN gets in
/// (`TIME_WAIT` / `CLOSED`).
fn fin_close_by(mode: Mode, server_first: bool, v6: bool) {
    fin_close_on(setup(), mode, server_first, v6);
}

/// [`fin_close_by`] on `pair`.
fn fin_close_on(pair: NetPair, mode: Mode, server_first: bool, v6: bool) {
    let (listener, to) = listener(&pair.b, if v6 { &pair.addr6_b } else { &pair.addr_b }, 16);
    let t = Tracer::start(&pair, &[to.port()], mode);
    let Conn { client, server, c, s } = open(&pair, &t, &listener, to);
    let (active, passive, a, p) = if server_first { (server, client, &s, &c) } else { (client, server, &c, &s) };

    drop_input(&passive, true);
    active.shutdown(Shutdown::Write).unwrap();
    expect(
        &t,
        "first side shut down writing, its FIN not received",
        &[(a, &["FIN_WAIT_1"]), (p, &["ESTABLISHED"])],
        STEP,
    );
    drop_input(&passive, false);
    expect(&t, "FIN retransmitted and acknowledged", &[(a, &["FIN_WAIT_2"]), (p, &["CLOSE_WAIT"])], STEP);

    drop_input(&active, true);
    drop(passive);
    expect(&t, "other side closed, its FIN not received", &[(a, &["FIN_WAIT_2"]), (p, &["LAST_ACK"])], STEP);

    drop_input(&active, false);
    expect(&t, "FIN retransmitted and acknowledged", &[(a, &["TIME_WAIT"]), (p, &["CLOSED"])], STEP);
    let out = t.stop();
    let who = if server_first { "server" } else { "client" };
    assert!(out.contains(&format!("CONN {} > {}: fin, {who} closed first", dotted(c.local), dotted(to))), "{out}");
}

fn fin_close(mode: Mode) {
    fin_close_by(mode, false, false);
}

fn fin_close_server_first(mode: Mode) {
    fin_close_by(mode, true, false);
}

fn fin_close_ipv6(mode: Mode) {
    fin_close_by(mode, false, true);
}

/// [`fin_close_ipv6`] with segment routing headers in both directions (see
/// [`NetPair::segment_routing`]): the IPv6 destination of each segment is
/// the first segment, not the peer's address, and the connection must still
/// be followed as one, with the peers' own addresses.
fn fin_close_segment_routing(mode: Mode) {
    let pair = setup();
    pair.segment_routing();
    fin_close_on(pair, mode, false, true);
}

/// After the server closed first and sits in `TIME_WAIT`, the client opens
/// a new connection from the same port: Linux lets the SYN take over the
/// `TIME_WAIT` socket, and tcptrace must follow the new connection.
fn time_wait_reused(mode: Mode) {
    let pair = setup();
    let (listener, to) = listener(&pair.b, &pair.addr_b, 16);
    let t = Tracer::start(&pair, &[to.port()], mode);
    let Conn { client, server, c, s } = open(&pair, &t, &listener, to);
    server.shutdown(Shutdown::Write).unwrap();
    expect(&t, "server shut down writing", &[(&s, &["FIN_WAIT_2"]), (&c, &["CLOSE_WAIT"])], STEP);
    drop(client);
    expect(&t, "client closed", &[(&s, &["TIME_WAIT"]), (&c, &["CLOSED"])], STEP);
    drop(server);

    let (again, local, res) = connect(&pair.a, c.local, to, true, false);
    res.expect("connect from the same port");
    assert_eq!(local, c.local);
    let (_served, _) = listener.accept().unwrap();
    expect(&t, "4-tuple reused", &[(&c, &["ESTABLISHED"]), (&s, &["ESTABLISHED"])], STEP);
    let hs = t.history(&s);
    let out = t.stop();
    let want = [
        "SYN_RECEIVED",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "FIN_WAIT_2",
        "TIME_WAIT",
        "CLOSED",
        "SYN_RECEIVED",
        "ESTABLISHED",
    ];
    assert_eq!(hs, want, "{out}");
    drop(again);
}

/// Simultaneous open: each side connects to the other's bound port while
/// its filter drops everything (both `SYN_SENT`, held); without the
/// filters, the retransmitted SYNs cross and both end `ESTABLISHED`.
fn simultaneous_open(mode: Mode) {
    let pair = setup();
    let (sa, at_a) = socket_in(&pair.a, any_port(&pair.addr_a));
    let (sb, at_b) = socket_in(&pair.b, any_port(&pair.addr_b));
    let t = Tracer::start(&pair, &[at_a.port(), at_b.port()], mode);
    drop_input(&sa, true);
    drop_input(&sb, true);
    start_connect(&sa, at_b, false).expect("connect a");
    start_connect(&sb, at_a, false).expect("connect b");
    let a = Ep::new("a", &pair.a, at_a, at_b);
    let b = Ep::new("b", &pair.b, at_b, at_a);
    expect(&t, "both SYNs sent, none received", &[(&a, &["SYN_SENT"]), (&b, &["SYN_SENT"])], STEP);
    drop_input(&sa, false);
    drop_input(&sb, false);
    expect(&t, "SYNs retransmitted", &[(&a, &["ESTABLISHED"]), (&b, &["ESTABLISHED"])], SYN_RETRY);
    t.stop();
}

/// (e) The server closes with SO_LINGER 0: an RST closes both.
fn rst_linger_zero(mode: Mode) {
    let pair = setup();
    let (listener, to) = listener(&pair.b, &pair.addr_b, 16);
    let t = Tracer::start(&pair, &[to.port()], mode);
    let Conn { client, server, c, s } = open(&pair, &t, &listener, to);
    linger_zero(&server);
    drop(server);
    expect(&t, "server reset", &[(&c, &["CLOSED"]), (&s, &["CLOSED"])], STEP);
    let out = t.stop();
    assert!(out.contains(&format!("CONN {} > {}: rst by server", dotted(c.local), dotted(to))), "{out}");
    drop(client);
}

/// The client closes fully (its socket is orphaned in `FIN_WAIT_2`), then
/// the server, in `CLOSE_WAIT`, sends data: the client answers with an RST
/// and both are `CLOSED`. With `--flags`, the data is hidden; the RST is not.
fn rst_on_data_after_close(mode: Mode) {
    let pair = setup();
    let (listener, to) = listener(&pair.b, &pair.addr_b, 16);
    let t = Tracer::start(&pair, &[to.port()], mode);
    let Conn { client, mut server, c, s } = open(&pair, &t, &listener, to);
    drop(client);
    expect(&t, "client closed", &[(&c, &["FIN_WAIT_2"]), (&s, &["CLOSE_WAIT"])], STEP);
    server.write_all(b"too late").unwrap();
    expect(&t, "data after the client closed", &[(&c, &["CLOSED"]), (&s, &["CLOSED"])], STEP);
    let out = t.stop();
    assert!(out.contains(&format!("CONN {} > {}: rst by client", dotted(c.local), dotted(to))), "{out}");
}

/// (f) A SYN to a port nobody listens on is refused with an RST.
fn refused(mode: Mode) {
    let pair = setup();
    // A port that was bound and is free again.
    let (l, to) = listener(&pair.b, &pair.addr_b, 1);
    drop(l);
    let t = Tracer::start(&pair, &[to.port()], mode);
    let (client, local, res) = connect(&pair.a, any_port(&pair.addr_a), to, true, false);
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECONNREFUSED));
    let c = Ep::new("client", &pair.a, local, to);
    let s = Ep::new("server", &pair.b, to, local);
    expect(&t, "refused", &[(&c, &["CLOSED"]), (&s, &["CLOSED"])], STEP);
    assert_eq!(t.history(&c), ["SYN_SENT", "CLOSED"], "{}", t.output());
    let out = t.stop();
    assert!(out.contains(&format!("CONN {} > {}: refused", dotted(local), dotted(to))), "{out}");
    drop(client);
}

/// (g) Both shut down writing while each one's filter drops the other's FIN:
/// both `FIN_WAIT_1`, held. Then the client's filter goes (`CLOSING`), then
/// the server's: both end in `TIME_WAIT`.
fn simultaneous_close(mode: Mode) {
    let pair = setup();
    let (listener, to) = listener(&pair.b, &pair.addr_b, 16);
    let t = Tracer::start(&pair, &[to.port()], mode);
    let Conn { client, server, c, s } = open(&pair, &t, &listener, to);

    drop_input(&client, true);
    drop_input(&server, true);
    client.shutdown(Shutdown::Write).unwrap();
    server.shutdown(Shutdown::Write).unwrap();
    expect(&t, "both FINs sent, none received", &[(&c, &["FIN_WAIT_1"]), (&s, &["FIN_WAIT_1"])], STEP);

    // The client gets the server's FIN (retransmitted) while its own is
    // still unacknowledged: CLOSING, held, since the server's filter drops
    // the client's FIN and its ACK. Only the client is compared: the server's
    // socket drops the ACK that tcptrace saw go by, so tcptrace takes the
    // server's FIN as acknowledged (FIN_WAIT_2) while its socket is still in
    // FIN_WAIT_1, as any capture would.
    drop_input(&client, false);
    expect(&t, "the client got the server's FIN", &[(&c, &["CLOSING"])], STEP);

    drop_input(&server, false);
    expect(&t, "FINs retransmitted", &[(&c, &["TIME_WAIT"]), (&s, &["TIME_WAIT"])], STEP);
    let out = t.stop();
    assert!(out.contains(&format!("CONN {} > {}: fin, simultaneous close", dotted(c.local), dotted(to))), "{out}");
}

/// Each scenario as two tests: `all::NAME` and `flags::NAME`.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod all {
            $(
                #[test]
                #[ignore = "needs root"]
                fn $name() {
                    super::$name(super::Mode::All);
                }
            )*
        }
        mod flags {
            $(
                #[test]
                #[ignore = "needs root"]
                fn $name() {
                    super::$name(super::Mode::Flags);
                }
            )*
        }
    };
}

both_modes!(
    syn_sent_backlog_full,
    syn_received_synack_lost,
    fin_close,
    fin_close_server_first,
    fin_close_ipv6,
    fin_close_segment_routing,
    time_wait_reused,
    simultaneous_open,
    rst_linger_zero,
    rst_on_data_after_close,
    refused,
    simultaneous_close,
);
