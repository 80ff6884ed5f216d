//! `offline::run` beyond the corpus: -c, the --port/--flags filter, a capture
//! cut short, and a closed output pipe.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Parser;
use tcptrace::cli::Args;

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap").join(name)
}

fn run(argv: &[&str]) -> (anyhow::Result<()>, String) {
    // SAFETY: the tests of this binary only ever set TZ to the same value.
    unsafe { std::env::set_var("TZ", "UTC") };
    // These compare with tcpdump's lines: no state lines.
    let args =
        Args::try_parse_from(std::iter::once("tcptrace").chain(argv.iter().copied()).chain(["--no-states"])).unwrap();
    let mut out = Vec::new();
    let r = tcptrace::offline::run(&args, &mut out);
    (r, String::from_utf8(out).unwrap())
}

fn expected(name: &str) -> Vec<String> {
    std::fs::read_to_string(pcap(name)).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn count_limits_lines() {
    let p = pcap("synthetic-tcp4-edge.pcap");
    let (r, out) = run(&["-n", "-c", "5", "-r", p.to_str().unwrap()]);
    r.unwrap();
    let exp = expected("synthetic-tcp4-edge.pcap.n.out");
    assert_eq!(out.lines().collect::<Vec<_>>(), exp[..5].iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn port_and_flag_filter() {
    let p = pcap("synthetic-tcp4-edge.pcap");
    // Relative numbers differ once other conversations are filtered out, so
    // compare with -S.
    let exp = expected("synthetic-tcp4-edge.pcap.nnS.out");
    let (r, out) = run(&["-n", "-S", "--port", "5002", "-r", p.to_str().unwrap()]);
    r.unwrap();
    let want: Vec<&str> = exp.iter().map(String::as_str).filter(|l| l.contains(".5002")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    assert_eq!(want.len(), 4);

    let (r, out) = run(&["-n", "-S", "--flags", "SYN,FIN", "-r", p.to_str().unwrap()]);
    r.unwrap();
    let want: Vec<&str> = exp
        .iter()
        .map(String::as_str)
        .filter(|l| {
            l.contains("Flags [") && l.split("Flags [").nth(1).unwrap().split(']').next().unwrap().contains(['S', 'F'])
        })
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn truncated_capture_prints_then_fails() {
    let data = std::fs::read(pcap("whois.pcap")).unwrap();
    let path = std::env::temp_dir().join(format!("tcptrace-trunc-{}.pcap", std::process::id()));
    std::fs::write(&path, &data[..data.len() - 10]).unwrap();
    let (r, out) = run(&["-n", "-r", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("truncated") && err.contains("at byte"), "{err}");
    let exp = expected("whois.pcap.n.out");
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), exp.len() - 1);
    for (g, e) in got.iter().zip(&exp) {
        assert!(e.starts_with(g), "{g} / {e}");
    }
}

#[test]
fn not_a_capture() {
    let path = std::env::temp_dir().join(format!("tcptrace-bad-{}.pcap", std::process::id()));
    std::fs::write(&path, b"hello world, not a pcap").unwrap();
    let (r, out) = run(&["-n", "-r", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    assert!(format!("{:#}", r.unwrap_err()).contains("magic"));
    assert!(out.is_empty());
}

struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

#[test]
fn broken_pipe_is_quiet() {
    let p = pcap("whois.pcap");
    let args = Args::try_parse_from(["tcptrace", "-n", "-r", p.to_str().unwrap()]).unwrap();
    tcptrace::offline::run(&args, &mut ClosedPipe).unwrap();
}

/// Every frame of the corpus, cut at every length and with bytes flipped,
/// goes through the parser and the formatter without a panic.
#[test]
fn cut_and_mangled_frames_do_not_panic() {
    use tcptrace::format::{FormatOptions, Formatter, Timestamp};
    use tcptrace_common::{SliceFrame, parse_frame};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap");
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for absolute in [false, true] {
        let mut f = Formatter::new(FormatOptions {
            ts_mode: tcptrace::cli::TimestampMode::DeltaPrev,
            nano: false,
            absolute,
            numeric: true,
        });
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
                continue;
            }
            let reader = tcptrace::capture::open(&path).unwrap();
            for pkt in reader.take(60) {
                let pkt = pkt.unwrap();
                let n = pkt.data.len().min(120);
                for cut in 0..=n {
                    let mut data = pkt.data[..cut].to_vec();
                    for _ in 0..2 {
                        let r = next();
                        if cut > 0 && r % 3 == 0 {
                            let i = (r >> 8) as usize % cut;
                            data[i] = (r >> 32) as u8;
                        }
                        let frame = SliceFrame { data: &data, wire_len: pkt.wire_len };
                        if let Ok(rec) = parse_frame(&frame, pkt.link) {
                            out.clear();
                            f.write_packet(Timestamp::micros(next() as i64 % 100, next() % 2_000_000), &rec, &mut out);
                            assert!(out.ends_with(b"\n"));
                        }
                    }
                }
            }
        }
    }
}

/// Every capture of the corpus, with state lines on and every timestamp
/// style: removing the STATE and CONN lines gives exactly the lines of the
/// same run with `--no-states` (so with -ttt/-ttttt the packet lines' deltas
/// are untouched), and state lines have the expected shape.
#[test]
fn state_lines_leave_packet_lines_alone() {
    // SAFETY: the tests of this binary only ever set TZ to the same value.
    unsafe { std::env::set_var("TZ", "UTC") };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut state_lines = 0;
    let mut summaries = 0;
    for file in &files {
        let f = file.to_str().unwrap();
        for extra in [
            &[][..],
            &["-t"],
            &["-tt"],
            &["-ttt"],
            &["-tttt"],
            &["-ttttt"],
            &["-ttt", "--nano"],
            &["--flags", "SYN,FIN,RST"],
        ] {
            let argv: Vec<&str> = ["-n", "-r", f].iter().copied().chain(extra.iter().copied()).collect();
            let run_with = |states: bool| {
                let args = Args::try_parse_from(
                    std::iter::once("tcptrace").chain(argv.iter().copied()).chain((!states).then_some("--no-states")),
                )
                .unwrap();
                let mut out = Vec::new();
                let r = tcptrace::offline::run(&args, &mut out);
                (r.is_ok(), String::from_utf8(out).unwrap())
            };
            let (ok_plain, plain) = run_with(false);
            let (ok_states, with_states) = run_with(true);
            assert_eq!(ok_plain, ok_states, "{argv:?}");
            let is_state = |l: &str| {
                let body = l.split_once(" STATE ").or_else(|| l.split_once(" CONN ")).map(|(_, b)| b);
                let body = body.or_else(|| l.strip_prefix("STATE ")).or_else(|| l.strip_prefix("CONN "));
                body.is_some() && !l.contains(" Flags [") && !l.contains(": [|")
            };
            let filtered: Vec<&str> = with_states.lines().filter(|l| !is_state(l)).collect();
            assert_eq!(filtered, plain.lines().collect::<Vec<_>>(), "{argv:?}");
            for l in with_states.lines().filter(|l| is_state(l)) {
                if extra == ["-t"] {
                    assert!(l.starts_with("STATE ") || l.starts_with("CONN "), "{l}");
                }
                if l.contains("STATE ") {
                    state_lines += 1;
                    assert!(l.contains(" -> ") && l.ends_with(')'), "{l}");
                } else {
                    summaries += 1;
                    assert!(l.contains(", duration ") && l.contains(", bytes >"), "{l}");
                }
            }
        }
    }
    assert!(state_lines > 50 && summaries > 5, "{state_lines} state lines, {summaries} summaries");
}

/// Without -n, names come from the system resolver as in tcpdump: on the
/// loopback captures (127.0.0.1 is `localhost` in /etc/hosts) tcptrace prints
/// what the real tcpdump prints, up to `length N` (tcpdump then goes on with
/// application-layer text).
#[test]
fn names_match_real_tcpdump_on_loopback_captures() {
    for name in ["print-flags.pcap", "resp_3_malicious.pcap"] {
        let p = pcap(name);
        let td = std::process::Command::new("tcpdump")
            .args(["-r", p.to_str().unwrap(), "tcp"])
            .env("TZ", "UTC")
            .output()
            .expect("tcpdump (cargo xtask test installs it)");
        assert!(td.status.success(), "tcpdump failed: {}", String::from_utf8_lossy(&td.stderr));
        let td = String::from_utf8(td.stdout).unwrap();
        let (r, ours) = run(&["-r", p.to_str().unwrap()]);
        r.unwrap();
        assert!(ours.contains("localhost."), "{name}: no names in\n{ours}");
        let (a, b): (Vec<_>, Vec<_>) = (ours.lines().collect(), td.lines().collect());
        assert_eq!(a.len(), b.len(), "{name}: line counts\n--- tcptrace\n{ours}--- tcpdump\n{td}");
        for (x, y) in a.iter().zip(&b) {
            assert!(y.starts_with(x), "{name}:\n tcptrace: {x}\n tcpdump:  {y}");
            let end = x.rfind(", length ").map(|i| i + ", length ".len()).unwrap_or(0);
            assert!(x[end..].chars().all(|c| c.is_ascii_digit()), "{name}: line does not end at length N: {x}");
        }
    }
}

#[test]
fn family_filter() {
    let p4 = pcap("synthetic-tcp4-edge.pcap");
    let p6 = pcap("synthetic-tcp6-edge.pcap");
    let (r, out) = run(&["-n", "--family", "6", "-r", p4.to_str().unwrap()]);
    r.unwrap();
    assert_eq!(out, "");
    let (r, out) = run(&["-n", "--family", "6", "-r", p6.to_str().unwrap()]);
    r.unwrap();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected("synthetic-tcp6-edge.pcap.n.out"));
}

/// `--json`: one object per line; packets carry tcpdump's line (the same as
/// `-t` text output) and the record's fields; state events match the text
/// state lines one for one.
#[test]
fn json_objects_match_text_output() {
    for name in ["synthetic-tcp4-edge.pcap", "synthetic-tcp6-edge.pcap", "tcp-handshake-nano.pcap"] {
        let p = pcap(name);
        let p = p.to_str().unwrap();
        // With states (no --no-states): call offline::run directly.
        let args = |extra: &[&str]| {
            let mut v = vec!["tcptrace", "-n", "-r", p];
            v.extend_from_slice(extra);
            Args::try_parse_from(v).unwrap()
        };
        let mut text = Vec::new();
        tcptrace::offline::run(&args(&["-t"]), &mut text).unwrap();
        let mut json = Vec::new();
        tcptrace::offline::run(&args(&["--json"]), &mut json).unwrap();
        let (text, json) = (String::from_utf8(text).unwrap(), String::from_utf8(json).unwrap());
        let text: Vec<&str> = text.lines().collect();
        let objs: Vec<serde_json::Value> =
            json.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}"))).collect();
        assert_eq!(objs.len(), text.len(), "{name}: one object per text line");
        for (o, t) in objs.iter().zip(&text) {
            assert_eq!(o["v"], 1);
            match o["type"].as_str().unwrap() {
                "packet" => {
                    assert_eq!(o["line"].as_str().unwrap(), *t, "{name}");
                    assert!(o["ts_ns"].as_i64().unwrap() > 0 && o["time"].as_str().unwrap().ends_with('Z'));
                }
                "state" => {
                    assert!(t.starts_with("STATE "), "{name}: {t}");
                    let ep = &o["endpoint"];
                    assert!(
                        t.contains(&format!(" {} -> {} ", o["from"].as_str().unwrap(), o["to"].as_str().unwrap())),
                        "{t}"
                    );
                    assert!(t.contains(&format!(".{} ", ep["port"])), "{t} vs {ep}");
                }
                "conn" => {
                    assert!(t.starts_with("CONN "), "{name}: {t}");
                    assert!(t.contains(o["outcome"].as_str().unwrap()), "{t}");
                }
                other => panic!("{name}: unexpected type {other}"),
            }
        }
    }
}

/// With --flags, relative sequence numbers are what tcpdump prints with the
/// equivalent filter expression: only the shown packets set the bases.
#[test]
fn flag_filter_numbers_match_tcpdump_filter_expression() {
    // Captures without VLAN-tagged or hop-by-hop frames, which tcpdump's
    // `tcp` filter primitives would drop.
    for (name, flags, expr) in [
        ("mptcp-v0.pcap", "F,R", "tcp[tcpflags] & (tcp-fin|tcp-rst) != 0"),
        ("ssh.pcap", "P", "tcp[tcpflags] & tcp-push != 0"),
        ("print-flags.pcap", "S,F", "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0"),
        ("synthetic-tcp6-edge.pcap", "R,U", "ip6 and (ip6[40+13] & 0x24 != 0)"),
    ] {
        same_as_tcpdump_filter(name, &["--flags", flags], expr);
    }
}

/// `tcptrace -n -r NAME ARGS` prints (something and) the lines of
/// `tcpdump -n -r NAME EXPR`, up to `length N`.
fn same_as_tcpdump_filter(name: &str, args: &[&str], expr: &str) {
    let p = pcap(name);
    let td = std::process::Command::new("tcpdump")
        .args(["-n", "-r", p.to_str().unwrap(), expr])
        .env("TZ", "UTC")
        .output()
        .expect("tcpdump (cargo xtask test installs it)");
    assert!(td.status.success(), "{name}: tcpdump: {}", String::from_utf8_lossy(&td.stderr));
    let td = String::from_utf8(td.stdout).unwrap();
    let mut argv = vec!["-n", "-r", p.to_str().unwrap()];
    argv.extend(args);
    let (r, ours) = run(&argv);
    r.unwrap();
    let (a, b): (Vec<_>, Vec<_>) = (ours.lines().collect(), td.lines().collect());
    assert!(!a.is_empty(), "{name} {args:?}: nothing shown");
    assert_eq!(a.len(), b.len(), "{name} {args:?}\n--- tcptrace\n{ours}--- tcpdump\n{td}");
    for (x, y) in a.iter().zip(&b) {
        assert!(y.starts_with(x), "{name} {args:?}:\n tcptrace: {x}\n tcpdump:  {y}");
    }
}

/// `--host` and `--net` print what the real tcpdump prints with `host` and
/// `net` (relative numbers included: only the shown packets set the bases).
#[test]
fn host_and_net_filters_match_tcpdump() {
    for (name, args, expr) in [
        ("mptcp-v0.pcap", &["--host", "10.1.2.2"][..], "tcp and host 10.1.2.2"),
        ("mptcp-v0.pcap", &["--net", "10.1.1.0/24"][..], "tcp and net 10.1.1.0/24"),
        ("mptcp-v0.pcap", &["--net", "10.0.0.0/8", "--port", "22"][..], "tcp and net 10.0.0.0/8 and port 22"),
        (
            "mptcp-v0.pcap",
            &["--host", "10.9.9.9", "--host", "10.1.2.2"][..],
            "tcp and (host 10.9.9.9 or host 10.1.2.2)",
        ),
        ("synthetic-tcp6-edge.pcap", &["--net", "2001:db8:1::/48"][..], "ip6 and net 2001:db8:1::/48"),
        ("synthetic-tcp6-edge.pcap", &["--host", "fe80::2"][..], "ip6 and host fe80::2"),
    ] {
        same_as_tcpdump_filter(name, args, expr);
    }
}

#[test]
fn host_and_net_arguments() {
    let parse = |argv: &[&str]| Args::try_parse_from(std::iter::once("tcptrace").chain(argv.iter().copied()));
    assert!(parse(&["--host", "10.0.0.1", "--net", "2001:db8::/32"]).is_ok());
    for bad in [&["--host", "10.0.0"][..], &["--net", "10.0.0.1/24"], &["--net", "10.0.0.0/33"], &["--net", "10.0.0.0"]]
    {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let many: Vec<String> = (0..17).flat_map(|i| ["--host".to_string(), format!("10.0.0.{i}")]).collect();
    let args = Args::try_parse_from(std::iter::once("tcptrace".to_string()).chain(many)).unwrap();
    let e = tcptrace::filter::hosts_from_args(&args).unwrap_err();
    assert_eq!(e.to_string(), "at most 16 --host and --net in all");
}
