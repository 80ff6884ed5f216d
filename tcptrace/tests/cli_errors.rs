//! Bad arguments through the binary: exit status 2 for usage errors (clap's
//! own and tcptrace's), 1 for runtime failures, one clear message, and (as
//! root, in a network namespace) nothing left attached.

mod support;

use std::process::{Command, Output, Stdio};

use support::netns::{NetPair, is_root};

fn run(cmd: &mut Command) -> (String, i32) {
    let Output { status, stderr, stdout } = cmd.stdin(Stdio::null()).env_remove("RUST_LOG").output().unwrap();
    assert!(stdout.is_empty(), "nothing on standard output: {}", String::from_utf8_lossy(&stdout));
    (String::from_utf8(stderr).unwrap(), status.code().unwrap_or(-1))
}

fn tcptrace(args: &[&str]) -> (String, i32) {
    run(Command::new(env!("CARGO_BIN_EXE_tcptrace")).args(args))
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--port", "0", "-i", "x"], "port 0 is out of range 1-65535"),
        (&["--port", "65536", "-i", "x"], "port 65536 is out of range 1-65535"),
        (&["--port", "99999999999", "-i", "x"], "is not a port number"),
        (&["--port", "http", "-i", "x"], "'http' is not a port number"),
        (&["-Z", "-i", "x"], "unexpected argument '-Z'"),
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["--flags", "SYN,X", "-i", "x"], "unknown TCP flag 'X'"),
        (&["--flags", "", "-i", "x"], "empty flag list"),
        (&["--family", "5"], "not an address family"),
        (&["--buffer-size", "5000", "-i", "x"], "not a power of two"),
        (&["--attach", "ebpf", "-i", "x"], "invalid value 'ebpf'"),
        (&["-c"], "a value is required"),
        (&["-r", "f.pcap", "-i", "eth0"], "cannot be used with"),
        (&["-r", "f.pcap", "--attach", "xdp"], "cannot be used with"),
        (&["-r", "f.pcap", "--buffer-size", "8192"], "cannot be used with"),
        (&[], "no interface given"),
    ];
    for (args, want) in cases {
        let (err, code) = tcptrace(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want '{want}' in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Tracing options go with `-r` when they do not conflict.
#[test]
fn read_takes_filters_and_formats() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap/whois.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_tcptrace"))
        .args(["-r", p.to_str().unwrap(), "-n", "--port", "43", "--flags", "S", "-c", "1", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("{\"v\":1,\"type\":\"packet\""));
}

/// Standard output closed (`>&-`): the lines go nowhere and the run ends
/// well. A full disk fails it, with one message.
#[test]
fn closed_and_full_standard_output() {
    use std::os::unix::process::CommandExt as _;
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap/whois.pcap");
    let mut closed = Command::new(env!("CARGO_BIN_EXE_tcptrace"));
    closed.args(["-r", p.to_str().unwrap(), "-n"]);
    // SAFETY: close(2) is async-signal-safe.
    unsafe {
        closed.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let (err, code) = run(&mut closed);
    assert_eq!((code, err.as_str()), (0, ""));
    let full = std::fs::File::create("/dev/full").unwrap();
    let (err, code) =
        run(Command::new(env!("CARGO_BIN_EXE_tcptrace")).args(["-r", p.to_str().unwrap(), "-n"]).stdout(full));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err, "tcptrace: writing output: No space left on device (os error 28)\n");
}

#[test]
#[ignore = "needs root"]
fn unknown_interface_exits_2() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (err, code) = run(NetPair::command(&pair.a, env!("CARGO_BIN_EXE_tcptrace")).args(["-i", "nosuch0"]));
    assert_eq!((code, err.trim()), (2, "tcptrace: nosuch0: no such interface"));
    // One known and one unknown: nothing attached to the known one.
    let (err, code) =
        run(NetPair::command(&pair.a, env!("CARGO_BIN_EXE_tcptrace")).args(["-i", &pair.if_a, "-i", "nosuch0"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(bpftool_progs(&pair.a, &pair.if_a), 0);
}

/// Programs attached to `iface` (tcx through BPF_PROG_QUERY, XDP via ip link).
fn bpftool_progs(ns: &str, iface: &str) -> usize {
    use aya::programs::{SchedClassifier, tc::TcAttachType};
    let i = iface.to_string();
    let tcx = support::netns::in_ns(ns, move || {
        [TcAttachType::Ingress, TcAttachType::Egress]
            .into_iter()
            .map(|t| SchedClassifier::query_tcx(&i, t).unwrap().1.len())
            .sum::<usize>()
    })
    .join()
    .unwrap();
    let out = Command::new("ip").args(["-n", ns, "-d", "link", "show", "dev", iface]).output().unwrap();
    tcx + String::from_utf8_lossy(&out.stdout).contains("prog/xdp") as usize
}

/// Without the capabilities: exit 1, a message naming CAP_BPF, CAP_NET_ADMIN
/// and CAP_PERFMON, nothing attached. As nobody (setpriv) and as root with
/// the capabilities dropped (capsh).
#[test]
#[ignore = "needs root"]
fn missing_privilege_exits_1_and_names_the_capabilities() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let bin = env!("CARGO_BIN_EXE_tcptrace");
    let mut nobody = NetPair::command(&pair.a, "setpriv");
    nobody.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin, "-i", &pair.if_a]);
    let mut dropped = NetPair::command(&pair.a, "capsh");
    dropped.args([
        "--drop=cap_bpf,cap_net_admin,cap_perfmon,cap_sys_admin",
        "--",
        "-c",
        &format!("exec {bin} -i {} --attach xdp", pair.if_a),
    ]);
    for (name, cmd) in [("setpriv", &mut nobody), ("capsh", &mut dropped)] {
        let (err, code) = run(cmd);
        assert_eq!(code, 1, "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: one message: {err}");
        for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"] {
            assert!(err.contains(cap), "{name}: {cap} not named: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(bpftool_progs(&pair.a, &pair.if_a), 0, "{name}: something attached");
    }
}
