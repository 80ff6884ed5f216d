//! The real kernel programs, run on crafted frames with BPF_PROG_TEST_RUN.
//! These need root (CAP_BPF + CAP_NET_ADMIN); `cargo xtask test` runs them
//! with --include-ignored when root and reports them as skipped otherwise.

mod support;

use aya::{
    maps::{MapData, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use support::frames::{self, Rng, Tcp};
use tcptrace::loader::{Counters, Sizes, TC_EGRESS_PROG, TC_INGRESS_PROG, Tracer, XDP_PROG};
use tcptrace_common::{
    FilterConfig, LinkType, PacketRecord, PortSet, RecordKind, Skip, SliceFrame,
    decode::decode_entry,
    filter::HostSet,
    parse_frame, parse_frame_ext,
    record::{Direction, flags},
};

const XDP_PASS: u32 = 2;
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

struct Harness {
    tracer: Tracer,
    events: RingBuf<MapData>,
}

impl Harness {
    fn new(filter: FilterConfig, ports: &[u16]) -> Self {
        Self::with_hosts(filter, ports, &HostSet::empty())
    }

    fn with_hosts(filter: FilterConfig, ports: &[u16], hosts: &HostSet) -> Self {
        let mut port_set = PortSet::empty();
        for &p in ports {
            port_set.insert(p);
        }
        let filter = FilterConfig { use_ports: !ports.is_empty() as u8, ..filter };
        let sizes = Sizes { ring_buffer: 1 << 20, conn_table: 1024 };
        let mut tracer = Tracer::load_with_hosts(tcptrace::ebpf::OBJECT, &filter, &port_set, hosts, sizes)
            .expect("kernel programs load and pass the verifier");
        let events = tracer.take_events().unwrap();
        Self { tracer, events }
    }

    /// Runs `prog` on `frame`; checks the verdict and that the frame came back
    /// unchanged; returns the records it emitted, or `None` when the kernel
    /// refuses to build a test skb (see [`tc_test_run_refuses`]).
    fn try_run(&mut self, prog: &'static str, frame: &[u8]) -> Option<Vec<PacketRecord>> {
        self.try_run_routed(prog, frame).map(|v| v.into_iter().map(|(r, _)| r).collect())
    }

    /// [`Harness::try_run`] with each record's extension-header bytes.
    fn try_run_routed(&mut self, prog: &'static str, frame: &[u8]) -> Option<Vec<(PacketRecord, Vec<u8>)>> {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() };
        let (res, pass) = if prog == XDP_PROG {
            let p: &mut Xdp = self.tracer.program(prog).unwrap();
            (p.test_run(opts), XDP_PASS)
        } else {
            let p: &mut SchedClassifier = self.tracer.program(prog).unwrap();
            (p.test_run(opts), TC_ACT_UNSPEC)
        };
        let res = match res {
            Ok(r) => r,
            Err(_) if prog != XDP_PROG && tc_test_run_refuses(frame) => return None,
            Err(e) => panic!("{prog} test_run on {} bytes: {e:?}", frame.len()),
        };
        assert_eq!(res.return_value, pass, "{prog} verdict");
        assert_eq!(&out[..res.data_size_out as usize], frame, "{prog} changed the frame");
        let mut recs = Vec::new();
        while let Some(item) = self.events.next() {
            let (rec, ext) = decode_entry(&item).expect("entry size");
            recs.push((rec, ext.to_vec()));
        }
        Some(recs)
    }

    fn run(&mut self, prog: &'static str, frame: &[u8]) -> Vec<PacketRecord> {
        self.try_run(prog, frame).unwrap_or_else(|| panic!("{prog} refused {frame:02x?}"))
    }

    fn counters(&self) -> Counters {
        self.tracer.counters().unwrap()
    }
}

/// The kernel's record with the fields only the kernel knows cleared.
fn comparable(mut r: PacketRecord, prog: &str) -> PacketRecord {
    let dir = if prog == TC_EGRESS_PROG { Direction::Egress } else { Direction::Ingress };
    assert_eq!(r.direction, dir as u8, "{prog} direction");
    assert!(r.ts_ns > 0, "timestamp set");
    r.ts_ns = 0;
    r.ifindex = 0;
    r.direction = 0;
    r
}

/// BPF_PROG_TEST_RUN for skb programs rejects (EINVAL) an untagged IPv4 frame
/// with less than a 20-byte IP header and an IPv6 one with less than 40 bytes;
/// such frames are run through XDP only.
fn tc_test_run_refuses(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => frame.len() < 14 + 20,
        Some([0x86, 0xdd]) => frame.len() < 14 + 40,
        _ => false,
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs every program on `frame` and checks it against the userspace parser
/// (the record and the extension headers' bytes). Returns how many programs ran.
fn check_frame(h: &mut Harness, name: &str, frame: &[u8]) -> u64 {
    let expected = parse_frame_ext(&SliceFrame::full(frame), LinkType::Ethernet).ok();
    let mut ran = 0;
    for prog in [XDP_PROG, TC_INGRESS_PROG, TC_EGRESS_PROG] {
        let Some(recs) = h.try_run_routed(prog, frame) else { continue };
        ran += 1;
        match &expected {
            Some(e) => {
                assert_eq!(recs.len(), 1, "{name}: {prog} emitted {} records", recs.len());
                assert_eq!(comparable(recs[0].0, prog), e.rec, "{name}: {prog} record differs from userspace parser");
                assert_eq!(recs[0].1, e.tail.bytes(), "{name}: {prog} extension headers differ from userspace parser");
            }
            None => assert!(recs.is_empty(), "{name}: {prog} emitted a record userspace does not"),
        }
    }
    ran
}

#[test]
#[ignore = "needs root"]
fn programs_match_userspace_parser_on_crafted_frames() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let mut h = Harness::new(FilterConfig::default(), &[]);
    let corpus = frames::corpus();
    let mut want = Counters::default();
    for (name, frame) in &corpus {
        let n = check_frame(&mut h, name, frame);
        let outcome = parse_frame(&SliceFrame::full(frame), LinkType::Ethernet);
        want.frames += n;
        match outcome {
            Ok(r) => {
                want.tcp += n;
                want.matched += n;
                want.emitted += n;
                want.malformed[r.malformed as usize] += n * (r.malformed != 0) as u64;
            }
            Err(Skip::LaterFragment) => want.later_fragments += n,
            Err(Skip::Malformed(m)) => want.malformed[m as usize] += n,
            Err(Skip::NotTcp) => {}
        }
    }
    assert_eq!(h.counters(), want);
}

#[test]
#[ignore = "needs root"]
fn record_fields_of_a_syn() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let mut h = Harness::new(FilterConfig::default(), &[]);
    let tcp = Tcp { seq: 0xdead_beef, win: 1234, options: frames::syn_options(), ..Tcp::default() };
    let recs = h.run(TC_INGRESS_PROG, &frames::tcp4(&tcp));
    assert_eq!(recs.len(), 1);
    let r = recs[0];
    assert_eq!((r.sport, r.dport, r.seq, r.window), (40000, 8080, 0xdead_beef, 1234));
    assert_eq!(&r.src[..4], &frames::A4);
    assert_eq!(&r.dst[..4], &frames::B4);
    assert_eq!(r.tcp_flags, flags::SYN);
    assert_eq!(r.family, 4);
    assert_eq!(r.data_off, 40);
    assert_eq!(r.options(), &frames::syn_options()[..]);
    assert_eq!(r.ip_total_len, 60);
    assert_eq!(r.l4_off, 20);
    assert_eq!(r.ttl, 64);
    assert_eq!(r.malformed, 0);
}

#[test]
#[ignore = "needs root"]
fn filter_on_ports_and_flags() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    // Two ports are compared one by one, ten are looked up in the bitmap.
    for ports in [&[8080, 443][..], &[8080, 443, 10, 11, 12, 13, 14, 15, 16, 17][..]] {
        filter_on_ports_and_flags_with(ports);
    }
}

fn filter_on_ports_and_flags_with(ports: &[u16]) {
    let syn_fin_rst = FilterConfig { flag_mask: flags::SYN | flags::FIN | flags::RST, ..Default::default() };
    let mut h = Harness::new(syn_fin_rst, ports);
    let cases = [
        (Tcp { flags: flags::SYN, ..Tcp::default() }, true),
        (Tcp { flags: flags::ACK, ..Tcp::default() }, false),
        (Tcp { flags: flags::ACK | flags::FIN, ..Tcp::default() }, true),
        (Tcp { flags: flags::RST, dport: 9999, ..Tcp::default() }, false),
        (Tcp { flags: flags::RST, sport: 443, dport: 9999, ..Tcp::default() }, true),
        (Tcp { flags: flags::SYN | flags::ACK, sport: 1, dport: 2, ..Tcp::default() }, false),
    ];
    for (tcp, shown) in cases {
        for frame in [frames::tcp4(&tcp), frames::tcp6(&tcp)] {
            let n = h.run(TC_INGRESS_PROG, &frame).len();
            assert_eq!(n, shown as usize, "{tcp:?}");
            let n = h.run(XDP_PROG, &frame).len();
            assert_eq!(n, shown as usize, "{tcp:?}");
        }
    }
    let c = h.counters();
    assert_eq!(c.tcp, 24);
    assert_eq!(c.matched, 12);
    assert_eq!(c.emitted, 12);
}

/// Differential test: seeded random and mutated frames give the same record
/// (or the same "nothing") from each kernel program (XDP, TC ingress, TC
/// egress) and the userspace parser, and come back unchanged.
#[test]
#[ignore = "needs root"]
fn differential_random_frames() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    let mut h = Harness::new(FilterConfig::default(), &[]);
    let seeds = frames::corpus();
    let mut rng = Rng::new(0x7cb7_4ace);
    let (mut emitted, mut routed) = (0, 0);
    let mut ran = [0u32; 3];
    for i in 0..10_000 {
        let mut f = seeds[rng.below(seeds.len() as u64) as usize].1.clone();
        match i % 4 {
            // Flip a few bytes anywhere past the MAC addresses.
            0 | 1 => {
                for _ in 0..1 + rng.below(6) {
                    if f.len() > 12 {
                        let at = 12 + rng.below(f.len() as u64 - 12) as usize;
                        f[at] = rng.next_u64() as u8;
                    }
                }
            }
            // Cut it.
            2 => {
                let keep = 14 + rng.below(f.len().saturating_sub(13) as u64) as usize;
                f.truncate(keep.min(f.len()));
            }
            // Garbage behind an IPv4 or IPv6 ethertype.
            _ => {
                let et = if rng.below(2) == 0 { 0x0800 } else { 0x86dd };
                let n = rng.below(120) as usize;
                let mut body = rng.bytes(n);
                if let Some(b) = body.first_mut() {
                    *b = if et == 0x0800 { 0x45 } else { 0x60 } | (*b & 0x0f);
                }
                f = frames::ethernet(et, &[], &body);
            }
        }
        if f.len() < 14 {
            continue;
        }
        // Every frame through every program (try_run also checks that the
        // frame comes back unchanged and the verdict is a pass).
        let expected = parse_frame_ext(&SliceFrame::full(&f), LinkType::Ethernet).ok();
        for (p, prog) in [XDP_PROG, TC_INGRESS_PROG, TC_EGRESS_PROG].into_iter().enumerate() {
            let Some(recs) = h.try_run_routed(prog, &f) else { continue };
            ran[p] += 1;
            match &expected {
                Some(e) => {
                    assert_eq!(recs.len(), 1, "frame {i} ({:02x?}): {prog} emitted {}", f, recs.len());
                    assert_eq!(comparable(recs[0].0, prog), e.rec, "frame {i} ({f:02x?}) via {prog}");
                    assert_eq!(recs[0].1, e.tail.bytes(), "frame {i} ({f:02x?}) via {prog}: extension headers");
                    routed += usize::from(!recs[0].1.is_empty());
                    emitted += 1;
                }
                None => assert!(recs.is_empty(), "frame {i} ({f:02x?}): {prog} emitted, userspace did not"),
            }
        }
    }
    // Thousands of frames through each program, and a fair share of them
    // parseable, or the test says little about records.
    eprintln!("frames run: XDP {}, TC ingress {}, TC egress {}; records compared {emitted}", ran[0], ran[1], ran[2]);
    for (p, n) in ran.iter().enumerate() {
        assert!(*n >= 8_000, "only {n} frames ran through {}", [XDP_PROG, TC_INGRESS_PROG, TC_EGRESS_PROG][p]);
    }
    assert!(emitted > 6_000, "only {emitted} records from 3 x 10000 runs");
    assert!(routed > 60, "only {routed} records with extension headers");
}

/// With a flag filter, segments that change a connection's state but are
/// hidden by the filter come out as state-only records; others not at all.
#[test]
#[ignore = "needs root"]
fn state_only_records_for_hidden_state_changes() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    use tcptrace_common::record::flags::*;
    let cfg = FilterConfig { flag_mask: SYN | FIN | RST, track_states: 1, ..Default::default() };
    let mut h = Harness::new(cfg, &[8080]);
    let c = |flags, seq, ack, payload: usize| Tcp { flags, seq, ack, payload: vec![7; payload], ..Tcp::default() };
    let s = |flags, seq, ack, payload: usize| Tcp { sport: 8080, dport: 40000, ..c(flags, seq, ack, payload) };
    let swap = |f: Vec<u8>| {
        // Server to client: swap the IPv4 addresses too.
        let mut f = f;
        let (src, dst) = (14 + 12, 14 + 16);
        for i in 0..4 {
            f.swap(src + i, dst + i);
        }
        f
    };
    let script: Vec<(Vec<u8>, Option<RecordKind>)> = vec![
        (frames::tcp4(&c(SYN, 100, 0, 0)), Some(RecordKind::Packet)),
        (swap(frames::tcp4(&s(SYN | ACK, 500, 101, 0))), Some(RecordKind::Packet)),
        (frames::tcp4(&c(ACK, 101, 501, 0)), Some(RecordKind::StateOnly)),
        (frames::tcp4(&c(ACK, 101, 501, 0)), None),
        (frames::tcp4(&c(ACK | PSH, 101, 501, 10)), None),
        (swap(frames::tcp4(&s(ACK, 501, 111, 0))), None),
        (frames::tcp4(&c(FIN | ACK, 111, 501, 0)), Some(RecordKind::Packet)),
        (swap(frames::tcp4(&s(ACK, 501, 112, 0))), Some(RecordKind::StateOnly)),
        (swap(frames::tcp4(&s(ACK | PSH, 501, 112, 5))), None),
        (swap(frames::tcp4(&s(FIN | ACK, 506, 112, 0))), Some(RecordKind::Packet)),
        (frames::tcp4(&c(ACK, 112, 507, 0)), Some(RecordKind::StateOnly)),
        // The connection is gone from the map: a late ACK is nothing.
        (frames::tcp4(&c(ACK, 112, 507, 0)), None),
    ];
    for (i, (frame, want)) in script.iter().enumerate() {
        let prog = [TC_INGRESS_PROG, TC_EGRESS_PROG, XDP_PROG][i % 3];
        let recs = h.run(prog, frame);
        let got = recs.first().map(|r| RecordKind::try_from(r.kind).unwrap());
        assert_eq!(got, *want, "step {i} via {prog}");
        assert!(recs.len() <= 1);
    }
    let c = h.counters();
    assert_eq!((c.matched, c.state_only, c.emitted), (4, 3, 7));
    assert_eq!((c.conn_new, c.conn_closed), (1, 1));
}

/// Random segment streams on a few connections: the kernel's state-only
/// decisions equal a userspace replay of the same connection logic.
#[test]
#[ignore = "needs root"]
fn state_only_decisions_match_userspace_replay() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    use std::collections::HashMap;
    use tcptrace_common::{
        conn::{ConnKey, ConnState, Step, step},
        record::flags::*,
    };
    let cfg = FilterConfig { flag_mask: URG, track_states: 1, ..Default::default() };
    let mut h = Harness::new(cfg, &[]);
    let mut model: HashMap<ConnKey, ConnState> = HashMap::new();
    let mut rng = Rng::new(99);
    let choices = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, FIN];
    let mut state_only = 0;
    for i in 0..3000 {
        let flags = choices[rng.below(choices.len() as u64) as usize];
        let (sport, dport) =
            if rng.below(2) == 0 { (1000 + rng.below(3) as u16, 80) } else { (80, 1000 + rng.below(3) as u16) };
        // Small sequence space so that ACKs often hit FINs and SYN-ACKs.
        let tcp = Tcp {
            flags,
            sport,
            dport,
            seq: rng.below(8) as u32,
            ack: rng.below(8) as u32,
            payload: vec![0; rng.below(3) as usize],
            ..Tcp::default()
        };
        let frame = frames::ethernet(0x0800, &[], &frames::ipv4(frames::A4, frames::A4, 6, 0, &[], &tcp.bytes()));
        let rec = parse_frame(&SliceFrame::full(&frame), LinkType::Ethernet).unwrap();
        let (key, from) = ConnKey::new(4, &rec.src, sport, &rec.dst, dport);
        let seg =
            tcptrace_common::conn::Segment { flags, seq: tcp.seq, ack: tcp.ack, payload: tcp.payload.len() as u32 };
        let known = model.contains_key(&key);
        let st = model.entry(key).or_default();
        let want = match step(st, from, &seg) {
            Step::Nothing => {
                if !known {
                    model.remove(&key);
                }
                false
            }
            Step::Relevant => true,
            Step::Closed => {
                model.remove(&key);
                true
            }
        };
        let recs = h.run(TC_INGRESS_PROG, &frame);
        assert_eq!(recs.len(), want as usize, "segment {i}: {tcp:?}");
        if want {
            assert_eq!(recs[0].kind, RecordKind::StateOnly as u8);
            state_only += 1;
        }
    }
    assert!(state_only > 300, "only {state_only} state-only records: the stream is too tame");
}

#[test]
#[ignore = "needs root"]
fn family_filter() {
    assert!(is_root(), "run as root (cargo xtask test does)");
    for (family, v4, v6) in [(4u8, 1usize, 0usize), (6, 0, 1), (0, 1, 1)] {
        let mut h = Harness::new(FilterConfig { family, ..Default::default() }, &[]);
        for prog in [XDP_PROG, TC_INGRESS_PROG, TC_EGRESS_PROG] {
            assert_eq!(h.run(prog, &frames::tcp4(&Tcp::default())).len(), v4, "family {family} {prog} IPv4");
            assert_eq!(h.run(prog, &frames::tcp6(&Tcp::default())).len(), v6, "family {family} {prog} IPv6");
        }
    }
}

/// The programs never call `memset`/`memcpy`/`memmove`: in BPF those are
/// calls to byte loops (zeroing the 144-byte record that way was a quarter of
/// an emitted record's cost). Zeroing is done with word or volatile stores,
/// reads with `MaybeUninit` buffers the helpers fill. Reads the relocations
/// of the object tcptrace embeds; needs no privilege.
#[test]
fn programs_call_no_byte_loops() {
    use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
    let obj = object::File::parse(tcptrace::ebpf::OBJECT).expect("the embedded eBPF object parses");
    let mut calls = Vec::new();
    for section in obj.sections() {
        for (_, rel) in section.relocations() {
            if let RelocationTarget::Symbol(i) = rel.target()
                && let Ok(sym) = obj.symbol_by_index(i)
                && let Ok(name) = sym.name()
                && matches!(name, "memset" | "memcpy" | "memmove")
            {
                calls.push(format!("{} calls {name}", section.name().unwrap_or("?")));
            }
        }
    }
    assert!(calls.is_empty(), "{}", calls.join("\n"));
}

/// Every program passes the verifier under every shape of filter (the
/// loader writes the filter into read-only data, so the verifier walks
/// different code for each), and a SYN to a traced port gives its record.
/// A global function's unused argument left unset once failed only the
/// XDP program with states on and no port filter.
#[test]
#[ignore = "needs root"]
fn every_program_loads_under_every_filter_shape() {
    use tcptrace_common::record::flags::{FIN, RST, SYN};
    assert!(is_root(), "run as root (cargo xtask test does)");
    let syn = frames::tcp4(&Tcp { flags: SYN, dport: 8080, options: frames::syn_options(), ..Default::default() });
    for flag_mask in [0, SYN | FIN | RST] {
        for ports in [&[][..], &[8080][..], &[8080, 1, 2, 3, 4, 5, 6, 7, 8][..]] {
            for track_states in [0, 1] {
                for family in [0, 6] {
                    let cfg = FilterConfig { flag_mask, track_states, family, ..Default::default() };
                    let mut h = Harness::new(cfg, ports);
                    for prog in [XDP_PROG, TC_INGRESS_PROG, TC_EGRESS_PROG] {
                        let recs = h.run(prog, &syn);
                        let want = usize::from(family != 6);
                        assert_eq!(recs.len(), want, "{prog} with {cfg:?}, ports {ports:?}");
                    }
                }
            }
        }
    }
}

/// `--host`/`--net` in the kernel: a segment from or to a listed address or
/// network is traced, others are not, in every program, with and without
/// state tracking and a port filter; the same decision as the userspace
/// filter.
#[test]
#[ignore = "needs root"]
fn host_and_net_filter() {
    use tcptrace_common::{
        filter::matches_hosts,
        parse_headers,
        record::flags::{FIN, RST, SYN},
    };
    assert!(is_root(), "run as root (cargo xtask test does)");
    let syn4 = frames::tcp4(&Tcp { flags: SYN, options: frames::syn_options(), ..Default::default() });
    let syn6 = frames::tcp6(&Tcp { flags: SYN, options: frames::syn_options(), ..Default::default() });
    let v4 = |a: [u8; 4]| {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        b
    };
    let mut net6 = [0u8; 16];
    net6[..6].copy_from_slice(&frames::B6[..6]);
    // (entries as (family, address, prefix), traced: [v4 frame, v6 frame])
    type Entries<'a> = &'a [(u8, [u8; 16], u8)];
    let cases: [(Entries, [bool; 2]); 5] = [
        (&[(4, v4(frames::A4), 32)], [true, false]),
        (&[(4, v4([frames::B4[0], frames::B4[1], frames::B4[2], 0]), 24)], [true, false]),
        (&[(4, v4([192, 0, 3, 0]), 24)], [false, false]),
        (&[(6, net6, 48)], [false, true]),
        (&[(4, v4([10, 0, 0, 1]), 32), (6, frames::A6, 128)], [false, true]),
    ];
    for (entries, want) in cases {
        let mut hosts = HostSet::empty();
        for (family, addr, prefix) in entries {
            assert!(hosts.push(*family, addr, *prefix));
        }
        for (flag_mask, track_states, ports) in [(0, 0, &[][..]), (SYN | FIN | RST, 1, &[8080][..])] {
            let cfg = FilterConfig { flag_mask, track_states, use_hosts: 1, ..Default::default() };
            let mut h = Harness::with_hosts(cfg, ports, &hosts);
            for (frame, traced) in [(&syn4, want[0]), (&syn6, want[1])] {
                let parsed = SliceFrame::full(frame);
                let hd = parse_headers(&parsed, LinkType::Ethernet).unwrap();
                assert_eq!(matches_hosts(&parsed, &hd, &hosts), traced, "userspace, {entries:?}");
                for prog in [XDP_PROG, TC_INGRESS_PROG, TC_EGRESS_PROG] {
                    let recs = h.run(prog, frame);
                    assert_eq!(recs.len(), usize::from(traced), "{prog}, {entries:?}, {cfg:?}");
                }
            }
        }
    }
}
