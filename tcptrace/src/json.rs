//! `--json`: newline-delimited JSON, one object per packet, state transition
//! and connection summary. The schema is versioned by the field `v`
//! ([`SCHEMA_VERSION`]) and documented in the README ("JSON output").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use tcptrace_common::{Direction, Malformed, PacketRecord};

use crate::{
    format::Timestamp,
    states::{Endpoint, EventKind, Outcome, StateEvent, Who},
};

/// Bumped when a field changes meaning or disappears (adding fields does not).
pub const SCHEMA_VERSION: u32 = 1;

/// Nanoseconds since the epoch of a timestamp (a raw fraction above one
/// second, as some capture files hold, carries into the seconds).
pub fn epoch_ns(ts: Timestamp) -> i128 {
    let frac = if ts.nanos { ts.frac as i128 } else { ts.frac as i128 * 1000 };
    ts.sec as i128 * 1_000_000_000 + frac
}

/// RFC 3339 UTC time with nanoseconds: `2026-11-27T18:52:01.781378000Z`.
pub fn rfc3339(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + (m <= 2) as i64;
    (y, m, d)
}

fn ip(family: u8, a: &[u8; 16]) -> IpAddr {
    if family == 4 { IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])) } else { IpAddr::V6(Ipv6Addr::from(*a)) }
}

/// tcpdump's flag letters, `none` when there are none.
fn flag_letters(f: u16) -> String {
    let mut s = String::new();
    for (bit, c) in
        [(0x01, 'F'), (0x02, 'S'), (0x04, 'R'), (0x08, 'P'), (0x10, '.'), (0x20, 'U'), (0x40, 'E'), (0x80, 'W')]
    {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() { "none".into() } else { s }
}

fn malformed_name(m: u8) -> Option<&'static str> {
    Some(match Malformed::try_from(m).ok()? {
        Malformed::None => return None,
        Malformed::LinkTruncated => "link-truncated",
        Malformed::IpTruncated => "ip-truncated",
        Malformed::IpBadHeader => "ip-bad-header",
        Malformed::Ip6ExtChain => "ip6-ext-chain",
        Malformed::TcpTruncated => "tcp-truncated",
        Malformed::TcpHdrTooShort => "tcp-hdr-too-short",
        Malformed::TcpHdrTooLong => "tcp-hdr-too-long",
        Malformed::IpLenBeyondFrame => "ip-len-beyond-frame",
        Malformed::TcpOptionsTruncated => "tcp-options-truncated",
    })
}

#[derive(Serialize)]
struct Packet<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    ts_ns: i128,
    ifindex: u32,
    direction: Option<&'static str>,
    family: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    flags: String,
    seq: u32,
    ack: u32,
    win: u16,
    urg: u16,
    /// TCP payload length, from the IP header.
    length: u32,
    ip_len: u32,
    ttl: u8,
    tos: u8,
    ip_id: u16,
    data_off: u8,
    options_hex: String,
    malformed: Option<&'static str>,
    /// tcpdump's line for the packet, without the timestamp.
    line: &'a str,
}

/// One packet: the record's fields and tcpdump's `line` (without timestamp
/// or newline).
pub fn write_packet(ts: Timestamp, rec: &PacketRecord, line: &str, out: &mut Vec<u8>) {
    let ns = epoch_ns(ts);
    let p = Packet {
        v: SCHEMA_VERSION,
        kind: "packet",
        time: rfc3339(ns),
        ts_ns: ns,
        ifindex: rec.ifindex,
        direction: match Direction::try_from(rec.direction) {
            Ok(Direction::Ingress) => Some("in"),
            Ok(Direction::Egress) => Some("out"),
            _ => None,
        },
        family: rec.family,
        src: ip(rec.family, &rec.src),
        sport: rec.sport,
        dst: ip(rec.family, &rec.dst),
        dport: rec.dport,
        flags: flag_letters(rec.tcp_flags),
        seq: rec.seq,
        ack: rec.ack,
        win: rec.window,
        urg: rec.urg_ptr,
        length: rec.tcp_seg_len().saturating_sub(rec.data_off as u32),
        ip_len: rec.ip_total_len,
        ttl: rec.ttl,
        tos: rec.tos,
        ip_id: rec.ip_id,
        data_off: rec.data_off,
        options_hex: rec.options().iter().map(|b| format!("{b:02x}")).collect(),
        malformed: malformed_name(rec.malformed),
        line: line.trim_end_matches('\n'),
    };
    push(&p, out);
}

#[derive(Serialize)]
struct JsonEndpoint {
    addr: IpAddr,
    port: u16,
}

impl From<&Endpoint> for JsonEndpoint {
    fn from(e: &Endpoint) -> Self {
        Self { addr: ip(e.family, &e.addr), port: e.port }
    }
}

#[derive(Serialize)]
struct State {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    ts_ns: i128,
    endpoint: JsonEndpoint,
    peer: JsonEndpoint,
    from: &'static str,
    to: &'static str,
    cause: &'static str,
}

#[derive(Serialize)]
struct Conn {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    ts_ns: i128,
    /// The client when `roles_known`, else the endpoint seen first.
    a: JsonEndpoint,
    b: JsonEndpoint,
    roles_known: bool,
    opened_before_trace: bool,
    outcome: &'static str,
    /// `a` or `b`: who sent the first FIN (outcome `fin`).
    first_fin: Option<&'static str>,
    simultaneous_close: bool,
    /// `a` or `b`: who reset (outcome `rst`).
    rst_by: Option<&'static str>,
    duration_ns: Option<i64>,
    handshake_ns: Option<i64>,
    bytes_a_to_b: Option<u32>,
    bytes_b_to_a: Option<u32>,
    state_a: &'static str,
    state_b: &'static str,
}

fn who(w: Who) -> &'static str {
    match w {
        Who::A => "a",
        Who::B => "b",
    }
}

/// One state transition or connection summary at wall-clock `ts`.
pub fn write_event(ts: Timestamp, ev: &StateEvent, out: &mut Vec<u8>) {
    let ns = epoch_ns(ts);
    match &ev.kind {
        EventKind::Transition(t) => push(
            &State {
                v: SCHEMA_VERSION,
                kind: "state",
                time: rfc3339(ns),
                ts_ns: ns,
                endpoint: (&t.endpoint).into(),
                peer: (&t.peer).into(),
                from: t.from.name(),
                to: t.to.name(),
                cause: t.cause.text(),
            },
            out,
        ),
        EventKind::Summary(s) => {
            let (first_fin, simultaneous_close, rst_by) = match s.outcome {
                Outcome::Fin { first, simultaneous } => (Some(who(first)), simultaneous, None),
                Outcome::Rst { by } => (None, false, Some(who(by))),
                _ => (None, false, None),
            };
            push(
                &Conn {
                    v: SCHEMA_VERSION,
                    kind: "conn",
                    time: rfc3339(ns),
                    ts_ns: ns,
                    a: (&s.a).into(),
                    b: (&s.b).into(),
                    roles_known: s.roles_known,
                    opened_before_trace: s.opened_before_trace,
                    outcome: s.outcome.name(),
                    first_fin,
                    simultaneous_close,
                    rst_by,
                    duration_ns: s.duration_ns,
                    handshake_ns: s.handshake_ns,
                    bytes_a_to_b: s.bytes[0],
                    bytes_b_to_a: s.bytes[1],
                    state_a: s.states[0].name(),
                    state_b: s.states[1].name(),
                },
                out,
            )
        }
    }
}

#[derive(Serialize)]
struct KernelCounters {
    frames: u64,
    tcp: u64,
    matched: u64,
    state_only: u64,
    emitted: u64,
    ringbuf_full: u64,
    later_fragments: u64,
    conn_entered: u64,
    conn_closed: u64,
    /// Reason name to count, reasons that occurred only.
    malformed: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct Stats {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    ts_ns: i128,
    packets_captured: u64,
    kernel: KernelCounters,
    kernel_conns: Option<u64>,
    kernel_conn_table_size: u32,
    kernel_conn_evictions: Option<u64>,
    connections_tracked: u64,
    max_connections: u64,
    userspace_evictions: u64,
}

/// A `stats` object (`--stats-interval`) at wall-clock nanoseconds `ns`.
pub fn write_stats(ns: i128, s: &crate::stats::Snapshot, out: &mut Vec<u8>) {
    let k = &s.kernel;
    let malformed = k
        .malformed
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 0)
        .filter_map(|(i, n)| Some((malformed_name(i as u8)?, *n)))
        .collect();
    push(
        &Stats {
            v: SCHEMA_VERSION,
            kind: "stats",
            time: rfc3339(ns),
            ts_ns: ns,
            packets_captured: s.captured,
            kernel: KernelCounters {
                frames: k.frames,
                tcp: k.tcp,
                matched: k.matched,
                state_only: k.state_only,
                emitted: k.emitted,
                ringbuf_full: k.ringbuf_full,
                later_fragments: k.later_fragments,
                conn_entered: k.conn_new,
                conn_closed: k.conn_closed,
                malformed,
            },
            kernel_conns: s.kernel_conns,
            kernel_conn_table_size: s.kernel_conn_table_size,
            kernel_conn_evictions: s.kernel_evictions(),
            connections_tracked: s.tracked,
            max_connections: s.max_tracked,
            userspace_evictions: s.user_evictions,
        },
        out,
    );
}

/// The name of malformed reason `m` (`None` for "not malformed" and unknown
/// values), as in `packet` objects.
pub fn malformed_reason(m: u8) -> Option<&'static str> {
    malformed_name(m)
}

fn push(v: &impl Serialize, out: &mut Vec<u8>) {
    // Serializing these plain structs into a Vec cannot fail.
    serde_json::to_writer(&mut *out, v).expect("JSON of plain data");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_000 + 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_804_521_781_378_000), "2026-11-27T18:35:21.781378000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn stats_object() {
        let mut s = crate::stats::Snapshot {
            captured: 7,
            tracked: 2,
            max_tracked: 65536,
            kernel_conns: Some(1),
            ..Default::default()
        };
        s.kernel.matched = 9;
        s.kernel.conn_new = 5;
        s.kernel.conn_closed = 3;
        s.kernel.malformed[Malformed::TcpHdrTooShort as usize] = 4;
        let mut out = Vec::new();
        write_stats(1_000_000_005, &s, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "stats");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000000005Z");
        assert_eq!(v["packets_captured"], 7);
        assert_eq!(v["kernel"]["matched"], 9);
        assert_eq!(v["kernel"]["malformed"]["tcp-hdr-too-short"], 4);
        assert_eq!(v["kernel"]["malformed"].as_object().unwrap().len(), 1);
        assert_eq!(v["kernel_conns"], 1);
        assert_eq!(v["kernel_conn_evictions"], 1);
        assert_eq!(v["connections_tracked"], 2);
        assert_eq!(v["userspace_evictions"], 0);
    }

    #[test]
    fn packet_object() {
        let mut r = PacketRecord::zeroed();
        r.family = 4;
        r.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        r.dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        r.sport = 40000;
        r.dport = 80;
        r.tcp_flags = 0x12;
        r.ip_total_len = 60;
        r.l4_off = 20;
        r.data_off = 40;
        r.opt_len = 4;
        r.options[..4].copy_from_slice(&[2, 4, 5, 0xb4]);
        r.direction = Direction::Egress as u8;
        let mut out = Vec::new();
        write_packet(Timestamp::micros(1, 5), &r, "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S.]\n", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "packet");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000005000Z");
        assert_eq!(v["src"], "10.0.0.1");
        assert_eq!(v["flags"], "S.");
        assert_eq!(v["direction"], "out");
        assert_eq!(v["length"], 0);
        assert_eq!(v["options_hex"], "020405b4");
        assert_eq!(v["malformed"], serde_json::Value::Null);
        assert_eq!(v["line"], "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S.]");
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
