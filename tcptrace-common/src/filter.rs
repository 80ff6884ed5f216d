//! The filter userspace sets at load time and the kernel applies per frame.

use crate::parse::{Frame, Headers};

/// Filter settings (one entry of an eBPF array map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// A packet matches when it carries any of these flags
    /// ([`crate::record::flags`]); 0 matches every packet.
    pub flag_mask: u16,
    /// 0 for both families, else 4 or 6.
    pub family: u8,
    /// 1 when [`PortSet`] lists the ports to trace; 0 traces every port.
    pub use_ports: u8,
    /// 1 to send state-only records for state-relevant segments the flag
    /// filter hides (see [`crate::conn`]).
    pub track_states: u8,
    /// 1 when [`HostSet`] lists addresses or networks: a segment must come
    /// from or go to one of them.
    pub use_hosts: u8,
    pub _pad: [u8; 2],
    /// A CPU wakes the ring buffer's reader at most once in this many
    /// nanoseconds (0: for every record); the reader looks again on a timer
    /// at least this long after each read that found records, so a record
    /// submitted without a wakeup waits at most about this long.
    pub wake_every_ns: u64,
    /// Also wake the reader when at least this many bytes wait in the ring
    /// buffer (0: never for that), so that a long `wake_every_ns` cannot let
    /// it fill up.
    pub wake_bytes: u64,
}

const _: () = assert!(core::mem::size_of::<FilterConfig>() == 24);

/// [`FilterConfig::wake_every_ns`] when lines go to a terminal or with `-l`:
/// records show up within about a millisecond.
pub const WAKE_EVERY_INTERACTIVE_NS: u64 = 1_000_000;

/// [`FilterConfig::wake_every_ns`] when output goes to a file or pipe (block
/// buffered, as tcpdump's, whose capture timeout is then a second): up to
/// 100 ms of records per wakeup.
pub const WAKE_EVERY_BATCH_NS: u64 = 100_000_000;

/// Words in the port bitmap: one bit for each of the 65536 ports.
pub const PORT_WORDS: usize = 1024;

/// Most ports compared one by one; a larger set is looked up in the bitmap.
pub const LISTED_PORTS: usize = 8;
const _: () = assert!(LISTED_PORTS == 8, "PortSet::contains_either_wire tests 8 slots");

/// [`PortSet::listed_len`] of a set larger than [`LISTED_PORTS`].
pub const PORTS_IN_BITMAP: u32 = u32::MAX;

/// The set of traced ports (read-only data in the kernel).
///
/// Up to [`LISTED_PORTS`] ports are compared one by one, as tcpdump's
/// compiled filter compares them: the verifier knows how many there are
/// (read-only data), so a frame costs a load and two compares per port. A
/// larger set is looked up in the bitmap, one bit per port (a dozen
/// instructions per port of the frame).
///
/// Both hold a port as its two bytes on the wire read little-endian (the
/// port byte-swapped), so that the kernel tests a port as it loads it: one
/// 16-bit load, no byte swap (see [`Headers::sport_wire`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSet {
    /// How many ports `listed` holds, or [`PORTS_IN_BITMAP`].
    pub listed_len: u32,
    pub _pad: u32,
    pub listed: [u16; LISTED_PORTS],
    /// Every port of the set, at bit `port.swap_bytes()`.
    pub words: [u64; PORT_WORDS],
}

const _: () = assert!(core::mem::size_of::<PortSet>() == 8 + 2 * LISTED_PORTS + 8192);

impl PortSet {
    pub const fn empty() -> Self {
        Self { listed_len: 0, _pad: 0, listed: [0; LISTED_PORTS], words: [0; PORT_WORDS] }
    }

    pub fn insert(&mut self, port: u16) {
        if self.contains(port) {
            return;
        }
        let wire = port.swap_bytes();
        self.words[(wire >> 6) as usize] |= 1 << (wire & 63);
        match self.listed.get_mut(self.listed_len as usize) {
            Some(slot) => {
                *slot = wire;
                self.listed_len += 1;
            }
            None => self.listed_len = PORTS_IN_BITMAP,
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        let wire = port.swap_bytes();
        self.contains_either_wire(wire as u64, wire as u64)
    }

    /// Whether the port of either `a` or `b` is in the set, each given as
    /// its two bytes on the wire read little-endian (see
    /// [`Headers::sport_wire`]).
    #[inline(always)]
    pub fn contains_either_wire(&self, a: u64, b: u64) -> bool {
        let n = self.listed_len;
        if n == PORTS_IN_BITMAP {
            return self.bit(a) || self.bit(b);
        }
        // Written out: LLVM keeps a loop here a loop, where the verifier,
        // which knows `n`, drops every test of it from the code it runs.
        let l = &self.listed;
        let at = |i: usize| n > i as u32 && (a == l[i] as u64 || b == l[i] as u64);
        at(0) || at(1) || at(2) || at(3) || at(4) || at(5) || at(6) || at(7)
    }

    #[inline(always)]
    fn bit(&self, wire: u64) -> bool {
        let i = ((wire >> 6) as usize) & (PORT_WORDS - 1);
        self.words[i] & (1 << (wire & 63)) != 0
    }
}

impl Default for PortSet {
    fn default() -> Self {
        Self::empty()
    }
}

/// Most `--host`/`--net` entries.
pub const MAX_HOSTS: usize = 16;

/// One `--host` or `--net`: the network's address (already masked) and mask,
/// as two little-endian words of the 16-byte address (IPv4 in the first 4
/// bytes, the rest zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostEntry {
    pub addr: [u64; 2],
    pub mask: [u64; 2],
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 7],
}

/// The addresses and networks of `--host`/`--net` (read-only data in the
/// kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSet {
    pub len: u32,
    pub _pad: u32,
    pub entries: [HostEntry; MAX_HOSTS],
}

const _: () = assert!(core::mem::size_of::<HostEntry>() == 40);
const _: () = assert!(core::mem::size_of::<HostSet>() == 8 + 40 * MAX_HOSTS);

/// The two little-endian words of a 16-byte address.
#[inline(always)]
fn words(a: &[u8; 16]) -> [u64; 2] {
    let w = |i: usize| u64::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6], a[i + 7]]);
    [w(0), w(8)]
}

impl HostSet {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub const fn empty() -> Self {
        Self {
            len: 0,
            _pad: 0,
            entries: [HostEntry { addr: [0; 2], mask: [0; 2], family: 0, _pad: [0; 7] }; MAX_HOSTS],
        }
    }

    /// Adds the network `addr`/`prefix` (`family` 4: the address in the first
    /// 4 bytes, `prefix` up to 32; 6: up to 128). False when full or the
    /// prefix is too long.
    pub fn push(&mut self, family: u8, addr: &[u8; 16], prefix: u8) -> bool {
        let bits = if family == 4 { 32 } else { 128 };
        if self.len as usize >= MAX_HOSTS || prefix > bits || (family != 4 && family != 6) {
            return false;
        }
        let mut mask = [0u8; 16];
        for (i, m) in mask.iter_mut().enumerate() {
            let have = (prefix as usize).saturating_sub(i * 8).min(8);
            *m = if have == 0 { 0 } else { 0xffu8 << (8 - have) };
        }
        let (a, m) = (words(addr), words(&mask));
        self.entries[self.len as usize] = HostEntry { addr: [a[0] & m[0], a[1] & m[1]], mask: m, family, _pad: [0; 7] };
        self.len += 1;
        true
    }

    /// Whether address `a` of `family` is in one of the entries.
    #[inline(always)]
    pub fn contains(&self, family: u8, a: &[u8; 16]) -> bool {
        let w = words(a);
        self.contains_words(family, w[0], w[1])
    }

    /// [`HostSet::contains`] on the address's two little-endian words.
    #[inline(always)]
    pub fn contains_words(&self, family: u8, w0: u64, w1: u64) -> bool {
        let mut i = 0;
        while i < MAX_HOSTS {
            let e = &self.entries[i];
            if e.family == family && w0 & e.mask[0] == e.addr[0] && w1 & e.mask[1] == e.addr[1] {
                return true;
            }
            i += 1;
        }
        false
    }
}

impl Default for HostSet {
    fn default() -> Self {
        Self::empty()
    }
}

/// Whether the segment comes from or goes to an entry of `hosts` (the
/// addresses are read from the frame: false when they are not there).
#[inline(always)]
pub fn matches_hosts<F: Frame>(f: &F, h: &Headers, hosts: &HostSet) -> bool {
    // As words at once: arrays on the BPF stack add up (512 bytes in all).
    let (src, dst) = if h.family == 4 {
        let Some(a) = f.load::<8>(h.l3_off + 12) else { return false };
        let v4 = |b: [u8; 4]| [u32::from_le_bytes(b) as u64, 0];
        (v4([a[0], a[1], a[2], a[3]]), v4([a[4], a[5], a[6], a[7]]))
    } else {
        let Some(s) = f.load::<16>(h.l3_off + 8) else { return false };
        let s = words(&s);
        let Some(d) = f.load::<16>(h.l3_off + 24) else { return false };
        (s, words(&d))
    };
    hosts.contains_words(h.family, src[0], src[1]) || hosts.contains_words(h.family, dst[0], dst[1])
}

/// Whether a parsed frame passes the filter. `ports` is consulted only when
/// `cfg.use_ports` is set; a frame cut before its ports (or flags) then cannot
/// match.
#[inline(always)]
pub fn matches(h: &Headers, cfg: &FilterConfig, ports: Option<&PortSet>) -> bool {
    matches_endpoints(h, cfg, ports) && matches_flags(h, cfg)
}

/// The family and port part of [`matches`].
#[inline(always)]
pub fn matches_endpoints(h: &Headers, cfg: &FilterConfig, ports: Option<&PortSet>) -> bool {
    if cfg.family != 0 && cfg.family != h.family {
        return false;
    }
    if cfg.use_ports != 0 {
        if h.tcp_fixed < 4 {
            return false;
        }
        match ports {
            Some(p) if p.contains_either_wire(h.sport_wire, h.dport_wire) => {}
            _ => return false,
        }
    }
    true
}

/// The flag part of [`matches`].
#[inline(always)]
pub fn matches_flags(h: &Headers, cfg: &FilterConfig) -> bool {
    cfg.flag_mask == 0 || h.tcp_flags & cfg.flag_mask != 0
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterConfig {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortSet {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for HostSet {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{LinkType, SliceFrame, parse_headers};

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    /// Up to eight ports are listed, more go to the bitmap alone; either
    /// way the set holds exactly the ports inserted (checked against a
    /// plain list on random sets of 0 to 20 ports, every port queried).
    #[test]
    fn port_sets_listed_and_in_the_bitmap() {
        let mut s = PortSet::empty();
        for p in [80, 443, 80] {
            s.insert(p);
        }
        assert_eq!((s.listed_len, &s.listed[..2]), (2, &[80u16.swap_bytes(), 443u16.swap_bytes()][..]));
        assert!(s.contains(80) && s.contains(443) && !s.contains(8080) && !s.contains(0));
        let wire = |p: u16| u64::from(p.swap_bytes());
        assert!(s.contains_either_wire(wire(8080), wire(443)));
        assert!(!s.contains_either_wire(wire(8080), wire(8443)));
        for p in 1..=6 {
            s.insert(p);
        }
        assert_eq!(s.listed_len, 8);
        s.insert(9);
        assert_eq!(s.listed_len, PORTS_IN_BITMAP);
        assert!([80, 443, 1, 6, 9].iter().all(|&p| s.contains(p)) && !s.contains(7) && !s.contains(8080));

        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..120 {
            let n = (next() % 21) as usize;
            // Small ports sometimes, so that sets share ports and repeat them.
            let ports: [u16; 20] =
                core::array::from_fn(|_| if round % 2 == 0 { (next() % 16) as u16 } else { next() as u16 });
            let ports = &ports[..n];
            let mut s = PortSet::empty();
            for &p in ports {
                s.insert(p);
            }
            let distinct = (0..n).filter(|&i| !ports[..i].contains(&ports[i])).count();
            let want_len = if distinct > LISTED_PORTS { PORTS_IN_BITMAP } else { distinct as u32 };
            assert_eq!(s.listed_len, want_len, "{ports:?}");
            for q in 0..=u16::MAX {
                assert_eq!(s.contains(q), ports.contains(&q), "port {q} in {ports:?}");
            }
        }
    }

    #[test]
    fn networks_and_hosts() {
        let mut s = HostSet::empty();
        assert!(s.push(4, &v4([10, 1, 2, 3]), 32));
        assert!(s.push(4, &v4([192, 168, 7, 99]), 24));
        let mut six = [0u8; 16];
        six[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert!(s.push(6, &six, 32));
        assert!(s.contains(4, &v4([10, 1, 2, 3])));
        assert!(!s.contains(4, &v4([10, 1, 2, 4])));
        assert!(s.contains(4, &v4([192, 168, 7, 1])));
        assert!(!s.contains(4, &v4([192, 168, 8, 1])));
        let mut in6 = six;
        in6[15] = 1;
        assert!(s.contains(6, &in6));
        in6[3] = 0xb9;
        assert!(!s.contains(6, &in6));
        // Families are apart: 10.1.2.3's bytes as IPv6 do not match.
        assert!(!s.contains(6, &v4([10, 1, 2, 3])));
        // Prefix 0 matches the whole family; too long a prefix is refused.
        let mut all = HostSet::empty();
        assert!(all.push(4, &v4([1, 2, 3, 4]), 0));
        assert!(all.contains(4, &v4([8, 8, 8, 8])) && !all.contains(6, &[0; 16]));
        assert!(!all.push(4, &v4([1, 2, 3, 4]), 33) && !all.push(6, &[0; 16], 129));
        for _ in 1..MAX_HOSTS {
            assert!(all.push(6, &[0; 16], 128));
        }
        assert!(!all.push(6, &[0; 16], 128), "full");
    }

    #[test]
    fn either_address_of_a_frame() {
        // Ethernet + IPv4 192.0.2.10 -> 198.51.100.20 + a TCP header.
        let mut f = [0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14..34].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 10, 198, 51, 100, 20]);
        f[34..54]
            .copy_from_slice(&[0x1f, 0x90, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        let frame = SliceFrame::full(&f);
        let h = parse_headers(&frame, LinkType::Ethernet).unwrap();
        let one = |a: [u8; 4], p: u8| {
            let mut s = HostSet::empty();
            s.push(4, &v4(a), p);
            matches_hosts(&frame, &h, &s)
        };
        assert!(one([192, 0, 2, 10], 32));
        assert!(one([198, 51, 100, 0], 24));
        assert!(!one([198, 51, 101, 0], 24));
        // Cut before the addresses: no match.
        let cut = SliceFrame::full(&f[..14 + 14]);
        let mut s = HostSet::empty();
        s.push(4, &v4([192, 0, 2, 10]), 32);
        assert!(matches_hosts(&frame, &h, &s) && !matches_hosts(&cut, &h, &s));
    }
}
