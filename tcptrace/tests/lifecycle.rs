//! Reliability of live tracing (root): what stays attached after SIGINT,
//! SIGTERM and SIGKILL, two tracers on one interface, an interface deleted
//! while tracing, and overload (a connection flood into a small ring buffer
//! while the consumer is stopped with SIGSTOP). Everything runs in network
//! namespaces the tests make.
//!
//! What is attached is read from the kernel, not from tcptrace: tcx programs
//! with BPF_PROG_QUERY (aya's `query_tcx`; Debian 12's bpftool 7.1 does not
//! list tcx links), XDP from `ip link`.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, tc::TcAttachType};
use support::netns::{NetPair, in_ns, is_root, listen};

/// How long loading may take (the verifier is slow on a busy machine).
const START: Duration = Duration::from_secs(180);

/// A tcptrace process; its standard output and error are read as they come.
struct Tracer {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    err_seen: Vec<String>,
}

fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

impl Tracer {
    fn spawn(ns: &str, args: &[&str]) -> Self {
        let mut cmd = NetPair::command(ns, env!("CARGO_BIN_EXE_tcptrace"));
        cmd.args(args).env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self { child, stdout, stderr, err_seen: Vec::new() }
    }

    /// Starts and waits for "listening on".
    fn start(ns: &str, args: &[&str]) -> Self {
        let mut t = Self::spawn(ns, args);
        assert!(t.wait_err("listening on", START), "no 'listening on': {:?}", t.err_seen);
        t
    }

    /// Waits for a standard-error line containing `what`; false if the
    /// process ended or time ran out first.
    fn wait_err(&mut self, what: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(what);
                    self.err_seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    fn signal(&self, sig: i32) {
        // The child is `ip netns exec`, which execs tcptrace: same pid.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the end: (stdout lines, stderr lines, exit code or -signal).
    fn wait(mut self) -> (Vec<String>, Vec<String>, i32) {
        let status = wait_timeout(&mut self.child, Duration::from_secs(60));
        let out: Vec<String> = self.stdout.iter().collect();
        self.err_seen.extend(self.stderr.iter());
        use std::os::unix::process::ExitStatusExt;
        (out, self.err_seen, status.code().unwrap_or_else(|| -status.signal().unwrap_or(0)))
    }

    fn stop(self, sig: i32) -> (Vec<String>, Vec<String>, i32) {
        self.signal(sig);
        self.wait()
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("tcptrace did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tcptrace programs attached to `iface` in namespace `ns`, as the
/// kernel reports them: "tcx ingress NAME", "tcx egress NAME", "xdp".
fn attached(ns: &str, iface: &str) -> Vec<String> {
    let i = iface.to_string();
    let mut v: Vec<String> = in_ns(ns, move || {
        let mut v = Vec::new();
        for (t, name) in [(TcAttachType::Ingress, "ingress"), (TcAttachType::Egress, "egress")] {
            let (_, progs) = SchedClassifier::query_tcx(&i, t).unwrap_or_else(|e| panic!("query tcx {i}: {e:?}"));
            v.extend(progs.iter().map(|p| format!("tcx {name} {}", p.name_as_str().unwrap_or("?"))));
        }
        v
    })
    .join()
    .unwrap();
    let out = std::process::Command::new("ip").args(["-n", ns, "-d", "link", "show", "dev", iface]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("prog/xdp") || text.contains(" xdp") {
        v.push("xdp".into());
    }
    v
}

/// `attached` once it is empty (links go with the last fd, which the kernel
/// may release a moment after the process is gone).
#[track_caller]
fn assert_nothing_attached(ns: &str, iface: &str, why: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let a = attached(ns, iface);
        if a.is_empty() {
            return;
        }
        assert!(Instant::now() < end, "{why}: still attached to {iface}: {a:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One connection from namespace a to `to`, closed at once.
fn connect_once(pair: &NetPair, to: SocketAddr) {
    in_ns(&pair.a, move || drop(TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap())).join().unwrap();
}

/// Accepts and closes connections until the listener is dropped with the
/// process (the thread is detached).
fn serve(l: TcpListener) {
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
}

#[test]
#[ignore = "needs root"]
fn signals_detach_everything() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    assert_nothing_attached(&pair.a, &pair.if_a, "before");
    for attach in ["tc", "xdp"] {
        for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "SIGKILL")] {
            let t = Tracer::start(&pair.a, &["-i", &pair.if_a, "-n", "--attach", attach]);
            let a = attached(&pair.a, &pair.if_a);
            // Ingress (tcx or XDP) and tcx egress.
            assert_eq!(a.len(), 2, "{attach}: attached while running: {a:?}");
            assert!(a.iter().any(|x| x.starts_with("tcx egress tcptrace")), "{a:?}");
            if attach == "xdp" {
                assert!(a.contains(&"xdp".to_string()), "{a:?}");
            }
            let (_, err, code) = t.stop(sig);
            let want_code = if sig == libc::SIGKILL { -libc::SIGKILL } else { 0 };
            assert_eq!(code, want_code, "{attach} {name}: exit; stderr {err:?}");
            if sig != libc::SIGKILL {
                assert!(err.iter().any(|l| l.contains("packets captured")), "{attach} {name}: {err:?}");
            }
            assert_nothing_attached(&pair.a, &pair.if_a, &format!("--attach {attach}, {name}"));
        }
    }
}

#[test]
#[ignore = "needs root"]
fn two_tracers_on_one_interface() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (l, to) = listen(&pair, format!("{}:0", pair.addr_b));
    serve(l);
    let port = to.port().to_string();
    // TC (tcx): both attach and both see the traffic.
    let t1 = Tracer::start(&pair.a, &["-i", &pair.if_a, "-n", "-l", "--no-states", "--port", &port]);
    let t2 = Tracer::start(&pair.a, &["-i", &pair.if_a, "-n", "-l", "--no-states", "--port", &port]);
    assert_eq!(attached(&pair.a, &pair.if_a).len(), 4);
    connect_once(&pair, to);
    std::thread::sleep(Duration::from_millis(500));
    let (o1, e1, c1) = t1.stop(libc::SIGINT);
    assert_eq!(attached(&pair.a, &pair.if_a).len(), 2, "the second tracer's links stay");
    let (o2, e2, c2) = t2.stop(libc::SIGINT);
    assert_eq!((c1, c2), (0, 0), "{e1:?} {e2:?}");
    for o in [&o1, &o2] {
        assert!(o.iter().any(|l| l.contains("Flags [S]")), "{o:?}");
        assert!(o.iter().any(|l| l.contains("Flags [S.]")), "{o:?}");
    }
    // The same lines; timestamps differ by the microseconds between the two
    // programs' clock reads.
    let strip =
        |o: &[String]| o.iter().map(|l| l.split_once(' ').map_or(l.clone(), |x| x.1.to_string())).collect::<Vec<_>>();
    assert_eq!(strip(&o1), strip(&o2), "both print the same lines");
    assert_nothing_attached(&pair.a, &pair.if_a, "after both");

    // XDP: one XDP program per interface. The second tracer fails with one
    // clear message and leaves the first one working.
    let t1 = Tracer::start(&pair.a, &["-i", &pair.if_a, "-n", "-l", "--no-states", "--port", &port, "--attach", "xdp"]);
    let mut t2 = Tracer::spawn(&pair.a, &["-i", &pair.if_a, "-n", "--no-states", "--port", &port, "--attach", "xdp"]);
    let second_works = t2.wait_err("listening on", START);
    let (_, e2, c2) = if second_works { t2.stop(libc::SIGINT) } else { t2.wait() };
    if !second_works {
        assert_eq!(c2, 1, "{e2:?}");
        assert_eq!(e2.len(), 1, "one message: {e2:?}");
        let m = &e2[0];
        assert_eq!(
            *m,
            format!(
                "tcptrace: attaching to {} (XDP ingress): another XDP program is attached to it \
             (Device or resource busy (os error 16)); --attach tc works alongside it",
                pair.if_a
            )
        );
    }
    eprintln!("second XDP tracer: {}", if second_works { "works" } else { "refused with a clear message" });
    connect_once(&pair, to);
    std::thread::sleep(Duration::from_millis(500));
    let (o1, e1, c1) = t1.stop(libc::SIGINT);
    assert_eq!(c1, 0, "{e1:?}");
    assert!(o1.iter().any(|l| l.contains("Flags [S.]")), "the first XDP tracer still works: {o1:?}");
    assert_nothing_attached(&pair.a, &pair.if_a, "after the XDP tracers");
}

#[test]
#[ignore = "needs root"]
fn interface_deleted_while_tracing() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (l, to) = listen(&pair, format!("{}:0", pair.addr_b));
    serve(l);
    for attach in ["tc", "xdp"] {
        // A fresh veth pair each round (the first round deletes it).
        if attach == "xdp" {
            support::netns::ip(&[
                "link", "add", &pair.if_a, "netns", &pair.a, "type", "veth", "peer", "name", &pair.if_b, "netns",
                &pair.b,
            ]);
            for (ns, ifc, addr) in [(&pair.a, &pair.if_a, &pair.addr_a), (&pair.b, &pair.if_b, &pair.addr_b)] {
                support::netns::ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", ifc]);
                support::netns::ip(&["-n", ns, "link", "set", ifc, "up"]);
            }
        }
        let t = Tracer::start(&pair.a, &["-i", &pair.if_a, "-n", "-l", "--no-states", "--attach", attach]);
        connect_once(&pair, to);
        // The lines are out before the interface goes.
        let end = Instant::now() + Duration::from_secs(10);
        let mut before = Vec::new();
        while !before.iter().any(|l: &String| l.contains("Flags [S.]")) {
            before.push(t.stdout.recv_timeout(end.saturating_duration_since(Instant::now())).expect("packet lines"));
        }
        support::netns::ip(&["-n", &pair.a, "link", "del", &pair.if_a]);
        let t0 = Instant::now();
        let (out, err, code) = t.wait();
        assert!(t0.elapsed() < Duration::from_secs(10), "took {:?} to notice", t0.elapsed());
        assert_eq!(code, 1, "{attach}: {err:?}");
        let last = err.last().unwrap();
        assert_eq!(*last, format!("tcptrace: {}: the interface went away while tracing", pair.if_a), "{err:?}");
        assert!(!err.iter().any(|l| l.contains("panicked")), "{err:?}");
        assert!(err.iter().any(|l| l.contains("packets captured")), "summary still printed: {err:?}");
        let all: Vec<String> = before.into_iter().chain(out).collect();
        assert!(all.iter().filter(|l| l.contains(" IP ")).count() >= 3, "{all:?}");
    }
}

/// The counters of the `kernel counters:` line (RUST_LOG=info).
fn kernel_counters(err: &[String]) -> std::collections::HashMap<String, u64> {
    let line = err.iter().find_map(|l| l.split_once("kernel counters: ").map(|(_, c)| c.to_string()));
    let line = line.unwrap_or_else(|| panic!("no kernel counters line: {err:?}"));
    let mut m = std::collections::HashMap::new();
    for part in line.split(", ") {
        // "ring buffer full 12", "connections entered 3 closed 2", "tcp 9"
        let words: Vec<&str> = part.split(' ').collect();
        if let Some((n, name)) = words.split_last()
            && let Ok(n) = n.parse()
        {
            m.insert(name.join(" "), n);
        }
    }
    m
}

/// The number in a summary line such as "12 packets dropped by kernel".
fn summary(err: &[String], what: &str) -> u64 {
    let l = err.iter().find(|l| l.ends_with(what)).unwrap_or_else(|| panic!("no '{what}': {err:?}"));
    l.split(' ').next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root"]
fn overload_loses_records_not_traffic() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    // Many short connections from a few ports' worth of clients.
    for (k, v) in [("net.ipv4.tcp_tw_reuse", "1"), ("net.ipv4.ip_local_port_range", "10000 65000")] {
        let ok = NetPair::command(&pair.a, "sysctl").args(["-qw", &format!("{k}={v}")]).status().unwrap();
        assert!(ok.success());
    }
    let (l, to) = listen(&pair, format!("{}:0", pair.addr_b));
    serve(l);
    let port = to.port().to_string();
    for buffer in ["4096", "16384"] {
        let t =
            Tracer::start(&pair.a, &["-i", &pair.if_a, "-n", "--no-states", "--port", &port, "--buffer-size", buffer]);
        // Standard output is read all along (tcptrace never waits on it).
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                in_ns(&pair.a, move || {
                    while !stop.load(Ordering::Relaxed) {
                        // A SYN dropped by the full accept queue (backlog 128) is
                        // resent after 1 s, 3 s, ...: give it time.
                        match TcpStream::connect_timeout(&to, Duration::from_secs(15)) {
                            Ok(mut s) => {
                                let _ = s.write_all(b"x");
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("connect: {e}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        t.signal(libc::SIGSTOP);
        let during = ok.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(3));
        let while_stopped = ok.load(Ordering::Relaxed) - during;
        t.signal(libc::SIGCONT);
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        let (out, err, code) = t.stop(libc::SIGINT);
        assert_eq!(code, 0, "{err:?}");
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        assert_eq!(failed, 0, "connections failed while tracing ({ok} succeeded)");
        assert!(while_stopped > 100, "only {while_stopped} connections while tcptrace was stopped");
        let c = kernel_counters(&err);
        let (matched, state_only, emitted, full) = (c["matched"], c["state-only"], c["emitted"], c["ring buffer full"]);
        eprintln!(
            "--buffer-size {buffer}: {ok} connections ({while_stopped} while stopped), matched {matched}, emitted {emitted}, ring buffer full {full}"
        );
        assert!(full > 0, "no record lost with a {buffer}-byte ring buffer: {c:?}");
        assert_eq!(emitted + full, matched + state_only, "every segment emitted or counted lost: {c:?}");
        assert!(matched >= 5 * ok, "matched {matched} for {ok} connections");
        assert_eq!(summary(&err, "packets dropped by kernel"), full);
        assert_eq!(summary(&err, "packets received by filter"), matched);
        let lines = out.iter().filter(|l| !l.is_empty()).count() as u64;
        assert_eq!(summary(&err, "packets captured"), lines);
        assert_eq!(lines, emitted, "every emitted record printed");
    }
}
