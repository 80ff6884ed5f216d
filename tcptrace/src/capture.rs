//! Capture-file reader: pcap (microsecond and nanosecond, either byte order,
//! and the old "Kuznetzov" variant) and pcapng (SHB/IDB/EPB/SPB/OPB; link type
//! and `if_tsresol`/`if_tsoffset` per interface).
//!
//! Timestamps keep their raw fraction, as libpcap hands them to tcpdump: a
//! pcap record's microsecond field of 1,000,000 or more is not normalised.
//! pcapng timestamps are converted to nanoseconds (tcpdump's microsecond
//! output is then the same as libpcap's direct conversion).
//!
//! Hand-written rather than taken from the `pcap-file` crate: that crate turns
//! timestamps into `Duration`s, which loses out-of-range fractions.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use tcptrace_common::LinkType;

use crate::format::Timestamp;

/// Largest frame libpcap accepts (`MAXIMUM_SNAPLEN`).
pub const MAX_SNAPLEN: u32 = 262_144;
/// Largest pcapng block we accept (libpcap's limit is 16 MiB).
const MAX_BLOCK: u32 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    // The io::Error is in the message, not a `source` (anyhow's `{:#}`
    // would print it twice).
    /// The caller names the file (see `offline::run`).
    #[error("cannot open: {error}")]
    Open { error: io::Error },
    #[error("read error at byte {offset}: {error}")]
    Io { offset: u64, error: io::Error },
    #[error("unknown file format (magic number {magic:#010x} at byte 0)")]
    BadMagic { magic: u32 },
    #[error("empty file: no file header at byte 0")]
    Empty,
    #[error("truncated capture file at byte {offset}: {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("bad capture file at byte {offset}: {what}")]
    Bad { offset: u64, what: String },
    #[error("unsupported link type {linktype} (at byte {offset})")]
    LinkType { offset: u64, linktype: u32 },
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Packet {
    pub ts: Timestamp,
    pub link: LinkType,
    /// Frame length on the wire.
    pub wire_len: u32,
    /// The captured bytes (at most `wire_len`, unless the file says otherwise).
    pub data: Vec<u8>,
    /// Byte offset of the record in the file.
    pub offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct Iface {
    link: LinkType,
    snaplen: u32,
    /// Timestamp units per second.
    units: u64,
    tsoffset: i64,
}

enum Format {
    Pcap { swapped: bool, nanos: bool, hdr_len: usize, lengths: Lengths, link: LinkType, snap: u32 },
    Pcapng { big_endian: bool, ifaces: Vec<Iface> },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lengths {
    Normal,
    Swapped,
    MaybeSwapped,
}

/// Reads frames one at a time from a pcap or pcapng stream.
pub struct CaptureReader<R: Read> {
    r: R,
    offset: u64,
    format: Format,
    /// A frame buffer given back with [`CaptureReader::recycle`], and a
    /// pcapng block's: kept so that reading a frame allocates nothing (an
    /// allocation and a free per frame showed at 4–5% of `-r`'s profile).
    spare: Vec<u8>,
    block: Vec<u8>,
}

/// Opens a file, or standard input for `-`.
pub fn open(path: &Path) -> Result<CaptureReader<Box<dyn Read>>, CaptureError> {
    let r: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let f = File::open(path).map_err(|error| CaptureError::Open { error })?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    CaptureReader::new(r)
}

/// Reads as much of `buf` as there is; returns the count.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn u16_at(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) }
}

fn u32_at(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) }
}

fn u64_at(b: &[u8], big: bool) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    if big { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) }
}

const PCAP_MICRO: u32 = 0xa1b2_c3d4;
const PCAP_NANO: u32 = 0xa1b2_3c4d;
const PCAP_KUZNETZOV: u32 = 0xa1b2_cd34;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

fn link_of(linktype: u32, offset: u64) -> Result<LinkType, CaptureError> {
    // LT_LINKTYPE: the low 26 bits (the rest carry FCS information).
    let lt = linktype & 0x03ff_ffff;
    LinkType::from_pcap(lt).ok_or(CaptureError::LinkType { offset, linktype: lt })
}

impl<R: Read> CaptureReader<R> {
    pub fn new(mut r: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        let n = read_full(&mut r, &mut magic).map_err(|error| CaptureError::Io { offset: 0, error })?;
        if n == 0 {
            return Err(CaptureError::Empty);
        }
        if n < 4 {
            return Err(CaptureError::Truncated { offset: 0, what: "file header" });
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        if le == PCAPNG_SHB {
            let mut me = Self {
                r,
                offset: 0,
                format: Format::Pcapng { big_endian: false, ifaces: Vec::new() },
                spare: Vec::new(),
                block: Vec::new(),
            };
            me.read_shb()?;
            return Ok(me);
        }
        let (swapped_magic, big) = if [PCAP_MICRO, PCAP_NANO, PCAP_KUZNETZOV].contains(&le) {
            (le, false)
        } else if [PCAP_MICRO, PCAP_NANO, PCAP_KUZNETZOV].contains(&be) {
            (be, true)
        } else {
            return Err(CaptureError::BadMagic { magic: le });
        };
        let mut hdr = [0u8; 20];
        let n = read_full(&mut r, &mut hdr).map_err(|error| CaptureError::Io { offset: 4, error })?;
        if n < 20 {
            return Err(CaptureError::Truncated { offset: 4 + n as u64, what: "pcap file header" });
        }
        let major = u16_at(&hdr[0..], big);
        let minor = u16_at(&hdr[2..], big);
        if !((major == 2 && minor <= 4) || (major == 543 && minor == 0)) {
            return Err(CaptureError::Bad { offset: 4, what: format!("unsupported pcap version {major}.{minor}") });
        }
        let snaplen = u32_at(&hdr[12..], big);
        let linktype = u32_at(&hdr[16..], big);
        let link = link_of(linktype, 20)?;
        let lengths = match (major, minor) {
            (2, m) if m < 3 => Lengths::Swapped,
            (2, 3) => Lengths::MaybeSwapped,
            (543, _) => Lengths::Swapped,
            _ => Lengths::Normal,
        };
        let snap = if snaplen == 0 || snaplen > MAX_SNAPLEN { MAX_SNAPLEN } else { snaplen };
        Ok(Self {
            spare: Vec::new(),
            block: Vec::new(),
            r,
            offset: 24,
            format: Format::Pcap {
                swapped: big,
                nanos: swapped_magic == PCAP_NANO,
                hdr_len: if swapped_magic == PCAP_KUZNETZOV { 24 } else { 16 },
                lengths,
                link,
                snap,
            },
        })
    }

    /// Gives back a frame's buffer (`Packet::data`) for the next frame to
    /// use.
    pub fn recycle(&mut self, data: Vec<u8>) {
        self.spare = data;
    }

    /// A buffer of `n` bytes for a frame's data (their values are not kept).
    fn frame_buffer(&mut self, n: usize) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.spare);
        data.clear();
        data.resize(n, 0);
        data
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, CaptureError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
        }
    }

    fn read_exact_at(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), CaptureError> {
        let at = self.offset;
        let n = read_full(&mut self.r, buf).map_err(|error| CaptureError::Io { offset: at, error })?;
        self.offset += n as u64;
        if n < buf.len() {
            return Err(CaptureError::Truncated { offset: at, what });
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64, what: &'static str) -> Result<(), CaptureError> {
        let mut buf = [0u8; 4096];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.read_exact_at(&mut buf[..k], what)?;
            n -= k as u64;
        }
        Ok(())
    }

    fn next_pcap(&mut self) -> Result<Option<Packet>, CaptureError> {
        let Format::Pcap { swapped, nanos, hdr_len, lengths, link, snap } = self.format else { unreachable!() };
        let at = self.offset;
        let mut hdr = [0u8; 24];
        let hdr = &mut hdr[..hdr_len];
        let n = read_full(&mut self.r, hdr).map_err(|error| CaptureError::Io { offset: at, error })?;
        if n == 0 {
            return Ok(None);
        }
        self.offset += n as u64;
        if n < hdr_len {
            return Err(CaptureError::Truncated { offset: at, what: "record header" });
        }
        // The header fields are signed 32-bit values (struct pcap_timeval).
        let sec = u32_at(&hdr[0..], swapped) as i32 as i64;
        let frac = u32_at(&hdr[4..], swapped) as i32 as i64 as u64;
        let mut caplen = u32_at(&hdr[8..], swapped);
        let mut len = u32_at(&hdr[12..], swapped);
        match lengths {
            Lengths::Normal => {}
            Lengths::MaybeSwapped if caplen <= len => {}
            _ => std::mem::swap(&mut caplen, &mut len),
        }
        if caplen > MAX_SNAPLEN {
            return Err(CaptureError::Bad {
                offset: at,
                what: format!("invalid packet capture length {caplen}, bigger than maximum of {MAX_SNAPLEN}"),
            });
        }
        let keep = caplen.min(snap);
        let mut data = self.frame_buffer(keep as usize);
        self.read_exact_at(&mut data, "packet data")?;
        if caplen > keep {
            self.skip((caplen - keep) as u64, "packet data")?;
        }
        let ts = if nanos { Timestamp::nanos(sec, frac) } else { Timestamp::micros(sec, frac) };
        Ok(Some(Packet { ts, link, wire_len: len, data, offset: at }))
    }

    fn pcapng_big(&self) -> bool {
        match &self.format {
            Format::Pcapng { big_endian, .. } => *big_endian,
            _ => false,
        }
    }

    /// Reads a section header block whose first 4 bytes were `type_bytes`.
    fn read_shb(&mut self) -> Result<(), CaptureError> {
        let at = self.offset;
        self.offset += 4;
        let mut b = [0u8; 8];
        self.read_exact_at(&mut b, "section header block")?;
        let big = match u32::from_le_bytes([b[4], b[5], b[6], b[7]]) {
            BYTE_ORDER_MAGIC => false,
            x if x.swap_bytes() == BYTE_ORDER_MAGIC => true,
            _ => return Err(CaptureError::Bad { offset: at, what: "bad byte-order magic in section header".into() }),
        };
        let total = u32_at(&b[0..], big);
        if total < 28 || !total.is_multiple_of(4) || total > MAX_BLOCK {
            return Err(CaptureError::Bad { offset: at, what: format!("bad section header block length {total}") });
        }
        let mut rest = vec![0u8; total as usize - 12];
        self.read_exact_at(&mut rest, "section header block")?;
        let major = u16_at(&rest[0..], big);
        if major != 1 {
            return Err(CaptureError::Bad { offset: at, what: format!("unsupported pcapng version {major}") });
        }
        self.format = Format::Pcapng { big_endian: big, ifaces: Vec::new() };
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet>, CaptureError> {
        loop {
            let at = self.offset;
            let mut head = [0u8; 8];
            let n = read_full(&mut self.r, &mut head).map_err(|error| CaptureError::Io { offset: at, error })?;
            if n == 0 {
                return Ok(None);
            }
            if n < 8 {
                self.offset += n as u64;
                return Err(CaptureError::Truncated { offset: at, what: "block header" });
            }
            if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == PCAPNG_SHB {
                // A new section: byte order and interfaces start over.
                self.offset = at + 8;
                let big = match u32::from_le_bytes({
                    let mut m = [0u8; 4];
                    self.read_exact_at(&mut m, "section header block")?;
                    m
                }) {
                    BYTE_ORDER_MAGIC => false,
                    x if x.swap_bytes() == BYTE_ORDER_MAGIC => true,
                    _ => {
                        return Err(CaptureError::Bad {
                            offset: at,
                            what: "bad byte-order magic in section header".into(),
                        });
                    }
                };
                let total = u32_at(&head[4..], big);
                if total < 28 || !total.is_multiple_of(4) || total > MAX_BLOCK {
                    return Err(CaptureError::Bad {
                        offset: at,
                        what: format!("bad section header block length {total}"),
                    });
                }
                self.skip(total as u64 - 12, "section header block")?;
                self.format = Format::Pcapng { big_endian: big, ifaces: Vec::new() };
                continue;
            }
            self.offset += 8;
            let big = self.pcapng_big();
            let btype = u32_at(&head[0..], big);
            let total = u32_at(&head[4..], big);
            if total < 12 || !total.is_multiple_of(4) || total > MAX_BLOCK {
                return Err(CaptureError::Bad { offset: at, what: format!("bad block length {total}") });
            }
            let mut block = std::mem::take(&mut self.block);
            block.clear();
            block.resize(total as usize - 8, 0);
            self.read_exact_at(&mut block, "block")?;
            let body = &block[..block.len() - 4];
            let packet = match btype {
                1 => self.read_idb(body, at, big).map(|()| None),
                6 | 2 | 3 => self.packet_block(btype, body, at, big),
                _ => Ok(None),
            };
            self.block = block;
            if let Some(p) = packet? {
                return Ok(Some(p));
            }
        }
    }

    fn read_idb(&mut self, body: &[u8], at: u64, big: bool) -> Result<(), CaptureError> {
        if body.len() < 8 {
            return Err(CaptureError::Bad { offset: at, what: "interface description block too short".into() });
        }
        let linktype = u16_at(&body[0..], big) as u32;
        let snaplen = u32_at(&body[4..], big);
        let link = link_of(linktype, at)?;
        let mut units: u64 = 1_000_000;
        let mut tsoffset = 0i64;
        let mut o = &body[8..];
        while o.len() >= 4 {
            let code = u16_at(o, big);
            let len = u16_at(&o[2..], big) as usize;
            let padded = (len + 3) & !3;
            if o.len() < 4 + len {
                return Err(CaptureError::Bad { offset: at, what: "interface option runs past the block".into() });
            }
            let v = &o[4..4 + len];
            match code {
                0 => break,
                9 if len == 1 => {
                    let r = v[0];
                    let p = (r & 0x7f) as u32;
                    units = if r & 0x80 != 0 {
                        if p > 63 {
                            return Err(CaptureError::Bad { offset: at, what: format!("if_tsresol 2^-{p} too fine") });
                        }
                        1u64 << p
                    } else {
                        if p > 19 {
                            return Err(CaptureError::Bad { offset: at, what: format!("if_tsresol 10^-{p} too fine") });
                        }
                        10u64.pow(p)
                    };
                }
                14 if len == 8 => tsoffset = u64_at(v, big) as i64,
                _ => {}
            }
            o = &o[(4 + padded).min(o.len())..];
        }
        let snaplen = if snaplen == 0 || snaplen > MAX_SNAPLEN { MAX_SNAPLEN } else { snaplen };
        if let Format::Pcapng { ifaces, .. } = &mut self.format {
            ifaces.push(Iface { link, snaplen, units, tsoffset });
        }
        Ok(())
    }

    fn packet_block(&mut self, btype: u32, body: &[u8], at: u64, big: bool) -> Result<Option<Packet>, CaptureError> {
        let Format::Pcapng { ifaces, .. } = &self.format else { unreachable!() };
        let short = || CaptureError::Bad { offset: at, what: "packet block too short".into() };
        let (iface, t, caplen, len, data_off) = match btype {
            6 => {
                if body.len() < 20 {
                    return Err(short());
                }
                let iface = u32_at(&body[0..], big);
                let t = (u32_at(&body[4..], big) as u64) << 32 | u32_at(&body[8..], big) as u64;
                (iface, Some(t), u32_at(&body[12..], big), u32_at(&body[16..], big), 20usize)
            }
            2 => {
                if body.len() < 20 {
                    return Err(short());
                }
                let iface = u16_at(&body[0..], big) as u32;
                let t = (u32_at(&body[4..], big) as u64) << 32 | u32_at(&body[8..], big) as u64;
                (iface, Some(t), u32_at(&body[12..], big), u32_at(&body[16..], big), 20usize)
            }
            _ => {
                if body.len() < 4 {
                    return Err(short());
                }
                let len = u32_at(&body[0..], big);
                let snap = ifaces.first().map(|i| i.snaplen).unwrap_or(MAX_SNAPLEN);
                let cap = len.min(snap).min((body.len() - 4) as u32);
                (0, None, cap, len, 4usize)
            }
        };
        let Some(ifc) = ifaces.get(iface as usize).copied() else {
            return Err(CaptureError::Bad { offset: at, what: format!("packet on unknown interface {iface}") });
        };
        if caplen as usize > body.len() - data_off {
            return Err(CaptureError::Bad {
                offset: at,
                what: format!("captured length {caplen} runs past the block"),
            });
        }
        if caplen > MAX_SNAPLEN {
            return Err(CaptureError::Bad {
                offset: at,
                what: format!("invalid packet capture length {caplen}, bigger than maximum of {MAX_SNAPLEN}"),
            });
        }
        let keep = caplen.min(ifc.snaplen) as usize;
        let mut data = std::mem::take(&mut self.spare);
        data.clear();
        data.extend_from_slice(&body[data_off..data_off + keep]);
        let ts = match t {
            Some(t) => {
                // Wraps as libpcap's unsigned arithmetic does (no overflow panic).
                let sec = ((t / ifc.units) as i64).wrapping_add(ifc.tsoffset);
                let rem = (t % ifc.units) as u128;
                let ns = rem * 1_000_000_000 / ifc.units as u128;
                Timestamp::nanos(sec, ns as u64)
            }
            None => Timestamp::micros(0, 0),
        };
        Ok(Some(Packet { ts, link: ifc.link, wire_len: len, data, offset: at }))
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Packet, CaptureError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_packet().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn pcap_bytes(big: bool, magic: u32, minor: u16, recs: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        let w32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
        w32(&mut v, magic);
        let w16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
        w16(&mut v, 2);
        w16(&mut v, minor);
        for x in [0, 0, 65535, 101] {
            w32(&mut v, x);
        }
        for (sec, frac, data, len) in recs {
            for x in [*sec, *frac, data.len() as u32, *len] {
                w32(&mut v, x);
            }
            v.extend_from_slice(data);
        }
        v
    }

    #[test]
    fn pcap_byte_orders_and_raw_fractions() {
        for big in [false, true] {
            let b = pcap_bytes(big, PCAP_NANO, 4, &[(7, 1_500_000_000, b"\x45abc", 60)]);
            let mut r = CaptureReader::new(Cursor::new(b)).unwrap();
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(p.ts, Timestamp::nanos(7, 1_500_000_000));
            assert_eq!((p.wire_len, p.data.as_slice(), p.link), (60, &b"\x45abc"[..], LinkType::RawIp));
            assert!(r.next_packet().unwrap().is_none());
        }
        // pcap's fields are signed: 0x80000000 µs is kept as tcpdump sees it.
        let b = pcap_bytes(false, PCAP_MICRO, 4, &[(7, 0x8000_0000, b"x", 1)]);
        let p = CaptureReader::new(Cursor::new(b)).unwrap().next_packet().unwrap().unwrap();
        assert_eq!(p.ts.frac as i64, -2_147_483_648);
        // Version 2.3 with caplen > len: the lengths were written swapped.
        let b = pcap_bytes(false, PCAP_MICRO, 3, &[(1, 0, b"abcd", 2)]);
        let mut r = CaptureReader::new(Cursor::new(b)).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!((p.wire_len, p.data.len()), (4, 2));
    }

    /// A buffer given back holds nothing of its last frame in the next one
    /// (pcap; pcapng copies its frames from the block).
    #[test]
    fn recycled_buffers_give_the_same_frames() {
        let frames: [&[u8]; 4] = [b"a long first frame", b"xy", b"", b"0123456789"];
        let recs: Vec<_> = frames.iter().map(|f| (1, 0, *f, f.len() as u32)).collect();
        let b = pcap_bytes(false, PCAP_MICRO, 4, &recs);
        let mut r = CaptureReader::new(Cursor::new(b)).unwrap();
        for f in frames {
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(p.data, f);
            r.recycle(p.data);
        }
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn truncated_record_names_the_offset() {
        let mut b = pcap_bytes(false, PCAP_MICRO, 4, &[(1, 0, b"abcd", 4), (2, 0, b"efgh", 4)]);
        b.truncate(b.len() - 2);
        let mut r = CaptureReader::new(Cursor::new(b)).unwrap();
        assert!(r.next_packet().unwrap().is_some());
        let e = r.next_packet().unwrap_err();
        assert!(matches!(e, CaptureError::Truncated { offset: 60, what: "packet data" }), "{e:?}");
        assert!(e.to_string().contains("at byte 60"));
    }

    /// An `if_tsoffset` and a timestamp at the ends of their ranges wrap
    /// instead of overflowing.
    #[test]
    fn pcapng_timestamp_extremes() {
        let block = |v: &mut Vec<u8>, btype: u32, body: &[u8]| {
            let total = (12 + body.len()) as u32;
            v.extend(btype.to_le_bytes());
            v.extend(total.to_le_bytes());
            v.extend(body);
            v.extend(total.to_le_bytes());
        };
        let mut v = Vec::new();
        let mut shb = BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        shb.extend([1, 0, 0, 0]);
        shb.extend((-1i64).to_le_bytes());
        block(&mut v, PCAPNG_SHB, &shb);
        let mut idb = vec![1, 0, 0, 0, 0, 0, 0, 0];
        idb.extend([14, 0, 8, 0]);
        idb.extend(i64::MIN.to_le_bytes());
        idb.extend([9, 0, 1, 0, 0x80, 0, 0, 0]);
        block(&mut v, 1, &idb);
        let mut epb = vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        epb.extend([4, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]);
        block(&mut v, 6, &epb);
        let mut r = CaptureReader::new(Cursor::new(v.clone())).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.ts.sec, i64::MAX);
        assert_eq!(p.data, [1, 2, 3, 4]);
        // The same through a recycled buffer that held a longer frame.
        let mut r = CaptureReader::new(Cursor::new(v)).unwrap();
        r.recycle(vec![9; 64]);
        assert_eq!(r.next_packet().unwrap().unwrap().data, [1, 2, 3, 4]);
    }

    #[test]
    fn unsupported_link_type() {
        let mut b = pcap_bytes(false, PCAP_MICRO, 4, &[]);
        b[20..24].copy_from_slice(&105u32.to_le_bytes());
        assert!(matches!(CaptureReader::new(Cursor::new(b)), Err(CaptureError::LinkType { linktype: 105, .. })));
    }

    /// Corpus files with bytes flipped or cut: errors, never panics.
    #[test]
    fn mangled_files_do_not_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pcap");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        let mut rng: u64 = 12345;
        for e in entries {
            let path = e.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
                continue;
            }
            let orig = std::fs::read(&path).unwrap();
            let orig = &orig[..orig.len().min(4000)];
            for round in 0..60 {
                let mut b = orig.to_vec();
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % b.len();
                if round % 2 == 0 {
                    b[i] = (rng >> 40) as u8;
                } else {
                    b.truncate(i);
                }
                if let Ok(r) = CaptureReader::new(Cursor::new(b)) {
                    for p in r.take(200) {
                        if p.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
}
