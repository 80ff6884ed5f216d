//! The packet line: what tcpdump 4.99.3 prints for a TCP segment at default
//! verbosity, built from a [`PacketRecord`] alone, up to and including
//! `length N` (application-layer text after it is left out).
//!
//! The functions follow tcpdump's `ip_print`, `ip6_print` and `tcp_print`
//! step by step; the comments name the quirks they keep.

pub(crate) mod addr;
mod mptcp;
mod services;
mod ts;

use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;

use tcptrace_common::record::{MAX_EXT, PacketRecord, flags};

pub use services::PortNames;
pub use ts::Timestamp;

use crate::{cli::TimestampMode, names::HostCache};

/// How lines are printed (the tcpdump options that change them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatOptions {
    pub ts_mode: TimestampMode,
    /// `--nano`: nanosecond fractions.
    pub nano: bool,
    /// `-S`: absolute sequence numbers.
    pub absolute: bool,
    /// `-n`: no name resolution.
    pub numeric: bool,
}

impl FormatOptions {
    pub fn from_args(args: &crate::cli::Args) -> Self {
        Self { ts_mode: args.timestamp_mode(), nano: args.nano, absolute: args.absolute, numeric: args.numeric > 0 }
    }
}

/// What tcpdump prints from the link-layer header at default verbosity: only
/// Linux cooked capture v2 shows anything (the interface name, padded to 5,
/// and the packet type, padded to 3). The record does not carry it; the
/// capture-file path reads it from the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkInfo {
    #[default]
    None,
    Sll2 {
        ifindex: u32,
        pkttype: u8,
    },
}

impl LinkInfo {
    /// Reads the SLL2 fields of a frame of the given link type.
    pub fn from_frame(link: tcptrace_common::LinkType, data: &[u8]) -> Self {
        match (link, data.get(..20)) {
            (tcptrace_common::LinkType::LinuxSll2, Some(h)) => {
                LinkInfo::Sll2 { ifindex: u32::from_be_bytes([h[4], h[5], h[6], h[7]]), pkttype: h[10] }
            }
            _ => LinkInfo::None,
        }
    }
}

fn ip4(a: &[u8; 16]) -> IpAddr {
    IpAddr::from([a[0], a[1], a[2], a[3]])
}

/// A conversation as tcpdump keys it: lower port (or address) first.
type ConvKey = ([u8; 16], [u8; 16], u32);

/// The conversation tables' hasher (FxHash's mixing): a lookup per packet
/// with SipHash cost more than the rest of the bookkeeping; the keys are
/// addresses and ports, so flooding resistance buys nothing here.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().unwrap()));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

type ConvId = (u8, ConvKey);

/// An IPv4 conversation's key: its two addresses and the ports, as
/// [`ConvKey`] has them (12 bytes instead of 36).
type V4Key = ([u8; 4], [u8; 4], u32);

fn v4_key(k: &ConvKey) -> V4Key {
    let a = |x: &[u8; 16]| [x[0], x[1], x[2], x[3]];
    (a(&k.0), a(&k.1), k.2)
}

type Table<K> = HashMap<K, Bases, std::hash::BuildHasherDefault<FastHasher>>;

/// Two generations of a table (see [`Conversations`]).
struct Generations<K> {
    cur: Table<K>,
    old: Table<K>,
}

impl<K> Default for Generations<K> {
    fn default() -> Self {
        Self { cur: Table::default(), old: Table::default() }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Generations<K> {
    fn get(&mut self, key: &K) -> Option<Bases> {
        match self.cur.get(key) {
            Some(b) => Some(*b),
            None => {
                let b = *self.old.get(key)?;
                self.insert(*key, b);
                Some(b)
            }
        }
    }

    fn insert(&mut self, key: K, b: Bases) {
        if self.cur.len() >= Conversations::GENERATION {
            if let Some(v) = self.cur.get_mut(&key) {
                *v = b;
                return;
            }
            std::mem::swap(&mut self.cur, &mut self.old);
            // Keeps its allocation: no regrowing.
            self.cur.clear();
        }
        self.cur.insert(key, b);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.cur.len() + self.old.len()
    }
}

/// tcpdump's `tcp_seq_hash` (keyed by family and [`ConvKey`]), bounded:
/// tcpdump keeps every conversation it ever saw, which an always-on tracer
/// cannot. Two generations of at most [`Conversations::GENERATION`] each,
/// per family: when the current one is full it becomes the old one (the old
/// one's entries go) and a found old entry moves back to the current one.
/// So a conversation loses its bases only after that many newer ones of its
/// family went by without a packet of its own (its next packet then prints
/// absolute numbers and sets new bases, as a first packet does). IPv4 keys
/// are kept in 12 bytes: under connection churn each new connection finds
/// its 4-tuple's entry from the one before, cold, and a smaller table keeps
/// more of itself in the cache. The few used last are kept in front (see
/// [`crate::recent`]).
#[derive(Default)]
struct Conversations {
    v4: Generations<V4Key>,
    other: Generations<ConvId>,
    recent: crate::recent::Recent<ConvId, Bases, 8>,
}

impl Conversations {
    const GENERATION: usize = 65_536;

    fn get(&mut self, key: &ConvId) -> Option<Bases> {
        if let Some(b) = self.recent.get(key) {
            return Some(b);
        }
        let b = match key {
            (4, k) => self.v4.get(&v4_key(k)),
            _ => self.other.get(key),
        }?;
        self.recent.put(*key, b);
        Some(b)
    }

    fn insert(&mut self, key: ConvId, b: Bases) {
        match &key {
            (4, k) => self.v4.insert(v4_key(k), b),
            _ => self.other.insert(key, b),
        }
        self.recent.put(key, b);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }
}

/// Appends `v` in decimal (what `write!(s, "{v}")` does, without the
/// formatting machinery, which showed up in profiles of `-r`).
pub(crate) fn push_u32(s: &mut String, v: u32) {
    // SAFETY: only ASCII digits are appended: the string stays UTF-8.
    push_decimal(unsafe { s.as_mut_vec() }, v, 1);
}

/// Appends `v` in decimal, zero-padded to at least `width` digits. The
/// digits are written in place, last first: copying them from a scratch
/// buffer cost a `memcpy` call per number, the top entry of the profiles.
#[inline]
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut v: u32, width: usize) {
    let digits = if v == 0 { 1 } else { v.ilog10() as usize + 1 };
    let n = digits.max(width.min(10));
    out.reserve(n);
    for d in out.spare_capacity_mut()[..n].iter_mut().rev() {
        d.write(b'0' + (v % 10) as u8);
        v /= 10;
    }
    // SAFETY: the `n` bytes past the length were written just above.
    unsafe { out.set_len(out.len() + n) };
}

/// Sequence-number bases of one conversation (tcpdump's `tcp_seq_hash`):
/// `seq` for the side that sorts first, `ack` for the other.
#[derive(Clone, Copy, Debug)]
struct Bases {
    seq: u32,
    ack: u32,
}

/// Turns records into tcpdump lines, keeping the state tcpdump keeps between
/// packets: relative sequence-number bases and the `-ttt`/`-ttttt` reference.
pub struct Formatter {
    opts: FormatOptions,
    ts: ts::TsState,
    conv: Conversations,
    ports: Option<PortNames>,
    /// Host names when printing names (no `-n`); filled by whoever drives the
    /// formatter (see [`Formatter::unresolved`]).
    hosts: Option<HostCache>,
    ifnames: HashMap<u32, String>,
    /// Buffers kept between packets: the line and the two addresses.
    bufs: [String; 3],
}

/// How the option list ended.
enum OptEnd {
    /// `]` printed; the line goes on with `, length N`.
    Done,
    /// The line ends here (`[bad opt]` or a truncation mark).
    Stop,
}

impl Formatter {
    pub fn new(opts: FormatOptions) -> Self {
        if matches!(opts.ts_mode, TimestampMode::Default | TimestampMode::Date) {
            ts::init_tz();
        }
        let ports = if opts.numeric { None } else { Some(PortNames::load()) };
        Self::with_port_names(opts, ports)
    }

    /// Like [`Formatter::new`] with the port names given (`None` prints numbers).
    pub fn with_port_names(opts: FormatOptions, ports: Option<PortNames>) -> Self {
        Self {
            opts,
            ts: ts::TsState::default(),
            conv: Conversations::default(),
            ports: if opts.numeric { None } else { ports },
            hosts: if opts.numeric { None } else { Some(HostCache::default()) },
            ifnames: HashMap::new(),
            bufs: Default::default(),
        }
    }

    /// Addresses of `rec` whose names are still unknown (none with `-n`):
    /// its source and destination, and the addresses its line prints from
    /// routing headers in its extension headers `ext` (see
    /// [`routing_addrs`]). Until they are given with
    /// [`Formatter::set_host_name`], the line prints them as numbers.
    pub fn unresolved<'a>(&'a self, rec: &PacketRecord, ext: &'a [u8]) -> impl Iterator<Item = IpAddr> + use<'a> {
        let hosts = self.hosts.as_ref();
        let addrs = match rec.family {
            4 => [ip4(&rec.src), ip4(&rec.dst)],
            _ => [IpAddr::from(rec.src), IpAddr::from(rec.dst)],
        };
        let ext = if hosts.is_some() { ext } else { &[] };
        let routing = ext_headers(rec, ext).filter(|e| e.kind == 43).filter_map(|e| e.bytes);
        addrs
            .into_iter()
            .chain(routing.flat_map(routing_addrs).map(IpAddr::from))
            .filter(move |ip| hosts.is_some_and(|h| !h.contains(ip)))
    }

    /// Records the name of `ip` (`None`: it has none, print the number).
    /// Host names cached (0 with `-n`).
    pub fn host_names(&self) -> usize {
        self.hosts.as_ref().map_or(0, HostCache::len)
    }

    /// Forgets the cached host names.
    pub fn clear_host_names(&mut self) {
        if let Some(h) = self.hosts.as_mut() {
            h.clear();
        }
    }

    pub fn set_host_name(&mut self, ip: IpAddr, name: Option<String>) {
        if let Some(h) = self.hosts.as_mut() {
            h.insert(ip, name);
        }
    }

    fn host(&self, ip: IpAddr, out: &mut String) -> bool {
        match self.hosts.as_ref().and_then(|h| h.get(&ip)) {
            Some(Some(name)) => {
                out.push_str(name);
                true
            }
            _ => false,
        }
    }

    /// Appends the timestamp of a line printed beside the packet lines (a
    /// state line) and the space after it: the packet lines' style, except
    /// that with `-ttt`/`-ttttt` it shows the delta from the reference the
    /// next packet line will use, without moving it (so packet lines keep
    /// tcpdump's deltas).
    pub fn write_aside_timestamp(&self, ts: Timestamp, out: &mut Vec<u8>) {
        self.ts.print_aside(out, self.opts.ts_mode, self.opts.nano, ts);
    }

    pub fn options(&self) -> FormatOptions {
        self.opts
    }

    /// Moves the `-ttt`/`-ttttt` reference as a packet line at `ts` would,
    /// without printing it (`-w` writes packets to a file, and state lines
    /// still print their deltas).
    pub fn skip_packet(&mut self, ts: Timestamp) {
        if matches!(self.opts.ts_mode, TimestampMode::DeltaPrev | TimestampMode::DeltaFirst) {
            let mut scratch = Vec::new();
            self.ts.print(&mut scratch, self.opts.ts_mode, self.opts.nano, ts);
        }
    }

    /// Appends one line (ending in `\n`) for `rec` seen at `ts`.
    pub fn write_packet(&mut self, ts: Timestamp, rec: &PacketRecord, out: &mut Vec<u8>) {
        self.write_packet_link(ts, LinkInfo::None, rec, &[], out);
    }

    /// Like [`Formatter::write_packet`], with what the link layer prints and
    /// the bytes of the frame's IPv6 extension headers (`ext`, empty when
    /// none; see [`tcptrace_common::ExtTail`]).
    pub fn write_packet_link(
        &mut self,
        ts: Timestamp,
        link: LinkInfo,
        rec: &PacketRecord,
        ext: &[u8],
        out: &mut Vec<u8>,
    ) {
        self.ts.print(out, self.opts.ts_mode, self.opts.nano, ts);
        let [mut s, mut src, mut dst] = std::mem::take(&mut self.bufs);
        s.clear();
        if let LinkInfo::Sll2 { ifindex, pkttype } = link {
            let name = self.ifnames.entry(ifindex).or_insert_with(|| ifname(ifindex)).clone();
            let ptype = match pkttype {
                0 => "In",
                1 => "B",
                2 => "M",
                3 => "P",
                4 => "Out",
                _ => "?",
            };
            let _ = write!(s, "{name:<5} {ptype:<3} ");
        }
        src.clear();
        dst.clear();
        match rec.family {
            4 => self.ipv4(rec, &mut s, &mut src, &mut dst),
            6 => self.ipv6(rec, ext, &mut s, &mut src, &mut dst),
            f => {
                let _ = write!(s, "IP{f} (invalid)");
            }
        }
        out.extend_from_slice(s.as_bytes());
        out.push(b'\n');
        self.bufs = [s, src, dst];
    }

    fn port(&self, s: &mut String, port: u16) {
        match self.ports.as_ref().and_then(|p| p.get(port)) {
            Some(name) => s.push_str(name),
            None => push_u32(s, port as u32),
        }
    }

    /// `ip_print`.
    fn ipv4(&mut self, r: &PacketRecord, s: &mut String, src: &mut String, dst: &mut String) {
        s.push_str("IP ");
        let length = r.l3_wire_len;
        if length < 20 {
            let _ = write!(s, "truncated-ip {length}");
            return;
        }
        let hlen = r.l4_off as u32;
        let len = r.ip_total_len;
        if length < len {
            let _ = write!(s, "truncated-ip - {} bytes missing! ", len - length);
        }
        if len < hlen {
            let _ = write!(s, "bad-len {len}");
            return;
        }
        // The snapshot is cut to the end of the IP datagram.
        let snap = r.l3_cap_len.min(len);
        if snap < hlen {
            let _ = write!(s, " [remaining caplen({snap}) < header length({hlen})] [|ip]");
            return;
        }
        if !self.host(ip4(&r.src), src) {
            addr::ipv4(&r.src[..4], src);
        }
        if !self.host(ip4(&r.dst), dst) {
            addr::ipv4(&r.dst[..4], dst);
        }
        self.tcp(r, s, src, dst, true, len - hlen, snap - hlen);
    }

    /// `ip6_print` with the extension headers the record lists.
    fn ipv6(&mut self, r: &PacketRecord, chain: &[u8], s: &mut String, src: &mut String, dst: &mut String) {
        let length = r.l3_wire_len;
        if length < 40 {
            let _ = write!(s, "truncated-ip6 {length}");
            return;
        }
        s.push_str("IP6 ");
        let payload_len = r.ip_total_len.saturating_sub(40);
        let len = if payload_len != 0 {
            let len = payload_len + 40;
            if length < len {
                // No space after '!' in ip6_print.
                let _ = write!(s, "truncated-ip6 - {} bytes missing!", len - length);
            }
            len
        } else {
            length + 40
        };
        if !self.host(IpAddr::from(r.src), src) {
            addr::ipv6(&r.src, src);
        }
        if !self.host(IpAddr::from(r.dst), dst) {
            addr::ipv6(&r.dst, dst);
        }
        let exts: Vec<ExtHeader> = ext_headers(r, chain).collect();
        let l4 = r.l4_off as u32;
        let mut snap = r.l3_cap_len.min(len);
        if !exts.is_empty() {
            let _ = write!(s, "{src} > {dst}: ");
        }
        let mut found_hbh = false;
        for (i, e) in exts.iter().enumerate() {
            match e.kind {
                0 => {
                    if found_hbh {
                        s.push_str("[The Hop-by-Hop Options header was already found] (invalid)");
                        return;
                    }
                    if i != 0 {
                        s.push_str("[The Hop-by-Hop Options header don't follow the IPv6 header] (invalid)");
                        return;
                    }
                    // `hbhopt_print` prints the header only when all of it
                    // was captured.
                    let whole = e.bytes.is_none_or(whole_header);
                    s.push_str(if whole { "HBH " } else { " [|hbhopt]" });
                    if payload_len == 0 {
                        // A jumbo payload option would be needed: tcpdump
                        // looks for one only when the payload length is 0.
                        s.push_str("[No valid Jumbo Payload Hop-by-Hop option found] (invalid)");
                        return;
                    }
                    if !whole {
                        return;
                    }
                    found_hbh = true;
                }
                60 => {
                    if !e.bytes.is_none_or(whole_header) {
                        s.push_str(" [|dstopt]");
                        return;
                    }
                    s.push_str("DSTOPT ");
                }
                44 => {
                    // Without the chain's bytes, the fragment header is
                    // taken to sit right before the TCP header when it is
                    // the last one listed, else after 8-byte headers.
                    let off = match e.bytes {
                        Some(_) => e.off,
                        None if i + 1 == exts.len() && r.ext_count as usize == exts.len() => l4.saturating_sub(8),
                        None => 40 + 8 * i as u32,
                    };
                    let flen = (40u64 + payload_len as u64).wrapping_sub(off as u64 + 8);
                    let _ = write!(s, "frag ({}|{}) ", r.ip_frag & 0xfff8, flen);
                    if snap <= off + 8 {
                        // Nothing captured after the fragment header: the
                        // line ends after "frag (0|N) ".
                        return;
                    }
                }
                43 => match e.bytes {
                    Some(rh) => {
                        if !self.rt6(rh, s) {
                            return;
                        }
                    }
                    None => s.push_str("RT6 "),
                },
                _ => {}
            }
        }
        if payload_len == 0 {
            if !exts.is_empty() {
                s.push_str(" [|ip6]");
                return;
            }
            // No payload: the datagram is the IPv6 header alone.
            snap = snap.min(40);
            self.tcp(r, s, src, dst, true, 0, snap.saturating_sub(l4));
            return;
        }
        if len < l4 {
            s.push_str(" [|ip6]");
            return;
        }
        self.tcp(r, s, src, dst, exts.is_empty(), len - l4, snap.saturating_sub(l4));
    }

    /// `rt6_print` on the routing header's captured bytes `rh`; false when
    /// the line ends there (invalid or cut).
    fn rt6(&self, rh: &[u8], s: &mut String) -> bool {
        s.push_str("RT6");
        let trunc = |s: &mut String| {
            s.push_str(" [|rt6]");
            false
        };
        let (Some(&len), Some(&ty)) = (rh.get(1), rh.get(2)) else {
            if let Some(&len) = rh.get(1) {
                let _ = write!(s, " (len={len}");
            }
            return trunc(s);
        };
        let _ = write!(s, " (len={len}, type={ty}");
        if ty == 0 {
            s.push_str(" [Deprecated]");
        }
        let Some(&segleft) = rh.get(3) else { return trunc(s) };
        let _ = write!(s, ", segleft={segleft}");
        match ty {
            0 | 2 => {
                let Some(rsv) = rh.get(4..8) else { return trunc(s) };
                let rsv = be32(rsv);
                if rsv != 0 {
                    let _ = write!(s, ", rsv=0x{rsv:x}");
                }
            }
            4 => {
                let Some(&last) = rh.get(4) else { return trunc(s) };
                let _ = write!(s, ", last-entry={last}");
                let Some(&flags) = rh.get(5) else { return trunc(s) };
                if flags != 0 {
                    let _ = write!(s, ", flags=0x{flags:x}");
                }
                let Some(tag) = rh.get(6..8) else { return trunc(s) };
                let _ = write!(s, ", tag={:x}", be16(tag));
            }
            _ => {
                s.push_str(" (unknown type) (invalid)");
                return false;
            }
        }
        if len % 2 == 1 {
            let _ = write!(s, " (invalid length {len}) (invalid)");
            return false;
        }
        for i in 0..(len / 2) as usize {
            let Some(a) = rh.get(8 + 16 * i..8 + 16 * (i + 1)) else { return trunc(s) };
            let a: [u8; 16] = a.try_into().expect("16 bytes");
            let _ = write!(s, ", [{i}]");
            if !self.host(IpAddr::from(a), s) {
                addr::ipv6(&a, s);
            }
        }
        s.push_str(") ");
        true
    }

    /// `tcp_print`: `length` is the TCP segment length the IP header gives,
    /// `cap` the bytes of it that were captured.
    #[allow(clippy::too_many_arguments)]
    fn tcp(&mut self, r: &PacketRecord, s: &mut String, src: &str, dst: &str, with_addrs: bool, length: u32, cap: u32) {
        if cap < 4 {
            let _ = write!(s, "{src} > {dst}: [|tcp]");
            return;
        }
        let (sport, dport) = (r.sport, r.dport);
        if with_addrs {
            s.push_str(src);
            s.push('.');
            self.port(s, sport);
            s.push_str(" > ");
            s.push_str(dst);
            s.push('.');
            self.port(s, dport);
            s.push_str(": ");
        } else {
            self.port(s, sport);
            s.push_str(" > ");
            self.port(s, dport);
            s.push_str(": ");
        }
        if cap < 20 {
            s.push_str(" [|tcp]");
            return;
        }
        let mut hlen = r.data_off as u32;
        if hlen < 20 {
            let _ = write!(s, " tcp {} [bad hdr length {hlen} - too short, < 20]", length.wrapping_sub(hlen));
            return;
        }
        let fl = r.tcp_flags as u8;
        s.push_str("Flags [");
        const LETTERS: [(u8, char); 8] = [
            (flags::FIN as u8, 'F'),
            (flags::SYN as u8, 'S'),
            (flags::RST as u8, 'R'),
            (flags::PSH as u8, 'P'),
            (flags::ACK as u8, '.'),
            (flags::URG as u8, 'U'),
            (flags::ECE as u8, 'E'),
            (flags::CWR as u8, 'W'),
        ];
        if fl == 0 {
            s.push_str("none");
        }
        for (bit, c) in LETTERS {
            if fl & bit != 0 {
                s.push(c);
            }
        }
        s.push(']');

        let mut seq = r.seq;
        let mut ack = r.ack;
        let (mut thseq, mut thack, mut rev) = (0u32, 0u32, false);
        if !self.opts.absolute && fl & flags::ACK as u8 != 0 {
            rev = sport > dport || (sport == dport && r.src > r.dst);
            let key: ConvKey = if rev {
                (r.dst, r.src, (dport as u32) << 16 | sport as u32)
            } else {
                (r.src, r.dst, (sport as u32) << 16 | dport as u32)
            };
            let key = (r.family, key);
            // A SYN+ACK sets the bases whatever was there.
            let known = if fl & flags::SYN as u8 != 0 { None } else { self.conv.get(&key) };
            let th = match known {
                Some(th) => {
                    if rev {
                        seq = seq.wrapping_sub(th.ack);
                        ack = ack.wrapping_sub(th.seq);
                    } else {
                        seq = seq.wrapping_sub(th.seq);
                        ack = ack.wrapping_sub(th.ack);
                    }
                    th
                }
                None => {
                    // New conversation, or a SYN (only a SYN+ACK gets here):
                    // printed absolute, and sets the bases.
                    let th = if rev {
                        Bases { seq: ack.wrapping_sub(1), ack: seq }
                    } else {
                        Bases { seq, ack: ack.wrapping_sub(1) }
                    };
                    self.conv.insert(key, th);
                    th
                }
            };
            thseq = th.seq;
            thack = th.ack;
        }
        if hlen > length {
            let _ = write!(s, " [bad hdr length {hlen} - too long, > {length}]");
            return;
        }
        let plen = length - hlen;
        if plen > 0 || fl & (flags::SYN | flags::FIN | flags::RST) as u8 != 0 {
            s.push_str(", seq ");
            push_u32(s, seq);
            if plen > 0 {
                s.push(':');
                push_u32(s, seq.wrapping_add(plen));
            }
        }
        if fl & flags::ACK as u8 != 0 {
            s.push_str(", ack ");
            push_u32(s, ack);
        }
        s.push_str(", win ");
        push_u32(s, r.window as u32);
        if fl & flags::URG as u8 != 0 {
            let _ = write!(s, ", urg {}", r.urg_ptr);
        }
        let mut proto = "tcp";
        if hlen > 20 {
            hlen -= 20;
            let avail = (r.opt_len as usize).min(r.options.len()).min((cap - 20) as usize);
            let opts = &r.options[..avail];
            let ctx =
                OptCtx { fl, rev, thseq, thack, payload_len: plen, payload_cap: cap.saturating_sub(r.data_off as u32) };
            match print_options(s, opts, hlen, &ctx, &mut proto) {
                OptEnd::Done => {}
                OptEnd::Stop => return,
            }
        }
        s.push_str(", length ");
        push_u32(s, plen);
        if plen == 0 {
            return;
        }
        let header_len = r.data_off as u32;
        if cap < header_len {
            let _ = write!(s, " [remaining caplen({cap}) < header length({header_len})] [|{proto}]");
        }
    }
}

/// `if_indextoname`, or `?` (as tcpdump does).
fn ifname(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return "?".into();
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// What the option printer needs from the segment.
struct OptCtx {
    fl: u8,
    rev: bool,
    thseq: u32,
    thack: u32,
    payload_len: u32,
    payload_cap: u32,
}

fn option_name(opt: u8) -> Option<&'static str> {
    Some(match opt {
        0 => "eol",
        1 => "nop",
        2 => "mss",
        3 => "wscale",
        4 => "sackOK",
        5 => "sack",
        6 => "echo",
        7 => "echoreply",
        8 => "TS",
        11 => "cc",
        12 => "ccnew",
        13 => "",
        19 => "md5",
        20 => "scps",
        28 => "uto",
        29 => "tcp-ao",
        30 => "mptcp",
        34 => "tfo",
        254 => "exp",
        _ => return None,
    })
}

/// One of a record's IPv6 extension headers (see [`ext_headers`]).
#[derive(Clone, Copy, Debug)]
pub struct ExtHeader<'a> {
    /// Its type (next-header number).
    pub kind: u8,
    /// Its offset from the IPv6 header, when `bytes` is known.
    pub off: u32,
    /// Its bytes, cut where the capture (or the record's tail) ends; `None`
    /// when the record did not carry them.
    pub bytes: Option<&'a [u8]>,
}

/// The extension headers of `r`, in order: the types it lists, with their
/// bytes from `chain` (the bytes after its IPv6 header; see
/// [`tcptrace_common::ExtTail`]), which also give the types of headers
/// beyond the [`MAX_EXT`] listed. Without `chain`, the listed types alone.
pub fn ext_headers<'a>(r: &PacketRecord, chain: &'a [u8]) -> impl Iterator<Item = ExtHeader<'a>> + use<'a> {
    let (listed, count) = (r.ext, r.ext_count as usize);
    // Where the next header starts in `chain`, and its type (from the one
    // before it), while the bytes are known.
    let mut at = Some(0usize);
    let mut kind = None;
    (0..count).map_while(move |i| {
        let k = if i < MAX_EXT { listed[i] } else { kind? };
        let here = at.filter(|&a| a < chain.len());
        let Some(a) = here else {
            // Past the carried bytes: only the listed types are known.
            at = None;
            kind = None;
            return (i < MAX_EXT).then_some(ExtHeader { kind: k, off: 0, bytes: None });
        };
        let len = if k == 44 { Some(8) } else { chain.get(a + 1).map(|&l| (l as usize + 1) * 8) };
        let bytes = &chain[a..len.map_or(chain.len(), |l| (a + l).min(chain.len()))];
        kind = Some(chain[a]);
        at = len.map(|l| a + l);
        Some(ExtHeader { kind: k, off: 40 + a as u32, bytes: Some(bytes) })
    })
}

/// Whether `h`, an options header's captured bytes, holds all of it (its
/// length byte says how long it is).
fn whole_header(h: &[u8]) -> bool {
    h.get(1).is_some_and(|&l| h.len() >= (l as usize + 1) * 8)
}

/// The addresses `rt6_print` prints from the routing header `rh` (its
/// captured bytes): those of types 0, 2 and 4, as many as its length field
/// says (when even), as far as they were captured.
pub fn routing_addrs(rh: &[u8]) -> impl Iterator<Item = [u8; 16]> + '_ {
    let n = match (rh.get(1), rh.get(2)) {
        (Some(&len), Some(0 | 2 | 4)) if len % 2 == 0 && rh.len() >= 8 => len as usize / 2,
        _ => 0,
    };
    rh.get(8..).unwrap_or(&[]).chunks_exact(16).take(n).map(|a| a.try_into().expect("16 bytes"))
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The option loop of `tcp_print`. `opts` holds the captured option bytes,
/// `hlen` the option bytes the header claims.
fn print_options(s: &mut String, opts: &[u8], mut hlen: u32, ctx: &OptCtx, proto: &mut &'static str) -> OptEnd {
    // Reading past the capture inside GET_* ends the line at the top level
    // (no '>'); a failed ND_TCHECK goes to tcp_print's `trunc` label.
    macro_rules! longjmp {
        () => {{
            let _ = write!(s, " [|{}]", proto);
            return OptEnd::Stop;
        }};
    }
    s.push_str(", options [");
    let mut ch = false;
    let mut cp = 0usize;
    let avail = opts.len();
    let get = |i: usize| opts.get(i).copied();
    while hlen > 0 {
        if ch {
            s.push(',');
        }
        let Some(opt) = get(cp) else { longjmp!() };
        cp += 1;
        let zerolen = opt == 0 || opt == 1;
        let len: u32 = if zerolen {
            1
        } else {
            let Some(l) = get(cp) else { longjmp!() };
            cp += 1;
            let l = l as u32;
            if l < 2 || l > hlen {
                return bad(s, ch);
            }
            hlen -= 1;
            l
        };
        hlen -= 1;
        let mut datalen: u32 = 0;
        match option_name(opt) {
            Some(n) => s.push_str(n),
            None => {
                let _ = write!(s, "unknown-{opt}");
            }
        }
        // LENCHECK(l): `[bad opt]` when the header has too few bytes left,
        // a truncation mark when the capture does.
        macro_rules! lencheck {
            ($l:expr) => {{
                let l: u32 = $l;
                if l > hlen {
                    return bad(s, ch);
                }
                if cp + l as usize > avail {
                    return trunc(s, ch, proto);
                }
            }};
        }
        match opt {
            2 => {
                datalen = 2;
                lencheck!(2);
                s.push(' ');
                push_u32(s, be16(&opts[cp..]) as u32);
            }
            3 => {
                datalen = 1;
                lencheck!(1);
                s.push(' ');
                push_u32(s, opts[cp] as u32);
            }
            5 => {
                datalen = len - 2;
                if !datalen.is_multiple_of(8) {
                    s.push_str(" invalid sack");
                } else {
                    let _ = write!(s, " {} ", datalen / 8);
                    let mut i = 0;
                    while i < datalen {
                        lencheck!(i + 4);
                        let mut a = be32(&opts[cp + i as usize..]);
                        lencheck!(i + 8);
                        let mut b = be32(&opts[cp + i as usize + 4..]);
                        let base = if ctx.rev { ctx.thseq } else { ctx.thack };
                        a = a.wrapping_sub(base);
                        b = b.wrapping_sub(base);
                        let _ = write!(s, "{{{a}:{b}}}");
                        i += 8;
                    }
                }
            }
            6 | 7 | 11 | 12 | 13 => {
                datalen = 4;
                lencheck!(4);
                let _ = write!(s, " {}", be32(&opts[cp..]));
            }
            8 => {
                datalen = 8;
                lencheck!(8);
                s.push_str(" val ");
                push_u32(s, be32(&opts[cp..]));
                s.push_str(" ecr ");
                push_u32(s, be32(&opts[cp + 4..]));
            }
            19 => {
                datalen = 16;
                lencheck!(16);
                s.push(' ');
                // tcpdump built with libcrypto, no -M secret.
                if ctx.payload_len > ctx.payload_cap {
                    s.push_str("snaplen too short, ");
                } else {
                    s.push_str("shared secret not supplied with -M, ");
                }
                s.push_str("can't check - ");
                for b in &opts[cp..cp + 16] {
                    let _ = write!(s, "{b:02x}");
                }
            }
            20 => {
                datalen = 2;
                lencheck!(2);
                let _ = write!(s, " cap {:02x} id {}", opts[cp], opts[cp + 1]);
            }
            29 => {
                datalen = len - 2;
                if datalen < 2 {
                    s.push_str(" (invalid)");
                } else {
                    lencheck!(1);
                    let _ = write!(s, " keyid {}", opts[cp]);
                    lencheck!(2);
                    let _ = write!(s, " rnextkeyid {}", opts[cp + 1]);
                    if datalen > 2 {
                        s.push_str(" mac 0x");
                        for i in 2..datalen {
                            lencheck!(i + 1);
                            let _ = write!(s, "{:02x}", opts[cp + i as usize]);
                        }
                    }
                }
            }
            0 | 1 | 4 => {}
            28 => {
                datalen = 2;
                lencheck!(2);
                let mut uto = be16(&opts[cp..]) as u32;
                let _ = write!(s, " 0x{uto:x}");
                if uto & 1 != 0 {
                    uto = (uto >> 1) * 60;
                } else {
                    uto >>= 1;
                }
                let _ = write!(s, " {uto}");
            }
            30 => {
                datalen = len - 2;
                lencheck!(datalen);
                *proto = "mptcp";
                if !mptcp::print(s, &opts[cp - 2..cp - 2 + len as usize], ctx.fl) {
                    return bad(s, ch);
                }
            }
            34 => {
                datalen = len - 2;
                lencheck!(datalen);
                s.push(' ');
                fastopen(s, &opts[cp..cp + datalen as usize], false);
            }
            254 => {
                datalen = len - 2;
                lencheck!(datalen);
                if datalen < 2 {
                    return bad(s, ch);
                }
                let magic = be16(&opts[cp..]);
                s.push('-');
                if magic == 0xf989 {
                    fastopen(s, &opts[cp + 2..cp + datalen as usize], true);
                } else {
                    let _ = write!(s, "{magic:04x}");
                }
            }
            _ => {
                datalen = len - 2;
                if datalen > 0 {
                    s.push_str(" 0x");
                }
                for i in 0..datalen {
                    lencheck!(i + 1);
                    let _ = write!(s, "{:02x}", opts[cp + i as usize]);
                }
            }
        }
        cp += datalen as usize;
        hlen -= datalen;
        let mut seen = datalen + 1;
        if !zerolen {
            seen += 1;
        }
        if seen != len {
            let _ = write!(s, "[len {len}]");
        }
        ch = true;
        if opt == 0 {
            break;
        }
    }
    s.push(']');
    OptEnd::Done
}

fn bad(s: &mut String, ch: bool) -> OptEnd {
    s.push_str("[bad opt]");
    if ch {
        s.push(']');
    }
    OptEnd::Stop
}

fn trunc(s: &mut String, ch: bool, proto: &str) -> OptEnd {
    let _ = write!(s, " [|{proto}]");
    if ch {
        s.push('>');
    }
    OptEnd::Stop
}

fn fastopen(s: &mut String, data: &[u8], exp: bool) {
    if exp {
        s.push_str("tfo");
    }
    if data.is_empty() {
        s.push_str(" cookiereq");
    } else if !data.len().is_multiple_of(2) || data.len() < 4 || data.len() > 16 {
        s.push_str(" (invalid)");
    } else {
        s.push_str(" cookie ");
        for b in data {
            let _ = write!(s, "{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests;
