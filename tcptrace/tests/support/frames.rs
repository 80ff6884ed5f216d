//! Crafted Ethernet frames for the tests (checksums are left at zero: neither
//! test_run nor the parser looks at them).
#![allow(dead_code)]

#[derive(Clone, Debug)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Flags byte plus AE in bit 8.
    pub flags: u16,
    pub win: u16,
    pub urg: u16,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
    /// Data offset in 32-bit words to write instead of the true one.
    pub doff_words: Option<u8>,
}

impl Default for Tcp {
    fn default() -> Self {
        Self {
            sport: 40000,
            dport: 8080,
            seq: 1000,
            ack: 0,
            flags: 0x02,
            win: 64240,
            urg: 0,
            options: vec![],
            payload: vec![],
            doff_words: None,
        }
    }
}

impl Tcp {
    pub fn bytes(&self) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let doff = self.doff_words.unwrap_or(((20 + opts.len()) / 4) as u8);
        let mut b = Vec::new();
        b.extend(self.sport.to_be_bytes());
        b.extend(self.dport.to_be_bytes());
        b.extend(self.seq.to_be_bytes());
        b.extend(self.ack.to_be_bytes());
        b.push((doff << 4) | ((self.flags >> 8) as u8 & 1));
        b.push(self.flags as u8);
        b.extend(self.win.to_be_bytes());
        b.extend([0, 0]);
        b.extend(self.urg.to_be_bytes());
        b.extend(&opts);
        b.extend(&self.payload);
        b
    }
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

pub fn ethernet(ethertype: u16, vlans: &[(u16, u16)], l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(MAC_B);
    f.extend(MAC_A);
    for &(tpid, tci) in vlans {
        f.extend(tpid.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(l3);
    f
}

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    assert_eq!(ihl % 4, 0);
    let total = (ihl + l4.len()) as u16;
    let mut b = vec![0x40 | (ihl / 4) as u8, 0x10];
    b.extend(total.to_be_bytes());
    b.extend(0x1234u16.to_be_bytes());
    b.extend(frag.to_be_bytes());
    b.push(64);
    b.push(proto);
    b.extend([0, 0]);
    b.extend(src);
    b.extend(dst);
    b.extend(options);
    b.extend(l4);
    b
}

/// IPv6 with extension headers given as (type, body) where body excludes the
/// next-header byte; routing/hop-by-hop/destination bodies are padded to 8n-1
/// bytes with the length byte computed; fragment bodies must be 7 bytes.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], ext: &[(u8, Vec<u8>)], l4_proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, (kind, body)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map(|e| e.0).unwrap_or(l4_proto);
        chain.push(next);
        if *kind == 44 {
            assert_eq!(body.len(), 7);
            chain.extend(body);
        } else {
            let mut body = body.clone();
            while (body.len() + 2) % 8 != 0 {
                body.push(0);
            }
            chain.push(((body.len() + 2) / 8 - 1) as u8);
            chain.extend(body);
        }
    }
    let first = ext.first().map(|e| e.0).unwrap_or(l4_proto);
    let plen = (chain.len() + l4.len()) as u16;
    let mut b = vec![0x60, 0x00, 0x00, 0x00];
    b.extend(plen.to_be_bytes());
    b.push(first);
    b.push(64);
    b.extend(src);
    b.extend(dst);
    b.extend(chain);
    b.extend(l4);
    b
}

pub const A4: [u8; 4] = [192, 0, 2, 10];
pub const B4: [u8; 4] = [198, 51, 100, 20];
pub const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];

pub fn tcp4(tcp: &Tcp) -> Vec<u8> {
    ethernet(0x0800, &[], &ipv4(A4, B4, 6, 0x4000, &[], &tcp.bytes()))
}

pub fn tcp6(tcp: &Tcp) -> Vec<u8> {
    ethernet(0x86dd, &[], &ipv6(A6, B6, &[], 6, &tcp.bytes()))
}

/// Typical SYN options: mss 1460, sackOK, TS, nop, wscale 7.
pub fn syn_options() -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    o.extend(100u32.to_be_bytes());
    o.extend(0u32.to_be_bytes());
    o.extend([1, 3, 3, 7]);
    o
}

/// A small seeded PRNG (xorshift64*) so that random tests are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A varied set of well-formed and malformed frames covering the parser's paths.
pub fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    for flags in 0u16..=0x1ff {
        let t = Tcp { flags, ack: if flags & 0x10 != 0 { 77 } else { 0 }, ..Tcp::default() };
        v.push(("flags", tcp4(&t)));
    }
    v.push(("syn-options", tcp4(&Tcp { options: syn_options(), ..Tcp::default() })));
    v.push(("syn6-options", tcp6(&Tcp { options: syn_options(), ..Tcp::default() })));
    let sack = vec![1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
    v.push(("sack", tcp4(&Tcp { flags: 0x10, options: sack, ..Tcp::default() })));
    v.push(("max-options", tcp4(&Tcp { flags: 0x10, options: vec![1; 40], ..Tcp::default() })));
    v.push(("data", tcp4(&Tcp { flags: 0x18, payload: vec![0x41; 100], ..Tcp::default() })));
    v.push(("doff-short", tcp4(&Tcp { doff_words: Some(4), ..Tcp::default() })));
    v.push(("doff-long", tcp4(&Tcp { doff_words: Some(15), ..Tcp::default() })));
    let t = Tcp::default().bytes();
    v.push(("vlan", ethernet(0x0800, &[(0x8100, 10)], &ipv4(A4, B4, 6, 0, &[], &t))));
    v.push(("qinq", ethernet(0x0800, &[(0x88a8, 100), (0x8100, 10)], &ipv4(A4, B4, 6, 0, &[], &t))));
    v.push(("ipv4-options", ethernet(0x0800, &[], &ipv4(A4, B4, 6, 0, &[1, 1, 1, 0], &t))));
    v.push(("first-fragment", ethernet(0x0800, &[], &ipv4(A4, B4, 6, 0x2000, &[], &t))));
    v.push(("later-fragment", ethernet(0x0800, &[], &ipv4(A4, B4, 6, 0x2003, &[], &t))));
    v.push(("udp", ethernet(0x0800, &[], &ipv4(A4, B4, 17, 0, &[], &t))));
    v.push(("arp", ethernet(0x0806, &[], &[0u8; 28])));
    let mut ip_long = ipv4(A4, B4, 6, 0, &[], &t);
    ip_long[2..4].copy_from_slice(&100u16.to_be_bytes());
    v.push(("ip-len-beyond-frame", ethernet(0x0800, &[], &ip_long)));
    let hbh = (0u8, vec![1, 4, 0, 0, 0, 0]);
    let dst = (60u8, vec![1, 4, 0, 0, 0, 0]);
    let rt = (43u8, {
        let mut b = vec![0, 1];
        b.extend([0; 4]);
        b.extend(B6);
        b
    });
    let frag0 = (44u8, vec![0, 0, 0, 0, 0, 0, 42]);
    let frag1 = (44u8, vec![0, 0, 0x10, 0, 0, 0, 42]);
    v.push(("ipv6-hbh", ethernet(0x86dd, &[], &ipv6(A6, B6, std::slice::from_ref(&hbh), 6, &t))));
    v.push(("ipv6-chain", ethernet(0x86dd, &[], &ipv6(A6, B6, &[hbh.clone(), rt, dst.clone()], 6, &t))));
    v.push(("ipv6-frag0", ethernet(0x86dd, &[], &ipv6(A6, B6, std::slice::from_ref(&frag0), 6, &t))));
    v.push(("ipv6-frag-later", ethernet(0x86dd, &[], &ipv6(A6, B6, &[frag1], 6, &t))));
    let long: Vec<_> = (0..7).map(|_| dst.clone()).collect();
    v.push(("ipv6-chain-too-long", ethernet(0x86dd, &[], &ipv6(A6, B6, &long, 6, &t))));
    v.push(("ipv6-vlan", ethernet(0x86dd, &[(0x8100, 5)], &ipv6(A6, B6, &[], 6, &t))));
    // Routing headers: segment routing (type 4) with three segments, a tag
    // and flags; mobile IPv6 (type 2); the longest one there can be (2048
    // bytes), before a fragment header.
    let srh = (43u8, {
        let mut b = vec![4, 2, 2, 0x80, 0xbe, 0xef];
        for last in [0xa, 0xb, 0xc] {
            b.extend([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
        }
        b
    });
    v.push(("ipv6-srh", ethernet(0x86dd, &[], &ipv6(A6, B6, std::slice::from_ref(&srh), 6, &t))));
    let mip = (43u8, [vec![2, 1, 0, 0, 0, 0], A6.to_vec()].concat());
    v.push(("ipv6-rt2", ethernet(0x86dd, &[], &ipv6(A6, B6, &[hbh.clone(), mip], 6, &t))));
    let longest = (
        43u8,
        [
            vec![0, 0, 0, 0, 0, 0],
            (0..127).flat_map(|i| [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8 + 1]).collect(),
            vec![9; 8],
        ]
        .concat(),
    );
    v.push(("ipv6-rt-longest", ethernet(0x86dd, &[], &ipv6(A6, B6, &[longest, frag0.clone()], 6, &t))));
    let full = tcp4(&Tcp { options: syn_options(), ..Tcp::default() });
    for cut in [14, 20, 33, 34, 36, 38, 40, 54, 60] {
        v.push(("truncated", full[..cut].to_vec()));
    }
    v
}
