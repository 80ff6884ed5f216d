//! The one frame parser: the rules that turn frame bytes into a
//! [`PacketRecord`]. The kernel programs run it on live frames through their
//! own [`Frame`] implementation; userspace runs it on capture-file frames
//! through [`SliceFrame`]. The same bytes therefore give the same record.
//!
//! It is written for the eBPF verifier as much as for the host: every loop has
//! a constant bound, every read is a fixed-size copy through [`Frame::load`],
//! and nothing recurses or allocates.
//!
//! Parsing is split in two: [`parse_headers`] does the little work needed to
//! decide whether a frame matches the filter, and [`fill_record`] then copies
//! everything into the record (in the kernel, directly into ring-buffer memory).

use crate::{
    conn::{ConnKey, Segment},
    record::{ExtRecord, ExtTail, MAX_EXT, MAX_EXT_BYTES, MAX_OPTIONS, Malformed, PacketRecord, RecordKind},
};

/// Read access to a frame's bytes.
pub trait Frame {
    /// Bytes of the frame on the wire.
    fn wire_len(&self) -> u32;
    /// Bytes that can be read (`<= wire_len`; equal for live frames).
    fn cap_len(&self) -> u32;
    /// Copies `N` bytes starting at `off`, or `None` when they are not all there.
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]>;
    /// Copies `len` (1..=40) bytes starting at `off` into the front of `out`.
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool;
    /// Copies `len` (1..=N) bytes starting at `off` into the front of `out`.
    fn load_span<const N: usize>(&self, off: u32, len: u32, out: &mut [u8; N]) -> bool;
    /// Like [`Frame::load`], but straight into `out` (no copy on the stack).
    #[inline(always)]
    fn load_into<const N: usize>(&self, off: u32, out: &mut [u8; N]) -> bool {
        match self.load::<N>(off) {
            Some(v) => {
                *out = v;
                true
            }
            None => false,
        }
    }
}

/// A frame held in memory (capture files, tests).
#[derive(Clone, Copy, Debug)]
pub struct SliceFrame<'a> {
    pub data: &'a [u8],
    pub wire_len: u32,
}

impl<'a> SliceFrame<'a> {
    /// A complete frame: everything on the wire was captured.
    pub fn full(data: &'a [u8]) -> Self {
        Self { data, wire_len: data.len() as u32 }
    }
}

impl Frame for SliceFrame<'_> {
    fn wire_len(&self) -> u32 {
        self.wire_len.max(self.data.len() as u32)
    }
    fn cap_len(&self) -> u32 {
        self.data.len() as u32
    }
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let off = off as usize;
        let bytes = self.data.get(off..off.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        self.load_span(off, len, out)
    }
    fn load_span<const N: usize>(&self, off: u32, len: u32, out: &mut [u8; N]) -> bool {
        let (off, len) = (off as usize, len as usize);
        if len == 0 || len > N {
            return false;
        }
        match self.data.get(off..off + len) {
            Some(b) => {
                out[..len].copy_from_slice(b);
                true
            }
            None => false,
        }
    }
}

/// The link-layer header a frame starts with (pcap's LINKTYPE_* names).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet = 1,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1.
    LinuxSll = 2,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
    LinuxSll2 = 3,
    /// LINKTYPE_RAW (101) and friends: the frame starts with the IP header.
    RawIp = 4,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type number.
    pub fn from_pcap(linktype: u32) -> Option<Self> {
        match linktype {
            1 => Some(Self::Ethernet),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            12 | 14 | 101 => Some(Self::RawIp),
            228 | 229 => Some(Self::RawIp),
            _ => None,
        }
    }
}

/// Why a frame leaves no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not IPv4/IPv6 TCP.
    NotTcp,
    /// An IPv4 or IPv6 fragment other than the first: no TCP header in it.
    LaterFragment,
    /// Broken before a TCP header could be found.
    Malformed(Malformed),
}

/// What [`parse_headers`] learnt: enough to filter, and where to copy from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// Offset of the IP header in the frame.
    pub l3_off: u32,
    /// Offset of the TCP header from the IP header.
    pub l4_off: u32,
    /// 4 or 6.
    pub family: u8,
    /// Bytes of the TCP header that could be read: 0 (not even both ports),
    /// 4 (ports only) or 20 (the fixed header).
    pub tcp_fixed: u8,
    /// The source and destination ports' two bytes as on the wire, read
    /// little-endian (the ports byte-swapped): the filter tests them as
    /// loaded (see [`crate::PortSet::contains_either_wire`]); [`Headers::sport`]
    /// and [`Headers::dport`] give the ports. Held in 64 bits, the width of
    /// a BPF register: as `u16`s the kernel cleared their upper bits again
    /// before each compare (and, short of registers, kept one on the stack).
    pub sport_wire: u64,
    pub dport_wire: u64,
    /// TCP flags byte plus AE (0x100); 0 when the fixed header was cut.
    pub tcp_flags: u16,
    /// Sequence and acknowledgment numbers and the data offset in bytes
    /// (0 when the fixed header was cut).
    pub seq: u32,
    pub ack: u32,
    pub data_off: u8,
    /// IPv4 total length, or 40 + IPv6 payload length.
    pub ip_total_len: u32,
    /// IPv6 extension headers walked, their types, and the fragment field.
    pub ext_count: u8,
    pub ext: [u8; MAX_EXT],
    pub ip6_frag: u16,
}

/// Ethertypes of the VLAN tags we walk (802.1Q, 802.1ad, old QinQ).
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ: u16 = 0x9100;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// Most VLAN tags walked.
pub const MAX_VLAN: usize = 4;
/// Most IPv6 extension headers walked before giving up on the frame.
pub const MAX_IPV6_EXT: usize = 6;

const IPPROTO_TCP: u8 = 6;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// The two bytes of `b` at `at`, read little-endian as one 16-bit read: so
/// LLVM makes it one load from the frame in the kernel, where two byte
/// reads stay two loads and a shift-or.
#[inline(always)]
fn le16_at<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    let mut two = [0u8; 2];
    two.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(two)
}

/// The two bytes of `b` at `at`, read big-endian (see [`le16_at`]).
#[inline(always)]
fn be16_at<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    le16_at(b, at).swap_bytes()
}

/// Finds the IP header behind the link layer: (ethertype, offset).
#[inline(always)]
fn link<F: Frame>(f: &F, link: LinkType) -> Result<(u16, u32), Skip> {
    let trunc = Skip::Malformed(Malformed::LinkTruncated);
    match link {
        LinkType::Ethernet => {
            let et: [u8; 2] = f.load(12).ok_or(trunc)?;
            let mut et = be16(et);
            let mut off = 14u32;
            for _ in 0..MAX_VLAN {
                if et != ETH_P_8021Q && et != ETH_P_8021AD && et != ETH_P_QINQ {
                    break;
                }
                let tag: [u8; 4] = f.load(off).ok_or(trunc)?;
                et = be16([tag[2], tag[3]]);
                off += 4;
            }
            Ok((et, off))
        }
        LinkType::LinuxSll => {
            let et: [u8; 2] = f.load(14).ok_or(trunc)?;
            Ok((be16(et), 16))
        }
        LinkType::LinuxSll2 => {
            let et: [u8; 2] = f.load(0).ok_or(trunc)?;
            if f.cap_len() < 20 {
                return Err(trunc);
            }
            Ok((be16(et), 20))
        }
        LinkType::RawIp => {
            let v: [u8; 1] = f.load(0).ok_or(trunc)?;
            match v[0] >> 4 {
                4 => Ok((ETH_P_IP, 0)),
                6 => Ok((ETH_P_IPV6, 0)),
                _ => Err(Skip::NotTcp),
            }
        }
    }
}

/// Bytes [`plain_ipv4`] reads: Ethernet, IPv4 without options, the fixed
/// TCP header.
const PLAIN_IPV4_LEN: usize = 14 + 20 + 20;

/// The headers of the most common frame, read from fixed offsets in one
/// bounds check: an untagged Ethernet frame with an IPv4 header without
/// options, not a later fragment, and the whole fixed TCP header. `None`
/// for any other frame. What it gives is exactly what the general walk
/// below gives for the same bytes (a test checks it on every frame it
/// makes); it is only quicker to reach, which matters in the kernel, where
/// every frame on the interface goes through it.
#[inline(always)]
fn plain_ipv4<F: Frame>(f: &F) -> Option<Headers> {
    let b: [u8; PLAIN_IPV4_LEN] = f.load(0)?;
    let t = 14 + 20;
    let plain = be16([b[12], b[13]]) == ETH_P_IP
        && b[14] == 0x45
        && b[14 + 9] == IPPROTO_TCP
        && be16([b[14 + 6], b[14 + 7]]) & 0x1fff == 0;
    plain.then(|| Headers {
        l3_off: 14,
        l4_off: 20,
        family: 4,
        tcp_fixed: 20,
        sport_wire: le16_at(&b, t) as u64,
        dport_wire: le16_at(&b, t + 2) as u64,
        tcp_flags: be16_at(&b, t + 12) & 0x1ff,
        seq: u32::from_be_bytes([b[t + 4], b[t + 5], b[t + 6], b[t + 7]]),
        ack: u32::from_be_bytes([b[t + 8], b[t + 9], b[t + 10], b[t + 11]]),
        data_off: (b[t + 12] >> 4) * 4,
        ip_total_len: be16([b[16], b[17]]) as u32,
        ..Headers::default()
    })
}

/// Walks link, IP and the start of TCP. Cheap: at most a few small copies.
#[inline(always)]
pub fn parse_headers<F: Frame>(f: &F, link_type: LinkType) -> Result<Headers, Skip> {
    if link_type == LinkType::Ethernet
        && let Some(h) = plain_ipv4(f)
    {
        return Ok(h);
    }
    walk(f, link_type)
}

/// [`parse_headers`] for every frame: VLAN tags, IP options, IPv6
/// extension headers, cut headers.
#[inline(always)]
fn walk<F: Frame>(f: &F, link_type: LinkType) -> Result<Headers, Skip> {
    let (ethertype, l3) = link(f, link_type)?;
    let mut h = Headers { l3_off: l3, ..Headers::default() };
    match ethertype {
        ETH_P_IP => {
            let ip: [u8; 20] = f.load(l3).ok_or(Skip::Malformed(Malformed::IpTruncated))?;
            let ihl = ((ip[0] & 0x0f) as u32) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 {
                return Err(Skip::Malformed(Malformed::IpBadHeader));
            }
            if ip[9] != IPPROTO_TCP {
                return Err(Skip::NotTcp);
            }
            if be16([ip[6], ip[7]]) & 0x1fff != 0 {
                return Err(Skip::LaterFragment);
            }
            h.family = 4;
            h.l4_off = ihl;
            h.ip_total_len = be16([ip[2], ip[3]]) as u32;
        }
        ETH_P_IPV6 => {
            let ip: [u8; 8] = f.load(l3).ok_or(Skip::Malformed(Malformed::IpTruncated))?;
            if ip[0] >> 4 != 6 {
                return Err(Skip::Malformed(Malformed::IpBadHeader));
            }
            if f.cap_len() < l3 + 40 {
                return Err(Skip::Malformed(Malformed::IpTruncated));
            }
            h.family = 6;
            h.ip_total_len = 40 + be16([ip[4], ip[5]]) as u32;
            let mut nh = ip[6];
            let mut off = 40u32;
            for i in 0..MAX_IPV6_EXT {
                if nh == IPPROTO_TCP {
                    break;
                }
                let chain = Skip::Malformed(Malformed::Ip6ExtChain);
                let ext: [u8; 4] = match nh {
                    IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_FRAGMENT => f.load(l3 + off).ok_or(chain)?,
                    _ => return Err(Skip::NotTcp),
                };
                if i < MAX_EXT {
                    h.ext[i] = nh;
                }
                h.ext_count += 1;
                if nh == IPV6_FRAGMENT {
                    let fo = be16([ext[2], ext[3]]);
                    if fo >> 3 != 0 {
                        return Err(Skip::LaterFragment);
                    }
                    h.ip6_frag = fo;
                    off += 8;
                } else {
                    off += (ext[1] as u32 + 1) * 8;
                }
                nh = ext[0];
            }
            if nh != IPPROTO_TCP {
                return Err(Skip::Malformed(Malformed::Ip6ExtChain));
            }
            h.l4_off = off;
        }
        _ => return Err(Skip::NotTcp),
    }
    let l4 = l3 + h.l4_off;
    if let Some(t) = f.load::<20>(l4) {
        h.tcp_fixed = 20;
        h.sport_wire = le16_at(&t, 0) as u64;
        h.dport_wire = le16_at(&t, 2) as u64;
        h.tcp_flags = be16_at(&t, 12) & 0x1ff;
        h.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        h.ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
        h.data_off = (t[12] >> 4) * 4;
    } else if let Some(p) = f.load::<4>(l4) {
        h.tcp_fixed = 4;
        h.sport_wire = le16_at(&p, 0) as u64;
        h.dport_wire = le16_at(&p, 2) as u64;
    }
    Ok(h)
}

impl Headers {
    /// The source port.
    #[inline(always)]
    pub fn sport(&self) -> u16 {
        (self.sport_wire as u16).swap_bytes()
    }

    /// The destination port.
    #[inline(always)]
    pub fn dport(&self) -> u16 {
        (self.dport_wire as u16).swap_bytes()
    }

    /// What the connection logic needs of this segment.
    #[inline(always)]
    pub fn segment(&self) -> Segment {
        let payload = self.ip_total_len.saturating_sub(self.l4_off).saturating_sub(self.data_off as u32);
        Segment { flags: self.tcp_flags, seq: self.seq, ack: self.ack, payload }
    }
}

/// An IPv4 address in the first 4 of 16 bytes, the rest zero: made as one
/// integer, which BPF stores in two words (zeroing the array first would be
/// a `memset` call there).
#[inline(always)]
fn v4_in_16(a: [u8; 4]) -> [u8; 16] {
    (u32::from_le_bytes(a) as u128).to_le_bytes()
}

/// The 16 bytes of `b` from `at`, made as one integer: a slice copy between
/// two pointers (packet and ring buffer, in BPF) can become a `memmove`
/// call there, a byte loop.
#[inline(always)]
fn bytes16(b: &[u8; 40], at: usize) -> [u8; 16] {
    let w = |i: usize| u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
    ((w(at + 8) as u128) << 64 | w(at) as u128).to_le_bytes()
}

/// Fills `key` with the connection this segment belongs to and returns the
/// index of its sender in the key (see [`ConnKey`]), or `None` when the
/// addresses cannot be read.
#[inline(always)]
pub fn conn_key<F: Frame>(f: &F, h: &Headers, key: &mut ConnKey) -> Option<usize> {
    // Field by field: a whole-key `default()` is a `memset` call in BPF.
    key.family = h.family;
    for b in &mut key._pad {
        // SAFETY: a valid, exclusive pointer (volatile: three byte stores,
        // not a `memset` call in BPF).
        unsafe { core::ptr::write_volatile(b, 0) };
    }
    if h.family == 4 {
        let a: [u8; 8] = f.load(h.l3_off + 12)?;
        key.addr[0] = v4_in_16([a[0], a[1], a[2], a[3]]);
        key.addr[1] = v4_in_16([a[4], a[5], a[6], a[7]]);
    } else {
        let [src, dst] = &mut key.addr;
        if !f.load_into(h.l3_off + 8, src) || !f.load_into(h.l3_off + 24, dst) {
            return None;
        }
        // Behind a routing header, the connection is with its final
        // destination (the two directions' addresses then pair up).
        if h.has_routing()
            && let Some(at) = routing_header_at(f, h)
        {
            routed_destination(f, at, dst);
        }
    }
    key.port = [h.sport(), h.dport()];
    Some(key.canonicalize())
}

/// Copies everything the record carries. `h` must come from
/// [`parse_headers`] on the same frame. Sets `malformed` to the first problem
/// tcpdump would report, or [`Malformed::None`].
#[inline(always)]
pub fn fill_record<F: Frame>(f: &F, h: &Headers, r: &mut PacketRecord) {
    let l3 = h.l3_off;
    let l4 = l3 + h.l4_off;
    r.kind = RecordKind::Packet as u8;
    r.wire_len = f.wire_len();
    r.family = h.family;
    r.l4_off = h.l4_off as u16;
    r.ip_total_len = h.ip_total_len;
    r.l3_wire_len = f.wire_len().saturating_sub(l3);
    r.l3_cap_len = f.cap_len().saturating_sub(l3);
    r.sport = h.sport();
    r.dport = h.dport();
    r.tcp_flags = h.tcp_flags;
    r.ext_count = h.ext_count;
    r.ext = h.ext;
    r.opt_len = 0;
    let mut malformed = Malformed::None;
    if h.family == 4 {
        if let Some(ip) = f.load::<20>(l3) {
            r.tos = ip[1];
            r.ip_id = be16([ip[4], ip[5]]);
            r.ip_frag = be16([ip[6], ip[7]]);
            r.ttl = ip[8];
            r.src = v4_in_16([ip[12], ip[13], ip[14], ip[15]]);
            r.dst = v4_in_16([ip[16], ip[17], ip[18], ip[19]]);
            r.ip6_flow = 0;
        }
    } else if let Some(ip) = f.load::<40>(l3) {
        let vtf = u32::from_be_bytes([ip[0], ip[1], ip[2], ip[3]]);
        r.tos = ((vtf >> 20) & 0xff) as u8;
        r.ip6_flow = vtf & 0x000f_ffff;
        r.ttl = ip[7];
        r.ip_id = 0;
        r.ip_frag = h.ip6_frag;
        r.src = bytes16(&ip, 8);
        r.dst = bytes16(&ip, 24);
    }
    if h.ip_total_len > r.l3_wire_len {
        malformed = Malformed::IpLenBeyondFrame;
    }
    if h.tcp_fixed < 20 {
        r.malformed = Malformed::TcpTruncated as u8;
        return;
    }
    if let Some(t) = f.load::<20>(l4) {
        r.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        r.ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
        r.data_off = (t[12] >> 4) * 4;
        r.window = be16([t[14], t[15]]);
        r.urg_ptr = be16([t[18], t[19]]);
    }
    let doff = r.data_off as u32;
    if doff < 20 {
        r.malformed = Malformed::TcpHdrTooShort as u8;
        return;
    }
    let seg_len = h.ip_total_len.saturating_sub(h.l4_off);
    if doff > seg_len && malformed == Malformed::None {
        malformed = Malformed::TcpHdrTooLong;
    }
    let want = doff - 20;
    if want > 0 {
        let avail = f.cap_len().saturating_sub(l4 + 20);
        let mut n = if want < avail { want } else { avail };
        if n > MAX_OPTIONS as u32 {
            n = MAX_OPTIONS as u32;
        }
        if n < want && malformed == Malformed::None {
            malformed = Malformed::TcpOptionsTruncated;
        }
        if n > 0 && f.load_options(l4 + 20, n, &mut r.options) {
            r.opt_len = n as u8;
        }
    }
    r.malformed = malformed as u8;
}

impl Headers {
    /// Whether one of the IPv6 extension headers listed is a routing header.
    #[inline(always)]
    pub fn has_routing(&self) -> bool {
        let e = self.ext;
        self.ext_count != 0
            && (e[0] == IPV6_ROUTING || e[1] == IPV6_ROUTING || e[2] == IPV6_ROUTING || e[3] == IPV6_ROUTING)
    }
}

/// The offset in the frame of its first IPv6 routing header (of the
/// extension headers listed in `h`), or `None`. `h` must come from
/// [`parse_headers`] on the same frame. The chain is walked again here
/// rather than in the parse, where the kernel programs' verifier would walk
/// every frame's states twice over (with and without a routing header
/// found at each step).
#[inline(always)]
pub fn routing_header_at<F: Frame>(f: &F, h: &Headers) -> Option<u32> {
    if h.family != 6 {
        return None;
    }
    let mut off = h.l3_off + 40;
    let n = if (h.ext_count as usize) < MAX_EXT { h.ext_count as usize } else { MAX_EXT };
    for i in 0..MAX_EXT {
        if i >= n {
            return None;
        }
        if h.ext[i] == IPV6_ROUTING {
            return Some(off);
        }
        let b = f.load::<2>(off)?;
        off += if h.ext[i] == IPV6_FRAGMENT { 8 } else { (b[1] as u32 + 1) * 8 };
    }
    None
}

/// Copies the frame's IPv6 extension headers (the bytes from the end of the
/// IPv6 header to the TCP header) into `tail`, as far as they were captured
/// and at most [`MAX_EXT_BYTES`]: `tail.len` is the number of bytes copied,
/// 0 when there are none. `h` must come from [`parse_headers`].
#[inline(always)]
pub fn fill_ext<F: Frame>(f: &F, h: &Headers, tail: &mut ExtTail) {
    tail.len = 0;
    if h.family != 6 || h.ext_count == 0 {
        return;
    }
    let at = h.l3_off + 40;
    let avail = f.cap_len().saturating_sub(at);
    let len = h.l4_off.saturating_sub(40);
    let mut n = if len < avail { len } else { avail };
    if n > MAX_EXT_BYTES as u32 {
        n = MAX_EXT_BYTES as u32;
    }
    if n > 0 && f.load_span(at, n, &mut tail.bytes) {
        tail.len = n as u16;
    }
}

/// Writes into `out` the final destination of a packet whose routing header
/// starts at `at` in `f`, when it is not the IPv6 destination address: the
/// address TCP's pseudo-header and sockets have (RFC 8200, 8.1). A segment
/// routing header (type 4) lists it first (its Segment List[0]); a type 0
/// or type 2 (mobile IPv6) header last, until no segment is left (then the
/// destination address is the final one). False, and `out` unchanged, for
/// any other header or one cut short.
#[inline(always)]
pub fn routed_destination<F: Frame>(f: &F, at: u32, out: &mut [u8; 16]) -> bool {
    let Some(b) = f.load::<4>(at) else { return false };
    let (len, ty, segleft) = (b[1] as u32, b[2], b[3]);
    let off = match ty {
        4 if len >= 2 => 8,
        0 | 2 if segleft != 0 && len >= 2 && len % 2 == 0 => 8 + 16 * (len / 2 - 1),
        _ => return false,
    };
    match f.load::<16>(at + off) {
        Some(a) => {
            *out = a;
            true
        }
        None => false,
    }
}

/// Both steps at once (userspace and tests).
pub fn parse_frame<F: Frame>(f: &F, link_type: LinkType) -> Result<PacketRecord, Skip> {
    let h = parse_headers(f, link_type)?;
    let mut r = PacketRecord::zeroed();
    fill_record(f, &h, &mut r);
    Ok(r)
}

/// [`parse_frame`] with the extension headers' bytes (userspace and tests).
pub fn parse_frame_ext<F: Frame>(f: &F, link_type: LinkType) -> Result<ExtRecord, Skip> {
    let h = parse_headers(f, link_type)?;
    let mut r = ExtRecord { rec: PacketRecord::zeroed(), tail: ExtTail::empty() };
    fill_record(f, &h, &mut r.rec);
    fill_ext(f, &h, &mut r.tail);
    Ok(r)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// A SYN with options in an untagged Ethernet frame: the frame
    /// [`plain_ipv4`] takes.
    fn syn() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let tcp_len = 20 + 20;
        f.extend_from_slice(&[0x45, 0, 0, 20 + tcp_len, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x90, 1, 2, 3, 4, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
        f.extend_from_slice(&[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]);
        f
    }

    /// The final destination behind each kind of routing header.
    #[test]
    fn final_destinations() {
        let addr = |last: u8| [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last];
        let rh = |ty: u8, segleft: u8, addrs: &[u8]| {
            let mut b = std::vec![6, (2 * addrs.len()) as u8, ty, segleft, 0, 0, 0, 0];
            for &a in addrs {
                b.extend_from_slice(&addr(a));
            }
            b
        };
        let dest = |b: &[u8]| {
            let mut out = [0xee; 16];
            routed_destination(&SliceFrame::full(b), 0, &mut out).then_some(out)
        };
        // Segment routing: Segment List[0], whatever is left.
        assert_eq!(dest(&rh(4, 2, &[1, 2, 3])), Some(addr(1)));
        assert_eq!(dest(&rh(4, 0, &[1, 2, 3])), Some(addr(1)));
        // Type 0 and 2: the last address, until none is left.
        assert_eq!(dest(&rh(0, 2, &[1, 2])), Some(addr(2)));
        assert_eq!(dest(&rh(2, 1, &[7])), Some(addr(7)));
        assert_eq!(dest(&rh(0, 0, &[1, 2])), None);
        // Unknown types, odd lengths, no address, cut short: none.
        assert_eq!(dest(&rh(3, 1, &[1])), None);
        let mut odd = rh(0, 1, &[1]);
        odd[1] = 3;
        assert_eq!(dest(&odd), None);
        assert_eq!(dest(&rh(4, 1, &[])), None);
        assert_eq!(dest(&rh(4, 1, &[1])[..20]), None);
    }

    /// xorshift64: a fixed sequence, so that a failure can be rerun.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Whatever the bytes, the quick read of a plain IPv4 frame gives what
    /// the general walk gives, and it takes the frames it is for.
    #[test]
    fn plain_ipv4_agrees_with_the_walk() {
        let base = syn();
        let h = plain_ipv4(&SliceFrame::full(&base)).expect("a plain IPv4 SYN");
        assert_eq!(Ok(h), walk(&SliceFrame::full(&base), LinkType::Ethernet));
        assert_eq!((h.sport(), h.dport(), h.tcp_flags, h.data_off, h.ip_total_len), (40000, 8080, 0x002, 40, 60));
        let (mut state, mut taken, mut other) = (0x9e37_79b9_7f4a_7c15u64, 0, 0);
        for _ in 0..200_000 {
            let mut f = base.clone();
            // One to four header bytes set to a random or a boundary value
            // (the first 54 bytes are the ones the quick read looks at).
            for _ in 0..1 + next(&mut state) % 4 {
                let at = (next(&mut state) % 58) as usize;
                let r = next(&mut state);
                f[at] = match r % 4 {
                    0 => 0,
                    1 => 0xff,
                    2 => base[at] ^ (1 << ((r >> 8) % 8)),
                    _ => (r >> 16) as u8,
                };
            }
            if next(&mut state).is_multiple_of(4) {
                f.truncate((next(&mut state) % 70) as usize);
            }
            let frame = SliceFrame::full(&f);
            match plain_ipv4(&frame) {
                Some(h) => {
                    taken += 1;
                    assert_eq!(Ok(h), walk(&frame, LinkType::Ethernet), "frame {f:02x?}");
                }
                None => other += 1,
            }
        }
        // Both kinds were tried in numbers.
        assert!(taken > 20_000 && other > 20_000, "taken {taken}, other {other}");
    }
}
