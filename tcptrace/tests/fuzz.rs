//! Property-based fuzzing (proptest) of everything that reads untrusted
//! bytes: the capture-file reader (with the whole `-r` pipeline behind it),
//! the frame parser under every link type, and the record decoder with the
//! formatter, the state tracker, the JSON writer and the pcap writer behind it.
//! Nothing may panic or hang.
//!
//! Inputs are seeded from the captures in `../shared/conformance/pcap` (read in
//! place, not copied) and mutated: bytes flipped or set to boundary values,
//! 32-bit fields set to boundary lengths, cuts, insertions, deletions and
//! duplicated runs. The seed of the random generator is fixed, so a run is
//! reproducible; proptest shrinks a failing input before reporting it.
//!
//! `cargo xtask test` runs a bounded smoke run (a few thousand cases per
//! target, well under a minute in a debug build). For a long run:
//!
//! ```sh
//! TCPTRACE_FUZZ_CASES=4000000 TCPTRACE_FUZZ_SEED=7 cargo test --release -p tcptrace --test fuzz -- --nocapture
//! ```

use std::{
    io::{Cursor, Write},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use clap::Parser as _;
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner},
};
use tcptrace::{
    capture::{CaptureReader, MAX_SNAPLEN},
    cli::Args,
    format::{LinkInfo, Timestamp},
    pcap::PcapSink,
    pipeline::{Pipeline, TimeBase},
};
use tcptrace_common::{
    LinkType, PacketRecord, SliceFrame, fill_record, parse_frame, parse_frame_ext, parse_headers,
    record::{MAX_OPTIONS, RECORD_SIZE},
};

/// Longest a single input may take (a hang shows up as a failure).
const SLOW: Duration = Duration::from_secs(2);
/// Seed captures are cut to this many bytes, so that a case stays cheap.
const SEED_BYTES: usize = 24 * 1024;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap")
}

/// The conformance captures, cut to [`SEED_BYTES`].
fn captures() -> &'static [Vec<u8>] {
    static C: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    C.get_or_init(|| {
        let mut names: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
            .expect("../shared/conformance/pcap")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
            .collect();
        names.sort();
        let v: Vec<Vec<u8>> = names
            .iter()
            .map(|p| {
                let mut b = std::fs::read(p).unwrap();
                b.truncate(SEED_BYTES);
                b
            })
            .collect();
        assert!(v.len() >= 10, "too few seed captures in {}", corpus_dir().display());
        let mut v = v;
        for s in synthetic(&v) {
            let r = CaptureReader::new(Cursor::new(s.clone())).unwrap();
            let n = r.inspect(|p| assert!(p.is_ok(), "{p:?}")).count();
            assert!(n >= 4, "synthetic seed reads {n} packets");
            v.push(s);
        }
        v
    })
}

/// Variants the corpus lacks, built from frames of its first capture:
/// big-endian nanosecond pcap, the "Kuznetzov" pcap (24-byte record headers),
/// pcap 2.3 with swapped lengths, and a big-endian pcapng with `if_tsresol`,
/// `if_tsoffset`, enhanced, simple and obsolete packet blocks, an unknown
/// block and a second section.
fn synthetic(captures: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = captures
        .iter()
        .filter_map(|c| CaptureReader::new(Cursor::new(c.clone())).ok())
        .flat_map(|r| r.map_while(Result::ok))
        .filter(|p| p.link == LinkType::Ethernet)
        .take(4)
        .map(|p| p.data)
        .collect();
    let pcap = |big: bool, magic: u32, minor: u16, rec_hdr: usize, swap_lens: bool| {
        let w32 = |v: &mut Vec<u8>, x: u32| v.extend(if big { x.to_be_bytes() } else { x.to_le_bytes() });
        let w16 = |v: &mut Vec<u8>, x: u16| v.extend(if big { x.to_be_bytes() } else { x.to_le_bytes() });
        let mut v = Vec::new();
        w32(&mut v, magic);
        w16(&mut v, 2);
        w16(&mut v, minor);
        for x in [0, 0, 65535, 1] {
            w32(&mut v, x);
        }
        for (i, f) in frames.iter().enumerate() {
            let (cap, len) = (f.len() as u32, f.len() as u32 + 4);
            let (a, b) = if swap_lens { (len, cap) } else { (cap, len) };
            for x in [1_000_000 + i as u32, 999_999_999, a, b] {
                w32(&mut v, x);
            }
            v.extend(std::iter::repeat_n(0u8, rec_hdr - 16));
            v.extend(f);
        }
        v
    };
    let mut out = vec![
        pcap(true, 0xa1b2_3c4d, 4, 16, false),
        pcap(false, 0xa1b2_cd34, 4, 24, false),
        pcap(false, 0xa1b2_c3d4, 3, 16, true),
    ];
    let big = true;
    let w32 = |x: u32| if big { x.to_be_bytes() } else { x.to_le_bytes() };
    let w16 = |x: u16| if big { x.to_be_bytes() } else { x.to_le_bytes() };
    let block = |v: &mut Vec<u8>, btype: u32, body: &[u8]| {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = (12 + body.len()) as u32;
        v.extend(w32(btype));
        v.extend(w32(total));
        v.extend(&body);
        v.extend(w32(total));
    };
    let mut ng = Vec::new();
    for section in 0..2 {
        let mut shb = w32(0x1a2b_3c4d).to_vec();
        shb.extend(w16(1));
        shb.extend(w16(0));
        shb.extend((-1i64).to_be_bytes());
        block(&mut ng, 0x0a0d_0d0a, &shb);
        for (resol, offset) in [(9u8, 1_000i64), (0x80 | 20, -5)] {
            let mut idb = w16(1).to_vec();
            idb.extend([0, 0]);
            idb.extend(w32(if section == 0 { 0 } else { 64 }));
            idb.extend(w16(9));
            idb.extend(w16(1));
            idb.extend([resol, 0, 0, 0]);
            idb.extend(w16(14));
            idb.extend(w16(8));
            idb.extend(if big { offset.to_be_bytes() } else { offset.to_le_bytes() });
            idb.extend([0, 0, 0, 0]);
            block(&mut ng, 1, &idb);
        }
        for (i, f) in frames.iter().enumerate() {
            let t: u64 = 1_700_000_000_123_456_789 + i as u64;
            let mut epb = w32(i as u32 % 2).to_vec();
            epb.extend(w32((t >> 32) as u32));
            epb.extend(w32(t as u32));
            epb.extend(w32(f.len() as u32));
            epb.extend(w32(f.len() as u32));
            epb.extend(f);
            block(&mut ng, 6, &epb);
            let mut spb = w32(f.len() as u32).to_vec();
            spb.extend(f);
            block(&mut ng, 3, &spb);
            let mut opb = w16(1).to_vec();
            opb.extend(w16(0));
            opb.extend(&epb[4..]);
            block(&mut ng, 2, &opb);
        }
        block(&mut ng, 0x0bad, &[1, 2, 3, 4]);
    }
    out.push(ng);
    out
}

/// Every frame of the conformance captures, with its link type and length.
fn frames() -> &'static [(LinkType, u32, Vec<u8>)] {
    static F: OnceLock<Vec<(LinkType, u32, Vec<u8>)>> = OnceLock::new();
    F.get_or_init(|| {
        let mut v = Vec::new();
        for c in captures() {
            let Ok(r) = CaptureReader::new(Cursor::new(c.clone())) else { continue };
            for p in r.map_while(Result::ok) {
                v.push((p.link, p.wire_len, p.data));
            }
        }
        assert!(v.len() > 200, "only {} seed frames", v.len());
        v
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A runner with a fixed seed (`TCPTRACE_FUZZ_SEED`, default 1) and
/// `TCPTRACE_FUZZ_CASES` cases (default `cases`).
fn runner(target: u8, cases: u32) -> TestRunner {
    let cases = env_u64("TCPTRACE_FUZZ_CASES", cases as u64).min(u32::MAX as u64) as u32;
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&env_u64("TCPTRACE_FUZZ_SEED", 1).to_le_bytes());
    seed[8] = target;
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 10_000,
        // Inputs are built by mutation; none is rejected.
        max_global_rejects: 0,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

/// Runs `test` on `cases` inputs and reports the count and the slowest case.
fn fuzz<S: Strategy>(
    target: u8,
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut r = runner(target, cases);
    let n = r.config().cases;
    let t = Instant::now();
    let slowest = std::sync::Mutex::new(Duration::ZERO);
    let res = r.run(&strategy, |v| {
        let t = Instant::now();
        let res = test(v);
        let took = t.elapsed();
        let mut s = slowest.lock().unwrap();
        *s = (*s).max(took);
        prop_assert!(took < SLOW, "input took {took:?}");
        res
    });
    eprintln!(
        "fuzz {name}: {n} inputs in {:.1}s, slowest {:?}: {}",
        t.elapsed().as_secs_f64(),
        slowest.lock().unwrap(),
        if res.is_ok() { "ok" } else { "FAILED" }
    );
    if let Err(e) = res {
        let text = format!("{e}");
        panic!("fuzz {name}: {}", &text[..text.len().min(20_000)]);
    }
}

/// One change to a byte string; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    /// A boundary value for a 16- or 32-bit field, in either byte order.
    Field(usize, u32, bool, bool),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copies `len` bytes from the first position to the second.
    Duplicate(usize, usize, usize),
}

const BOUNDARY: [u32; 16] = [
    0,
    1,
    3,
    4,
    7,
    12,
    20,
    28,
    0x7f,
    0xff,
    0xffff,
    MAX_SNAPLEN,
    MAX_SNAPLEN + 1,
    16 * 1024 * 1024,
    0x7fff_ffff,
    0xffff_ffff,
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<usize>(), prop::sample::select(&BOUNDARY[..]), any::<bool>(), any::<bool>())
            .prop_map(|(i, v, big, wide)| Mutation::Field(i, v, big, wide)),
        1 => any::<usize>().prop_map(Mutation::Cut),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<usize>(), any::<usize>(), 1usize..256).prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
    ]
}

fn apply(b: &mut Vec<u8>, muts: &[Mutation]) {
    for m in muts {
        let len = b.len();
        if len == 0 {
            if let Mutation::Insert(_, v) = m {
                b.extend_from_slice(v);
            }
            continue;
        }
        match m {
            Mutation::Set(i, v) => b[i % len] = *v,
            Mutation::Field(i, v, big, wide) => {
                let bytes: Vec<u8> = match (wide, big) {
                    (true, true) => v.to_be_bytes().to_vec(),
                    (true, false) => v.to_le_bytes().to_vec(),
                    (false, true) => (*v as u16).to_be_bytes().to_vec(),
                    (false, false) => (*v as u16).to_le_bytes().to_vec(),
                };
                let at = i % len;
                for (k, x) in bytes.into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + k) {
                        *slot = x;
                    }
                }
            }
            Mutation::Cut(i) => b.truncate(i % (len + 1)),
            Mutation::Insert(i, v) => {
                let at = i % (len + 1);
                b.splice(at..at, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                b.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate(from, to, n) => {
                let from = from % len;
                let run: Vec<u8> = b[from..(from + n).min(len)].to_vec();
                let to = to % (len + 1);
                b.splice(to..to, run);
            }
        }
    }
}

/// Option sets the pipeline runs under (text, JSON, states, `-w`, timestamps).
fn arg_sets() -> Vec<Args> {
    let sets: [&[&str]; 8] = [
        &["-n"],
        &["-n", "--no-states"],
        &["-n", "-S", "-ttt"],
        &["-n", "--json"],
        &["-n", "-tttt", "--nano", "--flags", "SYN,FIN,RST"],
        &["-n", "-ttttt", "--port", "80", "--port", "443"],
        &["-n", "-tt", "--family", "6"],
        &["-n", "-w", "/dev/null"],
    ];
    sets.iter()
        .map(|s| Args::try_parse_from(std::iter::once("tcptrace").chain(s.iter().copied()).chain(["-r", "x"])).unwrap())
        .collect()
}

/// A pipeline over a byte buffer (the pcap sink too, for `-w`).
fn pipeline(args: &Args) -> Pipeline<Box<dyn Write>> {
    let out = tcptrace::output::Output::new(Box::new(Vec::<u8>::new()) as Box<dyn Write>, false);
    let pcap = args
        .write
        .is_some()
        .then(|| PcapSink::new(Box::new(Vec::<u8>::new()) as Box<dyn Write>, args.nano, "fuzz").unwrap());
    Pipeline::new(args, out, pcap, TimeBase::Realtime)
}

/// Capture files: the reader never panics, always ends (each packet uses up
/// bytes), reports errors with a byte offset inside the file, and the whole
/// `-r` pipeline behind it (parser, filter, formatter, states, JSON, `-w`)
/// takes what it returns.
#[test]
fn fuzz_capture_reader() {
    let args = arg_sets();
    let strategy = (
        prop::sample::select((0..captures().len()).collect::<Vec<_>>()),
        prop::collection::vec(mutation(), 1..8),
        0..args.len(),
    );
    fuzz(1, "capture reader", 25_000, strategy, |(seed, muts, a)| {
        let mut bytes = captures()[seed].clone();
        apply(&mut bytes, &muts);
        let len = bytes.len() as u64;
        // The reader alone: every error names an offset within the file.
        match CaptureReader::new(Cursor::new(bytes.clone())) {
            Ok(mut r) => {
                let mut n = 0u64;
                loop {
                    match r.next_packet() {
                        Ok(Some(p)) => {
                            prop_assert!(p.offset < len);
                            prop_assert!(p.data.len() as u32 <= MAX_SNAPLEN);
                            n += 1;
                            prop_assert!(n <= len, "more packets than bytes");
                        }
                        Ok(None) => break,
                        Err(e) => {
                            check_error(&e.to_string(), len)?;
                            break;
                        }
                    }
                }
            }
            Err(e) => check_error(&e.to_string(), len)?,
        }
        // The whole -r path.
        if let Ok(r) = CaptureReader::new(Cursor::new(bytes)) {
            let mut out = Vec::new();
            let _ = tcptrace::offline::run_reader(&args[a], r, "fuzz", &mut out);
        }
        Ok(())
    });
}

/// An error message names a byte offset no further than the end of the input.
fn check_error(msg: &str, len: u64) -> Result<(), TestCaseError> {
    let Some(rest) = msg.split("at byte ").nth(1) else {
        return Err(TestCaseError::fail(format!("no byte offset in '{msg}'")));
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let at: u64 = digits.parse().map_err(|_| TestCaseError::fail(format!("bad offset in '{msg}'")))?;
    prop_assert!(at <= len, "offset {at} past the end ({len}) in '{msg}'");
    Ok(())
}

const LINKS: [LinkType; 4] = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp];

/// The frame parser under every link type: no panic, `parse_frame` agrees
/// with `parse_headers` + `fill_record`, the record stays within the frame,
/// and the formatter, the JSON writer and the pcap writer take the record.
#[test]
fn fuzz_frame_parser() {
    let strategy = (
        prop::sample::select((0..frames().len()).collect::<Vec<_>>()),
        prop::collection::vec(mutation(), 0..6),
        prop_oneof![Just(None), any::<u32>().prop_map(Some), (0u32..64).prop_map(|d| Some(u32::MAX - d))],
        any::<u64>(),
    );
    let mut fmts: Vec<_> = arg_sets()
        .iter()
        .map(|a| tcptrace::format::Formatter::new(tcptrace::format::FormatOptions::from_args(a)))
        .collect();
    let fmts = std::cell::RefCell::new(&mut fmts);
    fuzz(2, "frame parser", 40_000, strategy, |(i, muts, wire, r)| {
        let (_, orig_wire, data) = &frames()[i];
        let mut data = data.clone();
        apply(&mut data, &muts);
        let wire_len = wire.unwrap_or(*orig_wire);
        let frame = SliceFrame { data: &data, wire_len };
        for link in LINKS {
            let got = parse_frame(&frame, link);
            let split = parse_headers(&frame, link).map(|h| {
                let mut rec = PacketRecord::zeroed();
                fill_record(&frame, &h, &mut rec);
                rec
            });
            prop_assert_eq!(&got, &split);
            let routed = parse_frame_ext(&frame, link);
            prop_assert_eq!(&got, &routed.map(|r| r.rec));
            let Ok(rec) = got else { continue };
            let routed = parse_frame_ext(&frame, link).unwrap();
            let ext = routed.tail.bytes();
            prop_assert_eq!(ext.is_empty(), rec.ext_count == 0 || rec.l3_cap_len <= 40);
            prop_assert!(ext.len() <= data.len());
            prop_assert!(rec.l3_cap_len as usize <= data.len());
            prop_assert!(rec.opt_len as usize <= MAX_OPTIONS);
            prop_assert!(rec.family == 4 || rec.family == 6);
            let mut fmts = fmts.borrow_mut();
            let f = &mut fmts[(r % 8) as usize];
            let ts = Timestamp::micros((r >> 8) as i64 % 4_000_000_000, (r >> 40) % 1_100_000);
            let mut out = Vec::new();
            f.write_packet_link(ts, LinkInfo::from_frame(link, &data), &rec, ext, &mut out);
            prop_assert!(out.ends_with(b"\n"));
            let line = String::from_utf8_lossy(&out).into_owned();
            let mut json = Vec::new();
            tcptrace::json::write_packet(ts, &rec, &line, &mut json);
            let v: serde_json::Value = serde_json::from_slice(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(v["type"].as_str(), Some("packet"));
            let mut pkt = Vec::new();
            tcptrace::pcap::reconstruct(&rec, ext, &mut pkt);
        }
        Ok(())
    });
}

/// Small pools, so that random records often share a connection and drive
/// the state tracker through its transitions.
const ADDRS: [[u8; 16]; 3] = [
    [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
];
const PORTS: [u16; 3] = [80, 443, 40000];

/// Pool indexes (source, destination, source port, destination port), flags,
/// sequence and acknowledgment numbers.
type Tame = (usize, usize, usize, usize, u16, u32, u32);

fn record() -> impl Strategy<Value = (Vec<u8>, Option<Tame>)> {
    let bytes = prop_oneof![
        20 => prop::collection::vec(any::<u8>(), RECORD_SIZE),
        1 => prop::collection::vec(any::<u8>(), 0..2 * RECORD_SIZE),
    ];
    // Half the records get a pooled 4-tuple, state-changing flags and small
    // sequence numbers.
    let tame = prop::option::of((
        0..3usize,
        0..3usize,
        0..3usize,
        0..3usize,
        prop::sample::select(&[0x02u16, 0x12, 0x10, 0x11, 0x04, 0x14, 0x18, 0x01][..]),
        0..8u32,
        0..8u32,
    ));
    (bytes, tame)
}

/// Arbitrary ring-buffer bytes: the decoder checks the length and
/// round-trips; sequences of decoded records go through the pipeline
/// (formatter, state tracker, JSON, `-w`) under every option set, with
/// extreme clock values, ticks and the end.
#[test]
fn fuzz_records_through_pipeline() {
    let args = arg_sets();
    let strategy = (
        prop::collection::vec((record(), any::<i64>(), any::<bool>(), any::<u8>()), 1..24),
        0..args.len(),
        any::<i64>(),
    );
    fuzz(3, "record decoder and pipeline", 8_000, strategy, |(recs, a, now)| {
        let mut pipe = pipeline(&args[a]);
        let mut ns_base = 0i64;
        for ((bytes, tame), ns, show, link) in recs {
            let rec = PacketRecord::from_bytes(&bytes);
            prop_assert_eq!(rec.is_ok(), bytes.len() == RECORD_SIZE);
            if let Ok((r, rh)) = tcptrace_common::decode::decode_entry(&bytes) {
                prop_assert_eq!(rh.len() + RECORD_SIZE + 8 * usize::from(!rh.is_empty()), bytes.len());
                prop_assert_eq!(r.as_bytes(), &bytes[..RECORD_SIZE]);
            }
            let Ok(mut rec) = rec else { continue };
            prop_assert_eq!(&rec.as_bytes()[..], &bytes[..]);
            if let Some((s, d, sp, dp, flags, seq, ack)) = tame {
                rec.family = if s == 2 || d == 2 { 6 } else { 4 };
                rec.src = ADDRS[s];
                rec.dst = ADDRS[d];
                rec.sport = PORTS[sp];
                rec.dport = PORTS[dp];
                rec.tcp_flags = flags;
                rec.seq = seq;
                rec.ack = ack;
                // Mostly increasing times, as a capture has them.
                ns_base = ns_base.wrapping_add((ns & 0xffff_ffff).abs());
            } else {
                ns_base = ns;
            }
            let ts = TimeBase::Realtime.timestamp(ns_base);
            let li = if link & 1 == 0 {
                LinkInfo::None
            } else {
                LinkInfo::Sll2 { ifindex: link as u32 >> 1, pkttype: link }
            };
            // Any bytes as extension headers: the formatter and the pcap
            // writer read only what is there.
            let ext = &bytes[..(link as usize % 80).min(bytes.len())];
            pipe.push(ts, ns_base, li, &rec, ext, show).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if link > 250 {
                pipe.tick(now).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        pipe.finish(Some(now), now & 1 == 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        Ok(())
    });
}
