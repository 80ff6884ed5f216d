//! `-w FILE`: every capture of the shared corpus (and this repository's
//! crafted ones) goes through `tcptrace -n -r X -w Y`; the real tcpdump must
//! print, from Y, the lines `tcptrace -n --no-states -r X` prints, up to and
//! including `length N` (application-layer text after it may differ, since
//! payload bytes are not written), and tshark must read Y without errors.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

const TCPTRACE: &str = env!("CARGO_BIN_EXE_tcptrace");

fn corpus() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["../../shared/conformance/pcap", "tests/crafted"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let p = e.unwrap().path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("pcap" | "pcapng")) {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.env("TZ", "UTC").stdin(Stdio::null()).output();
    out.unwrap_or_else(|e| panic!("{cmd:?}: {e} (cargo xtask setup installs tcpdump and tshark)"))
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcptrace-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Whether tcpdump's line `got` is tcptrace's line `want`, possibly followed
/// by application-layer text after `length N` (which starts with ':' or ' ').
fn same_up_to_length(want: &str, got: &str) -> bool {
    let Some(rest) = got.strip_prefix(want) else { return false };
    if rest.is_empty() {
        return true;
    }
    let Some(i) = want.rfind(", length ") else { return false };
    let n = &want[i + ", length ".len()..];
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (rest.starts_with(':') || rest.starts_with(' '))
}

/// LINKTYPE_RAW has no link header: what tcpdump prints from a Linux cooked
/// v2 header (`lo    In  `, after the timestamp) cannot be in the file.
fn without_sll2_prefix(line: &str) -> String {
    match line.split_once(' ') {
        Some((ts, rest)) if rest.len() > 10 && rest.as_bytes()[5] == b' ' && rest.as_bytes()[9] == b' ' => {
            format!("{ts} {}", &rest[10..])
        }
        _ => line.to_string(),
    }
}

/// Lines where tcpdump itself shows the packet as broken: tshark may call
/// these malformed too (it does on the original capture).
fn broken(line: &str) -> bool {
    ["[|", "bad hdr length", "[bad opt]", "invalid", "truncated", "bad-len"].iter().any(|m| line.contains(m))
}

/// Checks one capture; returns the problems found.
fn check(capture: &Path, idx: usize) -> Vec<String> {
    let name = capture.file_name().unwrap().to_string_lossy().into_owned();
    let written = tmp(&format!("{idx}-{name}.w.pcap"));
    let mut errors = Vec::new();
    let w = run(Command::new(TCPTRACE).arg("-n").arg("-r").arg(capture).arg("-w").arg(&written));
    if !w.status.success() {
        return vec![format!("{name}: tcptrace -w failed: {}", text(&w.stderr))];
    }
    // With -w, stdout has the state lines only: no packet line.
    if let Some(l) = text(&w.stdout).lines().find(|l| l.contains(" Flags [") || l.contains("[|")) {
        errors.push(format!("{name}: packet line printed with -w: {l}"));
    }
    let want = run(Command::new(TCPTRACE).args(["-n", "--no-states", "-r"]).arg(capture));
    let got = run(Command::new("tcpdump").args(["-n", "-r"]).arg(&written));
    if !got.status.success() {
        errors.push(format!("{name}: tcpdump -r failed: {}", text(&got.stderr)));
    }
    let sll2 = name == "sll2.pcap";
    let want_text = text(&want.stdout);
    let want: Vec<String> =
        want_text.lines().map(|l| if sll2 { without_sll2_prefix(l) } else { l.to_string() }).collect();
    let got = text(&got.stdout);
    let got: Vec<&str> = got.lines().collect();
    if want.len() != got.len() {
        errors.push(format!(
            "{name}: {} lines from tcptrace, {} from tcpdump -r of the -w file",
            want.len(),
            got.len()
        ));
    }
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        if !same_up_to_length(w, g) {
            errors.push(format!("{name} line {}:\n  tcptrace: {w}\n  tcpdump:  {g}", i + 1));
        }
    }
    // tshark: reads the file, and calls malformed only packets tcpdump shows
    // as broken as well, or that it calls malformed in the original capture
    // (the same time: `-t e` prints it the same from both files), whose
    // bytes were written as they were (a routing header's).
    let ts = run(Command::new("tshark").args(["-n", "-t", "e", "-r"]).arg(&written));
    if !ts.status.success() {
        errors.push(format!("{name}: tshark exit {:?}: {}", ts.status.code(), text(&ts.stderr)));
    }
    let orig = run(Command::new("tshark").args(["-n", "-t", "e", "-r"]).arg(capture));
    let time = |l: &str| l.split_whitespace().nth(1).map(str::to_string);
    let orig_malformed: Vec<String> =
        text(&orig.stdout).lines().filter(|l| l.contains("Malformed")).filter_map(time).collect();
    let ts_text = text(&ts.stdout);
    for (i, l) in ts_text.lines().enumerate() {
        let was_malformed = time(l).is_some_and(|t| orig_malformed.contains(&t));
        if l.contains("Malformed") && !want.get(i).is_some_and(|w| broken(w)) && !was_malformed {
            errors.push(format!("{name} packet {}: tshark says malformed: {l}\n  tcptrace: {:?}", i + 1, want.get(i)));
        }
    }
    if ts_text.lines().count() != want.len() {
        errors.push(format!("{name}: tshark shows {} packets, tcptrace {}", ts_text.lines().count(), want.len()));
    }
    let _ = std::fs::remove_file(&written);
    errors
}

#[test]
fn tcpdump_and_tshark_read_the_written_file() {
    let captures = corpus();
    assert!(captures.len() >= 30, "corpus not found ({} captures)", captures.len());
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = captures.iter().enumerate().map(|(i, c)| s.spawn(move || check(c, i))).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(errors.is_empty(), "{} problems:\n{}", errors.len(), errors.join("\n"));
}

fn crafted(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crafted").join(name)
}

fn conformance(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap").join(name)
}

/// `-w -` writes the pcap to standard output; tcpdump reads it from a pipe.
/// The state lines go to standard error then.
#[test]
fn write_to_stdout() {
    let cap = conformance("dns_tcp.pcap");
    let w = run(Command::new(TCPTRACE).arg("-n").arg("-r").arg(&cap).args(["-w", "-"]));
    assert!(w.status.success(), "{}", text(&w.stderr));
    assert_eq!(&w.stdout[..4], &0xa1b2_c3d4u32.to_ne_bytes(), "microsecond pcap magic");
    assert!(text(&w.stderr).contains(" STATE "), "state lines on stderr: {}", text(&w.stderr));
    let mut td = Command::new("tcpdump")
        .args(["-n", "-r", "-"])
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut td.stdin.take().unwrap(), &w.stdout).unwrap();
    let got = td.wait_with_output().unwrap();
    let want = run(Command::new(TCPTRACE).args(["-n", "--no-states", "-r"]).arg(&cap));
    let (want, got) = (text(&want.stdout), text(&got.stdout));
    assert_eq!(want.lines().count(), got.lines().count(), "{want}\n---\n{got}");
    for (w, g) in want.lines().zip(got.lines()) {
        assert!(same_up_to_length(w, g), "{w}\n{g}");
    }
}

/// `--nano` writes nanosecond timestamps (pcap's other magic number), and
/// `-c` stops after that many packets written.
#[test]
fn nano_and_count() {
    let cap = crafted("be-nano-vlan.pcap");
    let out = tmp("nano.pcap");
    let w = run(Command::new(TCPTRACE).arg("-r").arg(&cap).args(["--nano", "-c", "2", "-w"]).arg(&out));
    assert!(w.status.success(), "{}", text(&w.stderr));
    assert!(w.stdout.is_empty() || !text(&w.stdout).contains("Flags"), "no packet lines");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..4], &0xa1b2_3c4du32.to_ne_bytes(), "nanosecond pcap magic");
    assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 101, "LINKTYPE_RAW");
    let got = run(Command::new("tcpdump").args(["-n", "--nano", "-r"]).arg(&out));
    let want = run(Command::new(TCPTRACE).args(["-n", "--nano", "--no-states", "-c", "2", "-r"]).arg(&cap));
    assert_eq!(text(&got.stdout), text(&want.stdout));
    assert_eq!(text(&got.stdout).lines().count(), 2);
    let _ = std::fs::remove_file(&out);
}

/// A file that cannot be created: one message naming it, exit status 1,
/// nothing on standard output. Live, this happens before anything is loaded
/// or attached (so it needs no root).
#[test]
fn unwritable_file_fails_early() {
    let bad = "/nonexistent-dir/x.pcap";
    let cap = conformance("dns_tcp.pcap");
    for args in [vec!["-r", cap.to_str().unwrap(), "-w", bad], vec!["-i", "lo", "-w", bad]] {
        let o = run(Command::new(TCPTRACE).args(&args));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "{args:?}");
        let err = text(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("tcptrace: {bad}: ")) && err.contains("No such file"), "{err}");
    }
}
