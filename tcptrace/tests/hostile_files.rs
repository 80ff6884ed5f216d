//! `tcptrace -r` on hostile files, through the binary: truncated and
//! corrupted pcap and pcapng, wrong magic, huge and zero snapshot lengths,
//! zero-length and oversize records, a directory, a FIFO. A bad file gives one
//! message on standard error naming the file and the byte offset, exit status
//! 1 and no panic; every line printed before the bad record stays printed.

use std::{
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap").join(name)
}

/// A path in a scratch directory of its own (tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("tcptrace-hostile-{}", std::process::id())).join(n.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn tcptrace(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcptrace"))
        .args(["-n", "--no-states", "-r"])
        .arg(path)
        .env("TZ", "UTC")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Reads `bytes` as a file; returns (stdout, stderr, exit status).
fn run_bytes(name: &str, bytes: &[u8]) -> (String, String, i32) {
    let p = write(name, bytes);
    let out = tcptrace(&p);
    std::fs::remove_dir_all(p.parent().unwrap()).ok();
    text(out)
}

fn text(out: Output) -> (String, String, i32) {
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap(), out.status.code().unwrap_or(-1))
}

/// Exit status 1 and exactly one message, naming `name` and byte `offset`.
#[track_caller]
fn assert_bad(name: &str, (_, err, code): &(String, String, i32), offset: usize, what: &str) {
    assert_eq!(*code, 1, "{name}: exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{name}: one message, got: {err}");
    let l = lines[0];
    assert!(l.starts_with("tcptrace: reading "), "{name}: {l}");
    assert!(l.contains(name), "{name}: message does not name the file: {l}");
    assert!(l.contains(&format!("at byte {offset}")), "{name}: want 'at byte {offset}': {l}");
    assert!(l.contains(what), "{name}: want '{what}': {l}");
}

/// Offsets of the records of a little-endian microsecond pcap.
fn pcap_records(b: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        v.push(at);
        let caplen = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
    }
    v
}

fn whois() -> Vec<u8> {
    let b = std::fs::read(corpus("whois.pcap")).unwrap();
    assert_eq!(&b[..4], &0xa1b2_c3d4u32.to_le_bytes(), "whois.pcap is a little-endian microsecond pcap");
    b
}

/// The same frames as a little-endian pcapng (SHB, IDB, EPBs); returns the
/// file and the offsets of its EPBs.
fn to_pcapng(pcap: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut v = Vec::new();
    let block = |v: &mut Vec<u8>, btype: u32, body: &[u8]| {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = (12 + body.len()) as u32;
        v.extend(btype.to_le_bytes());
        v.extend(total.to_le_bytes());
        v.extend(&body);
        v.extend(total.to_le_bytes());
    };
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    block(&mut v, 0x0a0d_0d0a, &shb);
    let linktype = u32::from_le_bytes(pcap[20..24].try_into().unwrap()) as u16;
    let mut idb = linktype.to_le_bytes().to_vec();
    idb.extend([0, 0]);
    idb.extend(0u32.to_le_bytes());
    block(&mut v, 1, &idb);
    let mut offsets = Vec::new();
    for at in pcap_records(pcap) {
        let r = &pcap[at..];
        let sec = u32::from_le_bytes(r[0..4].try_into().unwrap()) as u64;
        let usec = u32::from_le_bytes(r[4..8].try_into().unwrap()) as u64;
        let caplen = u32::from_le_bytes(r[8..12].try_into().unwrap());
        let t = sec * 1_000_000 + usec;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(((t >> 32) as u32).to_le_bytes());
        epb.extend((t as u32).to_le_bytes());
        epb.extend(r[8..16].iter());
        epb.extend(&r[16..16 + caplen as usize]);
        offsets.push(v.len());
        block(&mut v, 6, &epb);
    }
    (v, offsets)
}

/// Lines printed for the records before `cut` (a file cut there is valid).
fn lines_before(name: &str, bytes: &[u8], cut: usize) -> String {
    let (out, err, code) = run_bytes(name, &bytes[..cut]);
    assert_eq!(code, 0, "{name} cut at {cut}: {err}");
    out
}

#[test]
fn intact_files_read() {
    let b = whois();
    let (out, err, code) = run_bytes("whois.pcap", &b);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() >= 10, "{out}");
    let (ng, _) = to_pcapng(&b);
    let (out_ng, err, code) = run_bytes("whois.pcapng", &ng);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out_ng, out, "the pcapng copy prints the same lines");
}

#[test]
fn truncated_pcap_keeps_earlier_lines() {
    let b = whois();
    let recs = pcap_records(&b);
    let full = lines_before("whois.pcap", &b, b.len());
    // Cut inside the file header, in a record header, and in packet data.
    let (r, _, _) = run_bytes("cut-header.pcap", &b[..10]);
    assert!(r.is_empty());
    assert_bad("cut-header.pcap", &run_bytes("cut-header.pcap", &b[..10]), 10, "truncated");
    for (i, &at) in recs.iter().enumerate().skip(1) {
        for (cut, what) in [(at + 7, "record header"), (at + 20, "packet data")] {
            let name = format!("cut-{i}-{cut}.pcap");
            let res = run_bytes(&name, &b[..cut]);
            let want_at = if what == "record header" { at } else { at + 16 };
            assert_bad(&name, &res, want_at, what);
            assert_eq!(res.0, lines_before(&name, &b, at), "{name}: lines before the cut");
            assert!(full.starts_with(&res.0));
        }
    }
}

#[test]
fn corrupted_pcap_records() {
    let b = whois();
    let recs = pcap_records(&b);
    let at = recs[5];
    // Oversize record: caplen above libpcap's maximum.
    let mut x = b.clone();
    x[at + 8..at + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let res = run_bytes("oversize.pcap", &x);
    assert_bad("oversize.pcap", &res, at, "bigger than maximum");
    assert_eq!(res.0, lines_before("oversize.pcap", &b, at));
    // Caplen just within the maximum but past the end of the file.
    x[at + 8..at + 12].copy_from_slice(&262_144u32.to_le_bytes());
    let res = run_bytes("past-end.pcap", &x);
    assert_bad("past-end.pcap", &res, at + 16, "truncated");
    assert_eq!(res.0, lines_before("past-end.pcap", &b, at));
    // A zero-length record is valid (libpcap reads it): it prints nothing
    // and the records after it still print.
    let mut z = b[..at].to_vec();
    z.extend([0u8; 16]);
    z.extend(&b[at..]);
    let (out, err, code) = run_bytes("zero-record.pcap", &z);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, lines_before("whois.pcap", &b, b.len()));
}

#[test]
fn bad_pcap_headers() {
    let b = whois();
    let res = run_bytes("magic.pcap", &[b"NOPE".as_slice(), &b[4..]].concat());
    assert_bad("magic.pcap", &res, 0, "unknown file format");
    assert!(res.0.is_empty());
    assert_bad("empty.pcap", &run_bytes("empty.pcap", &[]), 0, "empty");
    let mut v = b.clone();
    v[4..6].copy_from_slice(&9u16.to_le_bytes());
    assert_bad("version.pcap", &run_bytes("version.pcap", &v), 4, "version");
    let mut v = b.clone();
    v[20..24].copy_from_slice(&0xfffu32.to_le_bytes());
    assert_bad("linktype.pcap", &run_bytes("linktype.pcap", &v), 20, "link type");
    // Snapshot lengths of 0 and 2^32-1 mean "no limit" to libpcap: read as usual.
    let want = lines_before("whois.pcap", &b, b.len());
    for snap in [0u32, u32::MAX, 1 << 30] {
        let mut v = b.clone();
        v[16..20].copy_from_slice(&snap.to_le_bytes());
        let (out, err, code) = run_bytes("snaplen.pcap", &v);
        assert_eq!((code, out.as_str()), (0, want.as_str()), "snaplen {snap}: {err}");
    }
    // A small snapshot length cuts frames as libpcap does, without an error.
    let mut v = b.clone();
    v[16..20].copy_from_slice(&40u32.to_le_bytes());
    let (out, err, code) = run_bytes("snap40.pcap", &v);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().all(|l| l.contains("[|tcp]") || l.contains("IP")), "{out}");
}

#[test]
fn truncated_and_corrupted_pcapng() {
    let (ng, epbs) = to_pcapng(&whois());
    let full = lines_before("whois.pcapng", &ng, ng.len());
    let at = epbs[4];
    // Cut in a block header and in a block body.
    let res = run_bytes("cut-block-header.pcapng", &ng[..at + 5]);
    assert_bad("cut-block-header.pcapng", &res, at, "block header");
    assert_eq!(res.0, lines_before("x.pcapng", &ng, at));
    let res = run_bytes("cut-block.pcapng", &ng[..at + 30]);
    assert_bad("cut-block.pcapng", &res, at + 8, "truncated");
    assert_eq!(res.0, lines_before("x.pcapng", &ng, at));
    assert!(full.starts_with(&res.0) && !res.0.is_empty());
    // Block lengths: zero, not a multiple of 4, oversize, past the end.
    for (total, name, what) in [
        (0u32, "zero-block.pcapng", "bad block length 0"),
        (13, "odd-block.pcapng", "bad block length 13"),
        (0x7fff_fff0, "huge-block.pcapng", "bad block length"),
        (1 << 20, "past-end-block.pcapng", "truncated"),
    ] {
        let mut v = ng.clone();
        v[at + 4..at + 8].copy_from_slice(&total.to_le_bytes());
        let res = run_bytes(name, &v);
        assert_bad(name, &res, if what == "truncated" { at + 8 } else { at }, what);
        assert_eq!(res.0, lines_before("x.pcapng", &ng, at), "{name}");
    }
    // Captured length beyond the block, packet on an interface never described.
    let mut v = ng.clone();
    v[at + 20..at + 24].copy_from_slice(&100_000u32.to_le_bytes());
    assert_bad("caplen.pcapng", &run_bytes("caplen.pcapng", &v), at, "runs past the block");
    let mut v = ng.clone();
    v[at + 8..at + 12].copy_from_slice(&7u32.to_le_bytes());
    assert_bad("iface.pcapng", &run_bytes("iface.pcapng", &v), at, "unknown interface 7");
    // Section header: bad byte-order magic, cut short.
    let mut v = ng.clone();
    v[8..12].copy_from_slice(b"XXXX");
    assert_bad("bom.pcapng", &run_bytes("bom.pcapng", &v), 0, "byte-order magic");
    assert_bad("shb.pcapng", &run_bytes("shb.pcapng", &ng[..20]), 12, "section header");
}

#[test]
fn directory_and_missing_file() {
    let dir = scratch("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    let res = text(tcptrace(&dir));
    assert_bad("a-directory", &res, 0, "Is a directory");
    let missing = scratch("no-such-file.pcap");
    let (_, err, code) = text(tcptrace(&missing));
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no-such-file.pcap") && err.contains("No such file"), "{err}");
}

/// A FIFO is read as a stream: a good capture prints as from a file, a cut
/// one fails at the offset, and a writer that closes at once is an empty file.
#[test]
fn fifo() {
    let b = whois();
    let recs = pcap_records(&b);
    let want = lines_before("whois.pcap", &b, b.len());
    for (name, data) in [("fifo-good", b.clone()), ("fifo-cut", b[..recs[3] + 20].to_vec()), ("fifo-empty", vec![])] {
        let path = scratch(name);
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let p2 = path.clone();
        let writer = std::thread::spawn(move || std::fs::write(&p2, data).unwrap());
        let res = text(tcptrace(&path));
        writer.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
        match name {
            "fifo-good" => assert_eq!((res.2, res.0.as_str()), (0, want.as_str()), "{}", res.1),
            "fifo-cut" => {
                assert_bad(name, &res, recs[3] + 16, "packet data");
                assert_eq!(res.0, lines_before("x.pcap", &b, recs[3]));
            }
            _ => assert_bad(name, &res, 0, "empty"),
        }
    }
}

#[test]
fn standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcptrace"))
        .args(["-n", "--no-states", "-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"garbage!garbage!garbage!").unwrap();
    let res = text(child.wait_with_output().unwrap());
    assert_bad("standard input", &res, 0, "unknown file format");
}
