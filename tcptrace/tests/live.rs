//! End-to-end: real sockets in two namespaces joined by a veth pair, traced by
//! tcptrace and by the real tcpdump on the same interface at the same time.
//! Both must print the same lines in the same order, with timestamps within
//! 1 ms of each other. Needs root; run by `cargo xtask test`.

mod support;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    time::Duration,
};

use support::{
    netns::{NetPair, exchange, in_ns, is_root, linger_zero, listen},
    proc::Proc,
};

fn start_tracers(pair: &NetPair, ports: &[u16]) -> (Proc, Proc) {
    start_tracers_with(pair, ports, &["-n"])
}

/// tcptrace and tcpdump on `pair.if_a` with `extra` options for both.
fn start_tracers_with(pair: &NetPair, ports: &[u16], extra: &[&str]) -> (Proc, Proc) {
    let filter = ports.iter().map(|p| format!("tcp port {p}")).collect::<Vec<_>>().join(" or ");
    start_tracers_filter(pair, ports, extra, &filter)
}

/// [`start_tracers_with`], tcpdump with the filter expression `filter`.
fn start_tracers_filter(pair: &NetPair, ports: &[u16], extra: &[&str], filter: &str) -> (Proc, Proc) {
    let mut tt = NetPair::command(&pair.a, env!("CARGO_BIN_EXE_tcptrace"));
    tt.args(["-i", &pair.if_a, "-tt", "--no-states"]).args(extra);
    for p in ports {
        tt.args(["--port", &p.to_string()]);
    }
    let mut td = NetPair::command(&pair.a, "tcpdump");
    td.args(["-i", &pair.if_a, "-tt", "-l"]).args(extra).arg(filter);
    let mut tt = Proc::spawn("tcptrace", tt);
    let mut td = Proc::spawn("tcpdump", td);
    tt.wait_for("listening on");
    td.wait_for("listening on");
    (tt, td)
}

/// Splits `-tt` lines into (seconds, rest); an empty line (tcpdump ends with
/// one when stopped by a signal) has no timestamp.
fn split(lines: &str) -> Vec<(Option<f64>, String)> {
    lines
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((ts, rest)) => (ts.parse::<f64>().ok(), rest.to_string()),
            None => (None, l.to_string()),
        })
        .collect()
}

/// Compares tcptrace's output with tcpdump's: the same lines in the same
/// order, timestamps within 1 ms. Shows both on failure.
fn compare(tcptrace: &str, tcpdump: &str) {
    let (a, b) = (split(tcptrace), split(tcpdump));
    let same_text = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.1 == y.1 && x.0.is_some() == y.0.is_some());
    assert!(same_text, "lines differ\n--- tcptrace\n{tcptrace}--- tcpdump\n{tcpdump}");
    for ((ta, la), (tb, _)) in a.iter().zip(&b) {
        if let (Some(ta), Some(tb)) = (ta, tb) {
            assert!((ta - tb).abs() <= 0.001, "timestamps {ta} vs {tb} more than 1 ms apart on {la}");
        }
    }
}

fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// After the traffic settles, stops both tracers, checks tcptrace's exit
/// status and that it printed at least `min_lines`, and compares its output
/// with tcpdump's; returns tcptrace's.
fn stop_and_compare(tt: Proc, td: Proc, min_lines: usize) -> String {
    settle();
    let (tt_out, tt_err, tt_rc) = tt.stop();
    let (td_out, _, _) = td.stop();
    assert_eq!(tt_rc, 0, "tcptrace exit status; stderr:\n{tt_err}");
    assert!(tt_out.lines().count() >= min_lines, "too few lines:\n{tt_out}");
    compare(&tt_out, &td_out);
    tt_out
}

#[test]
#[ignore = "needs root"]
fn ipv4_connection_refused_and_reset_match_tcpdump() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (listener, to) = listen(&pair, format!("{}:0", pair.addr_b));
    // A port nobody listens on (refused), and a connection reset with SO_LINGER 0.
    let closed = listen(&pair, format!("{}:0", pair.addr_b)).1;
    let (rst_listener, rst_to) = listen(&pair, format!("{}:0", pair.addr_b));
    let refused_port = closed.port();
    let ports = [to.port(), refused_port, rst_to.port()];
    let (tt, td) = start_tracers(&pair, &ports);

    exchange(&pair, listener, to);
    let refused = std::net::SocketAddr::new(to.ip(), refused_port);
    let err = in_ns(&pair.a, move || TcpStream::connect(refused).unwrap_err()).join().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let server = std::thread::spawn(move || rst_listener.accept().unwrap().0);
    in_ns(&pair.a, move || {
        let c = TcpStream::connect(rst_to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        linger_zero(&c);
        drop(c);
    })
    .join()
    .unwrap();
    drop(server.join().unwrap());
    settle();

    let (tt_out, tt_err, tt_rc) = tt.stop();
    let (td_out, _, _) = td.stop();
    assert_eq!(tt_rc, 0, "tcptrace exit status; stderr:\n{tt_err}");
    assert!(tt_out.lines().count() >= 10 + 2 + 4, "too few lines:\n{tt_out}");
    assert!(tt_out.contains("Flags [R.]"), "no reset seen:\n{tt_out}");
    compare(&tt_out, &td_out);
    let packets = tt_out.lines().filter(|l| !l.is_empty()).count();
    assert!(tt_err.contains(&format!("{packets} packets captured")), "{tt_err}");
    assert!(tt_err.contains("0 packets dropped by kernel"), "{tt_err}");
}

#[test]
#[ignore = "needs root"]
fn ipv6_connection_matches_tcpdump() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (listener, to) = listen(&pair, format!("[{}]:0", pair.addr6_b));
    let (tt, td) = start_tracers(&pair, &[to.port()]);
    exchange(&pair, listener, to);
    let tt_out = stop_and_compare(tt, td, 8);
    assert!(tt_out.contains(" IP6 "), "{tt_out}");
}

/// Segment routing (SRv6) in both directions (see
/// [`NetPair::segment_routing`]): every segment of the connection carries a
/// segment routing header, the client's leaving through TC egress, the
/// server's arriving through XDP, and their lines must print the header's
/// fields and segments as tcpdump's do.
#[test]
#[ignore = "needs root"]
fn segment_routing_headers_match_tcpdump() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (via_a, via_b) = pair.segment_routing();
    let (listener, to) = listen(&pair, format!("[{}]:0", pair.addr6_b));
    // tcpdump's `tcp port` does not look behind IPv6 extension headers.
    let filter = format!("tcp port {} or ip6[6] == 43", to.port());
    let (tt, td) = start_tracers_filter(&pair, &[to.port()], &["-n"], &filter);
    exchange(&pair, listener, to);
    let tt_out = stop_and_compare(tt, td, 8);
    for dst in [&via_a, &via_b] {
        let want = format!(" > {dst}: RT6 (len=4, type=4, segleft=1, last-entry=1, tag=0, [0]");
        assert!(tt_out.lines().filter(|l| l.contains(&want)).count() >= 3, "no {want:?} lines:\n{tt_out}");
    }
}

#[test]
#[ignore = "needs root"]
fn traffic_on_other_ports_is_not_shown() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (listener, to) = listen(&pair, format!("{}:0", pair.addr_b));
    let (other, other_to) = listen(&pair, format!("{}:0", pair.addr_b));
    let (tt, td) = start_tracers(&pair, &[to.port()]);
    exchange(&pair, other, other_to);
    exchange(&pair, listener, to);
    settle();
    let (tt_out, tt_err, tt_rc) = tt.stop();
    let (td_out, _, _) = td.stop();
    assert_eq!(tt_rc, 0, "stderr:\n{tt_err}");
    assert!(!tt_out.contains(&format!(".{}:", other_to.port())), "{tt_out}");
    compare(&tt_out, &td_out);
}

/// State lines live: one tcptrace sees every packet, another only SYN/FIN/RST
/// (plus the kernel's state-only records); both print the same STATE and CONN
/// lines (timestamps and timings aside), and the expected ones.
#[test]
#[ignore = "needs root"]
fn state_lines_same_with_all_packets_or_flag_filter() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (listener, to) = listen(&pair, format!("{}:0", pair.addr_b));
    let closed = listen(&pair, format!("{}:0", pair.addr_b)).1;
    let refused_port = closed.port();
    let (rst_listener, rst_to) = listen(&pair, format!("{}:0", pair.addr_b));
    let spawn = |name: &'static str, extra: &[&str]| {
        let mut cmd = NetPair::command(&pair.a, env!("CARGO_BIN_EXE_tcptrace"));
        cmd.args(["-i", &pair.if_a, "-n", "-tt"]);
        for p in [to.port(), refused_port, rst_to.port()] {
            cmd.args(["--port", &p.to_string()]);
        }
        cmd.args(extra);
        let mut p = Proc::spawn(name, cmd);
        p.wait_for("listening on");
        p
    };
    let all = spawn("tcptrace (all)", &[]);
    let ctl = spawn("tcptrace (SYN,FIN,RST)", &["--flags", "SYN,FIN,RST"]);

    exchange(&pair, listener, to);
    let refused = std::net::SocketAddr::new(to.ip(), refused_port);
    in_ns(&pair.a, move || TcpStream::connect(refused).unwrap_err()).join().unwrap();
    let server = std::thread::spawn(move || rst_listener.accept().unwrap().0);
    in_ns(&pair.a, move || {
        let c = TcpStream::connect(rst_to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        linger_zero(&c);
        drop(c);
    })
    .join()
    .unwrap();
    drop(server.join().unwrap());
    settle();

    let (all_out, all_err, rc1) = all.stop();
    let (ctl_out, ctl_err, rc2) = ctl.stop();
    assert_eq!((rc1, rc2), (0, 0), "stderr:\n{all_err}\n{ctl_err}");
    // STATE/CONN lines without the timestamp and the timings.
    let states = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
            .filter(|l| l.starts_with("STATE ") || l.starts_with("CONN "))
            .map(|l| match l.split_once(", duration ") {
                Some((head, tail)) => format!("{head}, bytes{}", tail.split_once(", bytes").unwrap().1),
                None => l.to_string(),
            })
            .collect()
    };
    let (a, c) = (states(&all_out), states(&ctl_out));
    assert_eq!(a, c, "\n--- all packets\n{all_out}--- SYN,FIN,RST\n{ctl_out}");
    let want_conn = [
        format!(" > {}.{}: fin, client closed first, bytes >5 <6", pair.addr_b, to.port()),
        format!(" > {}.{}: refused, bytes >0 <?", pair.addr_b, refused_port),
        format!(" > {}.{}: rst by client", pair.addr_b, rst_to.port()),
    ];
    let conns: Vec<&String> = a.iter().filter(|l| l.starts_with("CONN ")).collect();
    assert_eq!(conns.len(), 3, "{a:#?}");
    for (got, want) in conns.iter().zip(&want_conn) {
        assert!(got.contains(want.as_str()), "{got} should contain {want}");
    }
    for want in [
        "SYN_SENT -> ESTABLISHED",
        "SYN_RECEIVED -> ESTABLISHED",
        "FIN_WAIT_2 -> TIME_WAIT",
        "LAST_ACK -> CLOSED",
        "SYN_SENT -> CLOSED (got RST",
    ] {
        assert!(a.iter().any(|l| l.contains(want)), "no {want}: {a:#?}");
    }
    // With the filter, only SYN/FIN/RST packet lines.
    for l in ctl_out.lines().filter(|l| l.contains(" Flags [")) {
        let f = l.split("Flags [").nth(1).unwrap();
        assert!(f.starts_with('S') || f.starts_with('F') || f.starts_with('R'), "{l}");
    }
}

/// Without -n, both print host names, here from the namespace's own
/// /etc/hosts (`ip netns exec` mounts /etc/netns/NS/hosts over it).
#[test]
#[ignore = "needs root"]
fn names_without_n_match_tcpdump() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    pair.set_hosts(
        &pair.a,
        &format!("127.0.0.1 localhost\n{} client-a.test\n{} server-b.test\n", pair.addr_a, pair.addr_b),
    );
    let (listener, to) = listen(&pair, format!("{}:0", pair.addr_b));
    let (tt, td) = start_tracers_with(&pair, &[to.port()], &[]);
    exchange(&pair, listener, to);
    settle();
    let (tt_out, tt_err, tt_rc) = tt.stop();
    let (td_out, _, _) = td.stop();
    assert_eq!(tt_rc, 0, "stderr:\n{tt_err}");
    assert!(tt_out.contains("IP client-a.test.") && tt_out.contains(" > server-b.test."), "{tt_out}");
    compare(&tt_out, &td_out);
}

/// The server closes first (active close on the server side), with more data
/// from the server than fits one segment.
#[test]
#[ignore = "needs root"]
fn server_closes_first_matches_tcpdump() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (listener, to) = listen(&pair, format!("{}:0", pair.addr_b));
    let (tt, td) = start_tracers(&pair, &[to.port()]);
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&vec![b'x'; 5000]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
    });
    in_ns(&pair.a, move || {
        let mut c = TcpStream::connect(to).unwrap();
        c.write_all(b"get").unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 5000);
        drop(c);
    })
    .join()
    .unwrap();
    server.join().unwrap();
    settle();
    let (tt_out, tt_err, tt_rc) = tt.stop();
    let (td_out, _, _) = td.stop();
    assert_eq!(tt_rc, 0, "stderr:\n{tt_err}");
    let server_fin = format!("IP {}.{} > {}", pair.addr_b, to.port(), pair.addr_a);
    let first_fin = tt_out.lines().find(|l| l.contains("Flags [F")).unwrap_or_default();
    assert!(first_fin.contains(&server_fin), "the server's FIN should come first:\n{tt_out}");
    compare(&tt_out, &td_out);
}
