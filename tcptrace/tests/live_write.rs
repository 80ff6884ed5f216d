//! `-w FILE` live: real connections (IPv4 and IPv6) between two namespaces,
//! traced at the same time by `tcptrace -w FILE`, by tcptrace printing lines
//! and by the real tcpdump. `tcpdump -r FILE` must print what the line-printing
//! tcptrace printed, and what the live tcpdump printed up to `length N`, with
//! timestamps within 1 ms. Needs root; run by `cargo xtask test`.

mod support;

use std::{process::Command, time::Duration};

use support::{
    netns::{NetPair, exchange, is_root, listen},
    proc::Proc,
};

const TCPTRACE: &str = env!("CARGO_BIN_EXE_tcptrace");

/// `-tt` lines as (seconds, rest), without empty lines.
fn split(lines: &str) -> Vec<(f64, String)> {
    lines
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (ts, rest) = l.split_once(' ').unwrap_or_else(|| panic!("no timestamp: {l}"));
            (ts.parse::<f64>().unwrap_or_else(|_| panic!("bad timestamp: {l}")), rest.to_string())
        })
        .collect()
}

/// Whether `got` is `want` with, at most, application-layer text after
/// `length N`.
fn same_up_to_length(want: &str, got: &str) -> bool {
    let Some(rest) = got.strip_prefix(want) else { return false };
    if rest.is_empty() {
        return true;
    }
    let Some(i) = want.rfind(", length ") else { return false };
    let n = &want[i + ", length ".len()..];
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (rest.starts_with(':') || rest.starts_with(' '))
}

/// `reference` lines (tcptrace's, or live tcpdump's when `cut`) against the
/// lines tcpdump printed from the file.
fn compare(what: &str, reference: &str, from_file: &str, cut: bool) {
    let (a, b) = (split(reference), split(from_file));
    let same = a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| if cut { same_up_to_length(&y.1, &x.1) } else { x.1 == y.1 });
    assert!(same, "{what}: lines differ\n--- {what}\n{reference}--- tcpdump -r FILE\n{from_file}");
    for ((ta, la), (tb, _)) in a.iter().zip(&b) {
        assert!((ta - tb).abs() <= 0.001, "{what}: timestamps {ta} vs {tb} more than 1 ms apart on {la}");
    }
}

fn tcpdump_read(file: &std::path::Path) -> String {
    let o = Command::new("tcpdump").args(["-n", "-tt", "-r"]).arg(file).output().expect("tcpdump");
    assert!(o.status.success(), "tcpdump -r: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
#[ignore = "needs root"]
fn live_write_reads_back_as_tcpdump_lines() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (l4, to4) = listen(&pair, format!("{}:0", pair.addr_b));
    let (l6, to6) = listen(&pair, format!("[{}]:0", pair.addr6_b));
    let ports = [to4.port(), to6.port()];
    let file = std::env::temp_dir().join(format!("tcptrace-live-w-{}.pcap", std::process::id()));

    let tracer = |extra: &[&str]| {
        let mut c = NetPair::command(&pair.a, TCPTRACE);
        c.args(["-i", &pair.if_a, "-n"]).args(extra);
        for p in ports {
            c.args(["--port", &p.to_string()]);
        }
        c
    };
    let mut writer = Proc::spawn("tcptrace -w", tracer(&["-w", file.to_str().unwrap()]));
    writer.wait_for("listening on");
    let mut lines = Proc::spawn("tcptrace", tracer(&["-tt", "--no-states"]));
    lines.wait_for("listening on");
    let mut td = NetPair::command(&pair.a, "tcpdump");
    let filter = ports.map(|p| format!("tcp port {p}")).join(" or ");
    td.args(["-i", &pair.if_a, "-n", "-tt", "-l", &filter]);
    let mut tcpdump = Proc::spawn("tcpdump", td);
    tcpdump.wait_for("listening on");

    exchange(&pair, l4, to4);
    exchange(&pair, l6, to6);
    std::thread::sleep(Duration::from_millis(300));

    // Flushed batch by batch: readable while tcptrace still runs.
    let while_running = tcpdump_read(&file);

    let (w_out, w_err, w_status) = writer.stop();
    let (t_out, t_err, t_status) = lines.stop();
    let (d_out, _, _) = tcpdump.stop();
    assert_eq!(w_status, 0, "tcptrace -w: {w_err}");
    assert_eq!(t_status, 0, "tcptrace: {t_err}");

    let from_file = tcpdump_read(&file);
    let _ = std::fs::remove_file(&file);
    let n = from_file.lines().count();
    assert!(n >= 20, "too few packets in the file:\n{from_file}");
    assert!(from_file.contains(" IP6 ") && from_file.contains(" IP "), "{from_file}");
    assert_eq!(while_running, from_file, "the file was not complete before the end");
    compare("tcptrace", &t_out, &from_file, false);
    compare("tcpdump", &d_out, &from_file, true);

    // With -w: no packet line on stdout, the state lines are still there, and
    // the summary counts the packets written.
    assert!(!w_out.contains("Flags ["), "packet lines printed with -w:\n{w_out}");
    assert_eq!(w_out.matches(" CONN ").count(), 2, "{w_out}");
    assert!(w_out.contains("SYN_SENT -> ESTABLISHED"), "{w_out}");
    assert!(w_err.contains(&format!("{n} packets captured")), "{w_err}");
}

/// `-c 3` stops after three packets written, and SIGTERM ends a run like
/// Ctrl-C: both leave a complete file.
#[test]
#[ignore = "needs root"]
fn live_write_count_and_sigterm_leave_complete_files() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let pair = NetPair::new();
    let (l4, to4) = listen(&pair, format!("{}:0", pair.addr_b));
    let dir = std::env::temp_dir();
    let counted = dir.join(format!("tcptrace-live-w-c-{}.pcap", std::process::id()));
    let termed = dir.join(format!("tcptrace-live-w-term-{}.pcap", std::process::id()));
    let tracer = |file: &std::path::Path, extra: &[&str]| {
        let mut c = NetPair::command(&pair.a, TCPTRACE);
        c.args(["-i", &pair.if_a, "-n", "--no-states", "--port", &to4.port().to_string(), "-w"]).arg(file).args(extra);
        c
    };
    let mut with_count = Proc::spawn("tcptrace -c 3 -w", tracer(&counted, &["-c", "3"]));
    with_count.wait_for("listening on");
    let mut term = Proc::spawn("tcptrace -w (SIGTERM)", tracer(&termed, &[]));
    term.wait_for("listening on");
    exchange(&pair, l4, to4);
    std::thread::sleep(Duration::from_millis(300));

    let (out, err, rc) = with_count.finish();
    assert_eq!(rc, 0, "-c 3 -w: {err}");
    assert!(out.is_empty(), "nothing on stdout with -c and no interrupt: {out:?}");
    assert!(err.lines().any(|l| l == "3 packets captured"), "{err}");
    let first3 = tcpdump_read(&counted);
    assert_eq!(first3.lines().count(), 3, "{first3}");

    let (_, err, rc) = term.signal(libc::SIGTERM);
    assert_eq!(rc, 0, "SIGTERM: {err}");
    let all = tcpdump_read(&termed);
    assert!(all.lines().count() >= 10, "{all}");
    // Each tracer stamps its own records: compare what follows the timestamps.
    let rests = |t: &str| split(t).into_iter().map(|(_, r)| r).collect::<Vec<_>>();
    assert_eq!(rests(&first3)[..], rests(&all)[..3], "the first three packets differ:\n{first3}---\n{all}");
    let _ = std::fs::remove_file(&counted);
    let _ = std::fs::remove_file(&termed);
}
