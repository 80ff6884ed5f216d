//! Always-on operation, end to end in network namespaces: the Prometheus
//! endpoint scraped over HTTP during a live trace (and checked by promtool
//! when it is installed), periodic statistics in text and JSON, running with
//! only the needed capabilities, `-i any`, and an interface that goes away
//! and comes back. Needs root; run by `cargo xtask test`.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    netns::{NetPair, exchanges, in_ns, is_root, listen},
    proc::Proc,
};

fn tcptrace(ns: &str) -> Command {
    NetPair::command(ns, env!("CARGO_BIN_EXE_tcptrace"))
}

/// `n` connections from namespace a to a server in b: request, reply,
/// client closes first. Returns the server's port.
fn connections(pair: &NetPair, n: usize) -> u16 {
    let (listener, to) = listen(pair, format!("{}:0", pair.addr_b));
    exchanges(pair, listener, to, n);
    to.port()
}

/// GET `path` from `addr` inside namespace `ns`: status line, content type
/// and body.
fn http_get(ns: &str, addr: SocketAddr, path: &str) -> (String, String, String) {
    http_get_with(ns, addr, path, "")
}

/// The same with `headers` (each ending in CRLF).
fn http_get_with(ns: &str, addr: SocketAddr, path: &str, headers: &str) -> (String, String, String) {
    let (path, headers) = (path.to_string(), headers.to_string());
    in_ns(ns, move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
        let status = head.lines().next().unwrap().to_string();
        let ctype = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
            .unwrap_or_default();
        (status, ctype, body.to_string())
    })
    .join()
    .unwrap()
}

/// The value of the sample `name` (with its labels, exactly) in a
/// Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
#[ignore = "needs root"]
fn metrics_scraped_during_live_trace() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", &pair.if_a, "-n", "--metrics", "127.0.0.1:0"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    let line = tt.wait_err("metrics on http://", Duration::from_secs(30));
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert!(addr.ip().is_loopback(), "{addr}");
    // The metrics line comes after "listening on".

    let port = connections(&pair, 5);
    std::thread::sleep(Duration::from_millis(300));
    let (status, ctype, text) = http_get(&pair.a, addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}\n{text}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(text.contains("# TYPE tcptrace_packets_captured_total counter\n"), "{text}");
    // 5 connections: 5 SYNs, 5 SYN-ACKs (both SYN and ACK), 10 FINs.
    assert_eq!(sample(&text, "tcptrace_packets_by_flag_total{flag=\"SYN\"}"), Some(10.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_packets_by_flag_total{flag=\"FIN\"}"), Some(10.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_packets_by_flag_total{flag=\"RST\"}"), None, "{text}");
    assert_eq!(sample(&text, "tcptrace_connections_closed_total{outcome=\"fin\"}"), Some(5.0), "{text}");
    assert_eq!(
        sample(&text, "tcptrace_state_transitions_total{from=\"SYN_RECEIVED\",to=\"ESTABLISHED\"}"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(sample(&text, "tcptrace_handshake_seconds_count"), Some(5.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_handshake_seconds_bucket{le=\"+Inf\"}"), Some(5.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_ringbuf_dropped_total"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_malformed_packets_total{reason=\"tcp-hdr-too-short\"}"), Some(0.0), "{text}");
    let captured = sample(&text, "tcptrace_packets_captured_total").unwrap();
    assert!(captured >= 40.0, "{text}");
    assert!(sample(&text, "tcptrace_kernel_packets_total{stage=\"matched\"}").unwrap() >= captured, "{text}");
    assert_eq!(sample(&text, "tcptrace_kernel_connection_table_size"), Some(65536.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_kernel_connection_evictions_total"), Some(0.0), "{text}");
    // Servers' TIME_WAIT: nothing left in the kernel map (both FINs acked),
    // the five still tracked in userspace for TIME_WAIT.
    assert_eq!(sample(&text, "tcptrace_kernel_connections"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_connections_tracked"), Some(5.0), "{text}");
    assert!(port > 0);

    if have("promtool") {
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let o = p.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "promtool check metrics:\n{}{}\n{text}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        eprintln!("promtool not installed: metrics text not checked by it");
    }

    // What Prometheus asks for: OpenMetrics.
    let accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n";
    let (status, ctype, om) = http_get_with(&pair.a, addr, "/metrics", accept);
    assert!(status.contains(" 200 "), "{status}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE tcptrace_packets_captured counter\n"), "{om}");
    let (status, _, _) = http_get(&pair.a, addr, "/nothing");
    assert!(status.contains(" 404 "), "{status}");
    // A second scrape sees the same counts (no double counting of kernel deltas).
    let (_, _, again) = http_get(&pair.a, addr, "/metrics");
    assert_eq!(sample(&again, "tcptrace_packets_by_flag_total{flag=\"SYN\"}"), Some(10.0), "{again}");
    assert_eq!(
        sample(&again, "tcptrace_kernel_packets_total{stage=\"matched\"}"),
        sample(&text, "tcptrace_kernel_packets_total{stage=\"matched\"}"),
    );
    let (_, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
}

#[test]
#[ignore = "needs root"]
fn metrics_address_in_use_attaches_nothing() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let held = in_ns(&pair.a, || TcpListener::bind("127.0.0.1:0").unwrap()).join().unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", &pair.if_a, "-n", "--metrics", &addr]);
    let (_, err, rc) = Proc::spawn("tcptrace", cmd).finish();
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains(&format!("--metrics {addr}")) && err.contains("in use"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn stats_interval_text_line_on_stderr() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", &pair.if_a, "-n", "--stats-interval", "1"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    tt.wait_err("listening on", Duration::from_secs(30));
    connections(&pair, 3);
    // Lines come every second: wait for one that counts the traffic.
    let end = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let l = tt.wait_err("packets captured, ", Duration::from_secs(5));
        if l.contains(", 3 connections tracked") || Instant::now() > end {
            break l;
        }
    };
    assert!(l_matches(&line), "{line}");
    assert!(line.contains(" packets received by filter, 0 packets dropped by kernel, 3 connections tracked"), "{line}");
    let (_, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("packets captured\n") || err.ends_with("packets dropped by kernel"), "{err}");
}

fn l_matches(line: &str) -> bool {
    let rest = line.strip_prefix("tcptrace: ").unwrap_or("");
    rest.split_once(" packets captured").is_some_and(|(n, _)| n.parse::<u64>().is_ok_and(|n| n >= 30))
}

#[test]
#[ignore = "needs root"]
fn stats_interval_json_objects() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", &pair.if_a, "--json", "--stats-interval", "1", "--flags", "SYN,FIN,RST"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    tt.wait_err("listening on", Duration::from_secs(30));
    connections(&pair, 4);
    let end = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let l = tt.wait_out("\"type\":\"stats\"", Duration::from_secs(5));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        if v["connections_tracked"] == 4 || Instant::now() > end {
            break v;
        }
    };
    assert_eq!(v["v"], 1);
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v["ts_ns"].as_i64().unwrap() > 0, "{v}");
    assert_eq!(v["connections_tracked"], 4, "{v}");
    assert_eq!(v["max_connections"], 65536, "{v}");
    assert_eq!(v["userspace_evictions"], 0, "{v}");
    // With --flags SYN,FIN,RST: 4 × (SYN, SYN-ACK, 2 FINs) shown.
    assert_eq!(v["packets_captured"], 16, "{v}");
    assert_eq!(v["kernel"]["ringbuf_full"], 0, "{v}");
    assert_eq!(v["kernel"]["conn_entered"], 4, "{v}");
    assert_eq!(v["kernel"]["conn_closed"], 4, "{v}");
    assert_eq!(v["kernel_conns"], 0, "{v}");
    assert_eq!(v["kernel_conn_evictions"], 0, "{v}");
    assert_eq!(v["kernel_conn_table_size"], 65536, "{v}");
    assert!(v["kernel"]["malformed"].as_object().unwrap().is_empty(), "{v}");
    let (_, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
}

/// tcptrace as `nobody` with only the ambient capabilities `caps` (setpriv
/// names: `bpf`, `net_admin`, `perfmon`), in namespace `ns`.
fn unprivileged(ns: &str, caps: &[&str]) -> Command {
    let list = caps.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(",");
    let mut c = NetPair::command(ns, "setpriv");
    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", &list, "--ambient-caps", &list]);
    c.args(["--", env!("CARGO_BIN_EXE_tcptrace")]);
    c
}

#[test]
#[ignore = "needs root"]
fn runs_with_only_bpf_net_admin_perfmon() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let mut cmd = unprivileged(&pair.a, &["bpf", "net_admin", "perfmon"]);
    cmd.args(["-i", &pair.if_a, "-n", "--flags", "SYN,FIN,RST", "--metrics", "127.0.0.1:0"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    let line = tt.wait_err("metrics on http://", Duration::from_secs(30));
    let addr: SocketAddr = line.split("http://").nth(1).unwrap().strip_suffix("/metrics").unwrap().parse().unwrap();
    connections(&pair, 2);
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, text) = http_get(&pair.a, addr, "/metrics");
    assert_eq!(sample(&text, "tcptrace_connections_closed_total{outcome=\"fin\"}"), Some(2.0), "{text}");
    // The kernel map is walked from userspace without root too.
    assert_eq!(sample(&text, "tcptrace_kernel_connections"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "tcptrace_kernel_connections_entered_total"), Some(2.0), "{text}");
    let (out, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("listening on"), "{err}");
    // 2 × (SYN, SYN-ACK, FIN, FIN) and their state lines.
    assert_eq!(out.lines().filter(|l| l.contains(" Flags [")).count(), 8, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains(" CONN ")).count(), 2, "{out}");
}

#[test]
#[ignore = "needs root"]
fn a_missing_capability_is_named() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let all = ["bpf", "net_admin", "perfmon"];
    for (drop, name) in [("bpf", "CAP_BPF"), ("net_admin", "CAP_NET_ADMIN"), ("perfmon", "CAP_PERFMON")] {
        let caps: Vec<&str> = all.iter().copied().filter(|c| *c != drop).collect();
        let mut cmd = unprivileged(&pair.a, &caps);
        cmd.args(["-i", &pair.if_a, "-n"]);
        let (_, err, rc) = Proc::spawn("tcptrace", cmd).finish();
        assert_eq!(rc, 1, "{err}");
        assert!(err.starts_with(&format!("tcptrace: missing capability {name}: ")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("listening on"), "{err}");
    }
}

#[test]
#[ignore = "needs root"]
fn any_traces_every_interface_that_is_up() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    // A third interface that is down is left out.
    support::netns::ip(&["-n", &pair.a, "link", "add", "ttdown0", "type", "veth", "peer", "name", "ttdown1"]);
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", "any", "-n", "--no-states", "--flags", "SYN"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    tt.wait_err(&format!("listening on {} ", pair.if_a), Duration::from_secs(30));
    // Loopback inside namespace a, and the veth.
    let local = in_ns(&pair.a, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        drop(TcpStream::connect(to).unwrap());
        to.port()
    })
    .join()
    .unwrap();
    let remote = connections(&pair, 1);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("listening on lo "), "{err}");
    assert!(!err.contains("ttdown0"), "{err}");
    assert!(out.contains(&format!("> 127.0.0.1.{local}: Flags [S]")), "{out}");
    assert!(out.contains(&format!("{}.{remote}: Flags [S]", pair.addr_b)), "{out}");
}

/// `-i any` also follows interfaces that come up while it runs, and drops
/// those that go away without ending the trace.
#[test]
#[ignore = "needs root"]
fn any_follows_interfaces_that_come_and_go() {
    use support::netns::ip;
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", "any", "-n", "--no-states", "--flags", "SYN"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    tt.wait_err(&format!("listening on {} ", pair.if_a), Duration::from_secs(30));
    // A second link between the two namespaces, made after the start.
    let (new_a, new_b) = ("ttnew0", "ttnew1");
    ip(&["-n", &pair.a, "link", "add", new_a, "type", "veth", "peer", "name", new_b, "netns", &pair.b]);
    ip(&["-n", &pair.a, "addr", "add", "10.250.0.1/24", "dev", new_a]);
    ip(&["-n", &pair.b, "addr", "add", "10.250.0.2/24", "dev", new_b]);
    ip(&["-n", &pair.b, "link", "set", new_b, "up"]);
    ip(&["-n", &pair.a, "link", "set", new_a, "up"]);
    tt.wait_err(&format!("{new_a} came up: listening on {new_a} (TC ingress"), Duration::from_secs(10));
    let (listener, to) = listen(&pair, "10.250.0.2:0".into());
    let port = in_ns(&pair.a, move || TcpStream::connect(to).unwrap().local_addr().unwrap().port()).join().unwrap();
    drop(listener);
    ip(&["-n", &pair.a, "link", "del", new_a]);
    tt.wait_err(&format!("{new_a}: the interface went away"), Duration::from_secs(10));
    // Still tracing the first one.
    let remote = connections(&pair, 1);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains(&format!("IP 10.250.0.1.{port} > 10.250.0.2.{}: Flags [S]", to.port())), "{out}");
    assert!(out.contains(&format!("{}.{remote}: Flags [S]", pair.addr_b)), "{out}");
}

/// `--host` and `--net` live: a tracer for the server's address sees the
/// connection's SYN and SYN-ACK, one for another network sees nothing.
#[test]
#[ignore = "needs root"]
fn host_and_net_live() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let start = |filter: &[&str]| {
        let mut cmd = tcptrace(&pair.a);
        cmd.args(["-i", &pair.if_a, "-n", "--no-states", "--flags", "SYN"]).args(filter);
        let mut tt = Proc::spawn("tcptrace", cmd);
        tt.wait_err("listening on", Duration::from_secs(30));
        tt
    };
    let host = start(&["--host", &pair.addr_b.to_string()]);
    let other = start(&["--net", "192.0.2.0/24", "--host", "2001:db8::1"]);
    let port = connections(&pair, 1);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, rc) = host.stop();
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains(&format!("{}.{port}: Flags [S]", pair.addr_b)), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("IP {}.{port} > {}.", pair.addr_b, pair.addr_a)) && l.contains("Flags [S.]")),
        "{out}"
    );
    let (out, err, rc) = other.stop();
    assert_eq!(rc, 0, "{err}");
    assert!(!out.contains("Flags ["), "{out}");
}

/// With `--wait`, an interface named with `-i` that is not there yet is
/// waited for, then traced.
#[test]
#[ignore = "needs root"]
fn wait_for_an_interface_made_after_the_start() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    support::netns::ip(&["-n", &pair.a, "link", "del", &pair.if_a]);
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", &pair.if_a, "-n", "--no-states", "--flags", "SYN", "--wait"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    tt.wait_err(&format!("{}: no such interface yet; waiting for it (--wait)", pair.if_a), Duration::from_secs(30));
    remake_veth(&pair);
    tt.wait_err(&format!("{} appeared: listening on {} (TC ingress", pair.if_a, pair.if_a), Duration::from_secs(10));
    let port = connections(&pair, 1);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains(&format!("{}.{port}: Flags [S]", pair.addr_b)), "{out}");
}

/// Makes the veth pair of `pair` again (after it was deleted), with its
/// addresses.
fn remake_veth(pair: &NetPair) {
    use support::netns::ip;
    ip(&["-n", &pair.a, "link", "add", &pair.if_a, "type", "veth", "peer", "name", &pair.if_b, "netns", &pair.b]);
    for (ns, ifc, v4) in [(&pair.a, &pair.if_a, &pair.addr_a), (&pair.b, &pair.if_b, &pair.addr_b)] {
        ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifc]);
        ip(&["-n", ns, "link", "set", ifc, "up"]);
    }
}

#[test]
#[ignore = "needs root"]
fn wait_attaches_again_when_the_interface_comes_back() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let mut cmd = tcptrace(&pair.a);
    cmd.args(["-i", &pair.if_a, "-n", "--no-states", "--flags", "SYN", "--wait"]);
    let mut tt = Proc::spawn("tcptrace", cmd);
    tt.wait_err("listening on", Duration::from_secs(30));
    connections(&pair, 1);
    support::netns::ip(&["-n", &pair.a, "link", "del", &pair.if_a]);
    tt.wait_err(
        &format!("{}: the interface went away; waiting for it to come back", pair.if_a),
        Duration::from_secs(10),
    );
    remake_veth(&pair);
    tt.wait_err(&format!("{} is back: listening on {} (TC ingress", pair.if_a, pair.if_a), Duration::from_secs(10));
    let port = connections(&pair, 1);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, rc) = tt.stop();
    assert_eq!(rc, 0, "{err}");
    // Two SYNs and two SYN-ACKs: before and after.
    assert_eq!(out.lines().filter(|l| l.contains("Flags [S")).count(), 4, "{out}");
    assert!(out.contains(&format!("{}.{port}: Flags [S]", pair.addr_b)), "{out}");
}
