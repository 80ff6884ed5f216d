//! Unit tests for the rules the corpus exercises least: each builds a raw IP
//! frame, runs it through the shared parser and checks the line.

use super::*;
use tcptrace_common::{LinkType, SliceFrame, parse_frame};

const A: [u8; 4] = [192, 0, 2, 1];
const B: [u8; 4] = [198, 51, 100, 2];

struct Seg<'a> {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    opts: &'a [u8],
    payload: usize,
}

impl Default for Seg<'_> {
    fn default() -> Self {
        Self { src: A, dst: B, sport: 1000, dport: 80, seq: 0, ack: 0, flags: 0x10, opts: &[], payload: 0 }
    }
}

fn tcp_header(s: &Seg) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&s.sport.to_be_bytes());
    t.extend_from_slice(&s.dport.to_be_bytes());
    t.extend_from_slice(&s.seq.to_be_bytes());
    t.extend_from_slice(&s.ack.to_be_bytes());
    let doff = (20 + s.opts.len()).div_ceil(4);
    t.push((doff as u8) << 4);
    t.push(s.flags);
    t.extend_from_slice(&100u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(s.opts);
    t.resize(doff * 4, 0);
    t.resize(t.len() + s.payload, b'x');
    t
}

fn ipv4(s: &Seg) -> Vec<u8> {
    let t = tcp_header(s);
    let mut f = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
    f[2..4].copy_from_slice(&((20 + t.len()) as u16).to_be_bytes());
    f.extend_from_slice(&s.src);
    f.extend_from_slice(&s.dst);
    f.extend_from_slice(&t);
    f
}

fn ipv6(s: &Seg, src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let t = tcp_header(s);
    let mut f = vec![0x60, 0, 0, 0];
    f.extend_from_slice(&(t.len() as u16).to_be_bytes());
    f.extend_from_slice(&[6, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&t);
    f
}

fn opts(abs: bool, ts_mode: TimestampMode) -> FormatOptions {
    FormatOptions { ts_mode, nano: false, absolute: abs, numeric: true }
}

fn line_cut(f: &mut Formatter, frame: &[u8], cap: usize, ts: Timestamp) -> String {
    let rec = parse_frame(&SliceFrame { data: &frame[..cap], wire_len: frame.len() as u32 }, LinkType::RawIp)
        .expect("a TCP frame");
    let mut out = Vec::new();
    f.write_packet(ts, &rec, &mut out);
    let s = String::from_utf8(out).unwrap();
    s.strip_suffix('\n').expect("line ends in newline").to_string()
}

fn line(f: &mut Formatter, frame: &[u8]) -> String {
    line_cut(f, frame, frame.len(), Timestamp::default())
}

fn tline(f: &mut Formatter, frame: &[u8]) -> String {
    let l = line(f, frame);
    // Drop "IP a.p > b.q: " to keep the assertions short.
    l.split_once(": ").unwrap().1.to_string()
}

#[test]
fn handshake_then_relative() {
    let mut f = Formatter::new(opts(false, TimestampMode::None));
    let syn = ipv4(&Seg { seq: 1000, flags: 0x02, ..Default::default() });
    assert_eq!(line(&mut f, &syn), "IP 192.0.2.1.1000 > 198.51.100.2.80: Flags [S], seq 1000, win 100, length 0");
    let synack =
        ipv4(&Seg { src: B, dst: A, sport: 80, dport: 1000, seq: 5000, ack: 1001, flags: 0x12, ..Default::default() });
    assert_eq!(tline(&mut f, &synack), "Flags [S.], seq 5000, ack 1001, win 100, length 0");
    let ack = ipv4(&Seg { seq: 1001, ack: 5001, ..Default::default() });
    assert_eq!(tline(&mut f, &ack), "Flags [.], ack 1, win 100, length 0");
    let data = ipv4(&Seg { seq: 1001, ack: 5001, flags: 0x18, payload: 10, ..Default::default() });
    assert_eq!(tline(&mut f, &data), "Flags [P.], seq 1:11, ack 1, win 100, length 10");
    // A bare RST (no ACK) inside the conversation stays absolute.
    let rst = ipv4(&Seg { seq: 1011, flags: 0x04, ..Default::default() });
    assert_eq!(tline(&mut f, &rst), "Flags [R], seq 1011, win 100, length 0");
    // An ack before the base wraps as unsigned 32-bit.
    let old = ipv4(&Seg { src: B, dst: A, sport: 80, dport: 1000, seq: 5001, ack: 996, ..Default::default() });
    assert_eq!(tline(&mut f, &old), "Flags [.], ack 4294967292, win 100, length 0");
    // A new SYN+ACK re-bases the conversation.
    let synack2 =
        ipv4(&Seg { src: B, dst: A, sport: 80, dport: 1000, seq: 9, ack: 77, flags: 0x12, ..Default::default() });
    assert_eq!(tline(&mut f, &synack2), "Flags [S.], seq 9, ack 77, win 100, length 0");
    let after = ipv4(&Seg { seq: 77, ack: 10, flags: 0x18, payload: 3, ..Default::default() });
    assert_eq!(tline(&mut f, &after), "Flags [P.], seq 1:4, ack 1, win 100, length 3");
}

#[test]
fn mid_stream_and_absolute() {
    let first = ipv4(&Seg { seq: 555, ack: 777, flags: 0x18, payload: 50, ..Default::default() });
    let reply = ipv4(&Seg {
        src: B,
        dst: A,
        sport: 80,
        dport: 1000,
        seq: 777,
        ack: 605,
        flags: 0x18,
        payload: 10,
        ..Default::default()
    });
    let mut f = Formatter::new(opts(false, TimestampMode::None));
    assert_eq!(tline(&mut f, &first), "Flags [P.], seq 555:605, ack 777, win 100, length 50");
    assert_eq!(tline(&mut f, &reply), "Flags [P.], seq 1:11, ack 50, win 100, length 10");
    let mut f = Formatter::new(opts(true, TimestampMode::None));
    assert_eq!(tline(&mut f, &first), "Flags [P.], seq 555:605, ack 777, win 100, length 50");
    assert_eq!(tline(&mut f, &reply), "Flags [P.], seq 777:787, ack 605, win 100, length 10");
}

#[test]
fn families_are_tracked_apart() {
    let mut f = Formatter::new(opts(false, TimestampMode::None));
    let v4 = ipv4(&Seg { seq: 100, ack: 200, ..Default::default() });
    assert_eq!(tline(&mut f, &v4), "Flags [.], ack 200, win 100, length 0");
    // The same addresses' bytes and ports over IPv6: a new conversation.
    let mut a6 = [0u8; 16];
    a6[..4].copy_from_slice(&A);
    let mut b6 = [0u8; 16];
    b6[..4].copy_from_slice(&B);
    let v6 = ipv6(&Seg { seq: 100, ack: 300, ..Default::default() }, a6, b6);
    assert_eq!(tline(&mut f, &v6), "Flags [.], ack 300, win 100, length 0");
    assert_eq!(tline(&mut f, &v4), "Flags [.], ack 1, win 100, length 0");
}

#[test]
fn sack_relative_to_other_direction() {
    let mut f = Formatter::new(opts(false, TimestampMode::None));
    let synack =
        ipv4(&Seg { src: B, dst: A, sport: 80, dport: 1000, seq: 5000, ack: 1001, flags: 0x12, ..Default::default() });
    line(&mut f, &synack);
    let mut o = vec![1, 1, 5, 10];
    o.extend_from_slice(&6001u32.to_be_bytes());
    o.extend_from_slice(&7001u32.to_be_bytes());
    let ack = ipv4(&Seg { seq: 1001, ack: 5001, opts: &o, ..Default::default() });
    assert_eq!(tline(&mut f, &ack), "Flags [.], ack 1, win 100, options [nop,nop,sack 1 {1001:2001}], length 0");
    let mut f = Formatter::new(opts(true, TimestampMode::None));
    assert_eq!(tline(&mut f, &ack), "Flags [.], ack 5001, win 100, options [nop,nop,sack 1 {6001:7001}], length 0");
}

#[test]
fn option_errors() {
    let mut f = Formatter::new(opts(true, TimestampMode::None));
    let mut t = |o: &[u8]| tline(&mut f, &ipv4(&Seg { opts: o, ..Default::default() }));
    assert_eq!(t(&[1, 2, 1, 0]), "Flags [.], ack 0, win 100, options [nop,[bad opt]]");
    assert_eq!(t(&[3, 1, 0, 0]), "Flags [.], ack 0, win 100, options [[bad opt]");
    assert_eq!(t(&[3, 4, 7, 0]), "Flags [.], ack 0, win 100, options [wscale 7[len 4],eol], length 0");
    assert_eq!(t(&[2, 4, 5, 0xb4, 0, 9, 9, 9]), "Flags [.], ack 0, win 100, options [mss 1460,eol], length 0");
    assert_eq!(t(&[254, 4, 0xac, 0xc0]), "Flags [.], ack 0, win 100, options [exp-acc0], length 0");
    assert_eq!(t(&[254, 2, 0, 0]), "Flags [.], ack 0, win 100, options [exp[bad opt]");
    assert_eq!(t(&[28, 4, 0x80, 0x03]), "Flags [.], ack 0, win 100, options [uto 0x8003 983100], length 0");
    assert_eq!(t(&[253, 3, 0xab, 0]), "Flags [.], ack 0, win 100, options [unknown-253 0xab,eol], length 0");
    assert_eq!(t(&[30, 3, 0x50, 0]), "Flags [.], ack 0, win 100, options [mptcp 3 prio non-backup,eol], length 0");
    assert_eq!(t(&[30, 4, 0x00, 0]), "Flags [.], ack 0, win 100, options [mptcp 4 capable[bad opt]");
}

#[test]
fn truncated_options_and_header() {
    let mut f = Formatter::new(opts(true, TimestampMode::None));
    let o = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let frame = ipv4(&Seg { opts: &o, payload: 4, ..Default::default() });
    // Cut inside the TS option: LENCHECK fails after a comma.
    let l = line_cut(&mut f, &frame, 20 + 20 + 6, Timestamp::default());
    assert!(l.ends_with("options [nop,nop,TS [|tcp]>"), "{l}");
    // Cut right after the nops: the next kind byte is missing (no '>').
    let l = line_cut(&mut f, &frame, 20 + 20 + 2, Timestamp::default());
    assert!(l.ends_with("options [nop,nop, [|tcp]"), "{l}");
    // Cut inside the fixed header, after the ports.
    let l = line_cut(&mut f, &frame, 20 + 10, Timestamp::default());
    assert_eq!(l, "IP 192.0.2.1.1000 > 198.51.100.2.80:  [|tcp]");
    let l = line_cut(&mut f, &frame, 20 + 3, Timestamp::default());
    assert_eq!(l, "IP 192.0.2.1 > 198.51.100.2: [|tcp]");
    // Options complete up to an eol but the header itself cut.
    let o = [2, 4, 5, 0xb4, 0, 0, 0, 0];
    let frame = ipv4(&Seg { opts: &o, payload: 4, ..Default::default() });
    let l = line_cut(&mut f, &frame, 20 + 25, Timestamp::default());
    assert!(l.ends_with("options [mss 1460,eol], length 4 [remaining caplen(25) < header length(28)] [|tcp]"), "{l}");
}

#[test]
fn md5_without_payload_captured() {
    let mut f = Formatter::new(opts(true, TimestampMode::None));
    let mut o = vec![19, 18];
    o.extend(1..=16u8);
    o.extend_from_slice(&[1, 1]);
    let frame = ipv4(&Seg { opts: &o, payload: 10, ..Default::default() });
    let l = line_cut(&mut f, &frame, frame.len() - 5, Timestamp::default());
    assert!(
        l.contains(
            "options [md5 snaplen too short, can't check - 0102030405060708090a0b0c0d0e0f10,nop,nop], length 10"
        ),
        "{l}"
    );
}

#[test]
fn port_names_unless_numeric() {
    let names = PortNames::parse("http-alt 8080/tcp\nfoo 1000/udp\n");
    let o = FormatOptions { numeric: false, ..opts(true, TimestampMode::None) };
    let mut f = Formatter::with_port_names(o, Some(names));
    let frame = ipv4(&Seg { dport: 8080, ..Default::default() });
    assert!(line(&mut f, &frame).starts_with("IP 192.0.2.1.1000 > 198.51.100.2.http-alt: "));
}

#[test]
fn ipv6_mapped_and_truncated() {
    let mut f = Formatter::new(opts(true, TimestampMode::None));
    let src: [u8; 16] = "::ffff:192.0.2.1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dst: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let frame = ipv6(&Seg { flags: 0x02, seq: 3, ..Default::default() }, src, dst);
    assert_eq!(line(&mut f, &frame), "IP6 ::ffff:192.0.2.1.1000 > 2001:db8::1.80: Flags [S], seq 3, win 100, length 0");
    let mut short = frame.clone();
    short[4..6].copy_from_slice(&60u16.to_be_bytes());
    assert_eq!(
        line(&mut f, &short),
        "IP6 truncated-ip6 - 40 bytes missing!::ffff:192.0.2.1.1000 > 2001:db8::1.80: Flags [S], seq 3:43, win 100, length 40"
    );
}

#[test]
fn timestamps() {
    let frame = ipv4(&Seg::default());
    let mut f = Formatter::new(opts(true, TimestampMode::Epoch));
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(1418145370, 1_000_000));
    assert!(l.starts_with("1418145370.1000000 IP "), "{l}");
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(1418145370, (-2147483648i64) as u64));
    assert!(l.starts_with("1418145370.2147483648 IP "), "{l}");
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::nanos(5, 123_456_789));
    assert!(l.starts_with("5.123456 IP "), "{l}");
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(0x8000_0000, 0));
    assert!(l.starts_with("[Error converting time] IP "), "{l}");

    let mut f = Formatter::new(FormatOptions { nano: true, ..opts(true, TimestampMode::Epoch) });
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(5, 7));
    assert!(l.starts_with("5.000007000 IP "), "{l}");

    let mut f = Formatter::new(opts(true, TimestampMode::DeltaPrev));
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(10, 500_000));
    assert!(l.starts_with(" 00:00:00.000000 IP "), "{l}");
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(9, 900_000));
    assert!(l.starts_with("-00:00:00.600000 IP "), "{l}");
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(3609, 900_000));
    assert!(l.starts_with(" 01:00:00.000000 IP "), "{l}");

    // -ttttt: a first timestamp of 0.000000 does not count as set.
    let mut f = Formatter::new(opts(true, TimestampMode::DeltaFirst));
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(0, 0));
    assert!(l.starts_with(" 00:00:00.000000 IP "), "{l}");
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(7, 1));
    assert!(l.starts_with(" 00:00:00.000000 IP "), "{l}");
    let l = line_cut(&mut f, &frame, frame.len(), Timestamp::micros(8, 0));
    assert!(l.starts_with(" 00:00:00.999999 IP "), "{l}");
}

#[test]
fn decimal_digits_in_place() {
    let d = |v: u32, w: usize| {
        let mut out = b"x".to_vec();
        super::push_decimal(&mut out, v, w);
        String::from_utf8(out).unwrap()
    };
    for v in [0, 1, 9, 10, 99, 100, 65535, 999_999_999, 1_000_000_000, u32::MAX] {
        assert_eq!(d(v, 1), format!("x{v}"));
        assert_eq!(d(v, 6), format!("x{v:06}"));
        assert_eq!(d(v, 9), format!("x{v:09}"));
    }
    let mut s = String::from("a");
    super::push_u32(&mut s, 4_294_967_295);
    assert_eq!(s, "a4294967295");
}

#[test]
fn conversations_are_bounded_and_keep_the_active_ones() {
    use super::{Bases, Conversations};
    let key = |i: u32| (4u8, ([0u8; 16], [0u8; 16], i));
    let gen_ = Conversations::GENERATION as u32;
    let mut c = Conversations::default();
    c.insert(key(0), Bases { seq: 7, ack: 9 });
    for i in 1..3 * gen_ {
        c.insert(key(i), Bases { seq: i, ack: i });
        // Conversation 0 stays active: a packet every 1000 others.
        if i % 1000 == 0 {
            assert_eq!(c.get(&key(0)).map(|b| (b.seq, b.ack)), Some((7, 9)), "after {i}");
        }
        assert!(c.len() <= 2 * Conversations::GENERATION + 1);
    }
    // An idle one is forgotten after two generations of others...
    assert!(c.get(&key(1)).is_none());
    // ...one from the last generation is still there.
    assert_eq!(c.get(&key(3 * gen_ - 10)).map(|b| b.seq), Some(3 * gen_ - 10));
}

#[test]
fn conversations_count_generations_per_family() {
    use super::{Bases, Conversations};
    let gen_ = Conversations::GENERATION as u32;
    let mut c = Conversations::default();
    let v6 = (6u8, ([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0u8; 16], 80 << 16 | 40000));
    c.insert(v6, Bases { seq: 1, ack: 2 });
    // The same addresses and ports as IPv4 are another conversation.
    let mut v4 = v6;
    v4.0 = 4;
    assert!(c.get(&v4).is_none());
    for i in 0..3 * gen_ {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&i.to_be_bytes());
        c.insert((4, (a, [0u8; 16], 1)), Bases { seq: i, ack: i });
    }
    // Three generations of IPv4 conversations leave the IPv6 one alone.
    assert_eq!(c.get(&v6).map(|b| (b.seq, b.ack)), Some((1, 2)));
}

/// Without `-n`, the addresses of a routing header are names too, as
/// tcpdump prints them (`ip6addr_string`), and the line waits for them.
#[test]
fn routing_header_addresses_get_names() {
    let o = FormatOptions { numeric: false, ..opts(true, TimestampMode::None) };
    let mut f = Formatter::with_port_names(o, None);
    let addr = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    let (src, dst, home) = (addr("2001:db8::1"), addr("2001:db8::2"), addr("2001:db8::7"));
    let plain = ipv6(&Seg { flags: 0x02, seq: 3, ..Default::default() }, src.octets(), dst.octets());
    // The same frame with a type 2 routing header (home address) in front
    // of the TCP header.
    let mut frame = plain[..40].to_vec();
    frame[6] = 43;
    frame.extend_from_slice(&[6, 2, 2, 1, 0, 0, 0, 0]);
    frame.extend_from_slice(&home.octets());
    frame.extend_from_slice(&plain[40..]);
    let plen = (frame.len() - 40) as u16;
    frame[4..6].copy_from_slice(&plen.to_be_bytes());
    let r = tcptrace_common::parse_frame_ext(&SliceFrame::full(&frame), LinkType::RawIp).unwrap();
    let rh = r.tail.bytes();
    assert_eq!(rh.len(), 24);
    let want: Vec<IpAddr> = vec![src.into(), dst.into(), home.into()];
    assert_eq!(f.unresolved(&r.rec, rh).collect::<Vec<_>>(), want);
    f.set_host_name(src.into(), Some("a.example".into()));
    f.set_host_name(dst.into(), None);
    f.set_host_name(home.into(), Some("home.example".into()));
    assert_eq!(f.unresolved(&r.rec, rh).count(), 0);
    let mut out = Vec::new();
    f.write_packet_link(Timestamp::default(), LinkInfo::None, &r.rec, rh, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "IP6 a.example > 2001:db8::2: RT6 (len=2, type=2, segleft=1, [0]home.example) 1000 > 80: Flags [S], seq 3, \
         win 100, length 0\n"
    );
    // With -n, none is asked for.
    let f = Formatter::with_port_names(opts(true, TimestampMode::None), None);
    assert_eq!(f.unresolved(&r.rec, rh).count(), 0);
}
