//! `-w FILE`: the traced packets as a pcap file that tcpdump and tshark read.
//!
//! The kernel sends parsed header fields ([`PacketRecord`]), not packet bytes,
//! so each packet is written as a reconstructed IP packet, link type
//! LINKTYPE_RAW (101): the IP header (with, for IPv6, synthesized extension
//! headers of the types the record lists), then the TCP header with the
//! option bytes the record has. No payload is written: the record's `caplen`
//! is the header bytes, its `orig_len` the IP packet's length on the wire.
//! Reading the file back through the parser gives the same record (except the
//! fields the record does not carry), so `tcpdump -r` prints the same line up
//! to `length N`.
//!
//! The pcap format itself (global header, record headers) is encoded by the
//! `pcap-file` crate.

use std::{
    borrow::Cow,
    io::{self, Write},
    path::Path,
};

use anyhow::anyhow;
use byteorder_slice::{BigEndian, LittleEndian};
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, RawPcapPacket},
};
use tcptrace_common::{
    PacketRecord,
    record::{MAX_EXT, flags},
};

use crate::{cli::Args, format::Timestamp, output::Output};

/// The snapshot length in the file header: tcpdump's default.
pub const SNAPLEN: u32 = 262_144;

/// LINKTYPE_RAW: each record starts with the IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;

const IPPROTO_TCP: u8 = 6;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;
/// Longest hop-by-hop, routing or destination-options header: (255 + 1) * 8.
const MAX_EXT_HDR: usize = 2048;
/// Most extension headers synthesized (the parser walks at most 6).
const MAX_EXT_WRITTEN: usize = 16;

/// Appends the packet `rec` describes, as far as the record knows it, cut
/// where the original capture was cut (`l3_cap_len`): the IP header, the TCP
/// header and the TCP option bytes. Bytes the record does not carry are
/// synthesized:
///
/// - IPv4 options (a header longer than 20 bytes) become NOPs, so the header
///   keeps its length; tcpdump prints IP options only with `-v`.
/// - IPv6 extension headers are written as they were (`ext`, their bytes as
///   captured). When the record does not carry them all (more than
///   [`tcptrace_common::record::MAX_EXT_BYTES`]), they become headers of the
///   listed types whose lengths add up to `l4_off - 40`: hop-by-hop and
///   destination options padded with PadN, a fragment header holding the
///   record's fragment field (and id 0), a routing header of type 0 with
///   segments left 0 (and `::` addresses). Headers beyond the [`MAX_EXT`]
///   listed are then written as destination options. Fragment headers are 8
///   bytes; the other headers are 8 bytes, except the last ones, which take
///   the rest.
/// - The TCP checksum is computed over the pseudo-header and the TCP header
///   as written: the right checksum for a segment without payload, a wrong
///   one otherwise (the payload is not written, and tcpdump only checks a
///   checksum when the whole segment was captured). Behind a routing header
///   of type 0 or 2 the pseudo-header has its last address, the final
///   destination, as the sender's had.
pub fn reconstruct(rec: &PacketRecord, ext: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let l4 = rec.l4_off as usize;
    if rec.family == 4 {
        ipv4_header(rec, out);
    } else {
        ipv6_headers(rec, ext, out);
    }
    // The TCP header starts where the record says it does.
    out.resize(start + l4, 0);
    let tcp = out.len();
    out.extend_from_slice(&rec.sport.to_be_bytes());
    out.extend_from_slice(&rec.dport.to_be_bytes());
    out.extend_from_slice(&rec.seq.to_be_bytes());
    out.extend_from_slice(&rec.ack.to_be_bytes());
    let ae = u8::from(rec.tcp_flags & flags::AE != 0);
    out.push(((rec.data_off / 4) << 4) | ae);
    out.push(rec.tcp_flags as u8);
    out.extend_from_slice(&rec.window.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // checksum, below
    out.extend_from_slice(&rec.urg_ptr.to_be_bytes());
    out.extend_from_slice(rec.options());
    let sum = tcp_checksum(rec, final_destination(rec, ext), &out[tcp..]);
    out[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
    let known = out.len() - start;
    out.truncate(start + known.min(rec.l3_cap_len as usize));
}

fn ipv4_header(rec: &PacketRecord, out: &mut Vec<u8>) {
    let start = out.len();
    let hlen = (rec.l4_off as usize).clamp(20, 60) & !3;
    out.push(0x40 | (hlen / 4) as u8);
    out.push(rec.tos);
    out.extend_from_slice(&(rec.ip_total_len as u16).to_be_bytes());
    out.extend_from_slice(&rec.ip_id.to_be_bytes());
    out.extend_from_slice(&rec.ip_frag.to_be_bytes());
    out.push(rec.ttl);
    out.push(IPPROTO_TCP);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&rec.src[..4]);
    out.extend_from_slice(&rec.dst[..4]);
    // IP options: NOPs.
    out.resize(start + hlen, 1);
    let sum = !fold(sum16(0, &out[start..]));
    out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

/// The address a TCP checksum's pseudo-header has behind the extension
/// headers `ext` (tcpdump's `ip6_finddst`): the last one listed by a
/// routing header of type 0 or 2 of even length before any fragment header.
fn final_destination(rec: &PacketRecord, ext: &[u8]) -> Option<[u8; 16]> {
    crate::format::ext_headers(rec, ext)
        .take_while(|e| e.kind != IPV6_FRAGMENT)
        .filter_map(|e| e.bytes.filter(|rh| e.kind == IPV6_ROUTING && matches!(rh.get(2), Some(0 | 2))))
        .filter_map(|rh| crate::format::routing_addrs(rh).last())
        .last()
}

fn ipv6_headers(rec: &PacketRecord, ext: &[u8], out: &mut Vec<u8>) {
    let n = (rec.ext_count as usize).min(MAX_EXT_WRITTEN);
    let mut types = [IPV6_DSTOPTS; MAX_EXT_WRITTEN];
    let listed = n.min(MAX_EXT);
    types[..listed].copy_from_slice(&rec.ext[..listed]);
    let types = &types[..n];
    let next = |i: usize| types.get(i).copied().unwrap_or(IPPROTO_TCP);
    let vtf: u32 = 6 << 28 | (rec.tos as u32) << 20 | (rec.ip6_flow & 0x000f_ffff);
    out.extend_from_slice(&vtf.to_be_bytes());
    out.extend_from_slice(&(rec.ip_total_len.saturating_sub(40) as u16).to_be_bytes());
    out.push(next(0));
    out.push(rec.ttl);
    out.extend_from_slice(&rec.src);
    out.extend_from_slice(&rec.dst);
    // The headers as they were, when the record has all of them, or all
    // that was captured (the frame is cut there).
    let chain = (rec.l4_off as usize).saturating_sub(40);
    let captured = (rec.l3_cap_len as usize).saturating_sub(40).min(chain);
    if n > 0 && !ext.is_empty() && ext.len() >= captured && ext.len() <= chain {
        out.extend_from_slice(ext);
        return;
    }
    // Lengths: 8 bytes each, the rest of l4_off - 40 to the last headers
    // that can be longer (not fragment headers), in 8-byte units.
    let mut lens = [8usize; MAX_EXT_WRITTEN];
    let mut rest = chain.saturating_sub(8 * n) & !7;
    for i in (0..n).rev() {
        if types[i] != IPV6_FRAGMENT {
            let add = rest.min(MAX_EXT_HDR - 8);
            lens[i] += add;
            rest -= add;
        }
    }
    for (i, (&ty, &len)) in types.iter().zip(&lens).enumerate() {
        let start = out.len();
        out.push(next(i + 1));
        match ty {
            IPV6_FRAGMENT => {
                out.push(0);
                out.extend_from_slice(&rec.ip_frag.to_be_bytes());
                out.extend_from_slice(&[0; 4]); // identification
            }
            IPV6_ROUTING => {
                // Type 0, segments left 0, reserved, then addresses (zeros).
                out.extend_from_slice(&[(len / 8 - 1) as u8, 0, 0]);
                out.resize(start + len, 0);
            }
            _ => {
                // Hop-by-hop, destination options: PadN options.
                out.push((len / 8 - 1) as u8);
                let mut pad = len - 2;
                while pad > 0 {
                    if pad == 1 {
                        out.push(0); // Pad1
                        break;
                    }
                    let mut k = pad.min(257);
                    if pad - k == 1 {
                        k -= 1;
                    }
                    out.extend_from_slice(&[1, (k - 2) as u8]);
                    out.resize(out.len() + k - 2, 0);
                    pad -= k;
                }
            }
        }
    }
}

/// Adds 16-bit big-endian words (an odd last byte is padded with zero).
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u16::from_be_bytes([c[0], c[1]]) as u32);
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [b] = chunks.remainder() {
        acc = acc.wrapping_add((*b as u32) << 8);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The TCP checksum of `tcp` (the header as written) with the pseudo-header
/// of `rec` (the TCP length from the IP header).
fn tcp_checksum(rec: &PacketRecord, final_dst: Option<[u8; 16]>, tcp: &[u8]) -> u16 {
    let seg_len = rec.tcp_seg_len();
    let mut acc = if rec.family == 4 {
        sum16(0, &rec.src[..4]) + sum16(0, &rec.dst[..4]) + (seg_len & 0xffff)
    } else {
        sum16(0, &rec.src) + sum16(0, &final_dst.unwrap_or(rec.dst)) + (seg_len >> 16) + (seg_len & 0xffff)
    };
    acc += IPPROTO_TCP as u32;
    !fold(sum16(fold(acc) as u32, tcp))
}

/// A pcap stream: the global header when created, then one record per
/// packet. Written through [`Output`], so a reader that goes away (`-w - |
/// head -c`) ends the run quietly, as for the text lines.
pub struct PcapSink<W: Write> {
    out: Output<W>,
    nano: bool,
    /// The file's name in error messages (`-` for standard output).
    name: String,
    frame: Vec<u8>,
    buf: Vec<u8>,
}

impl<W: Write> PcapSink<W> {
    /// Writes the global header for LINKTYPE_RAW: nanosecond timestamps when
    /// `nano` (tcpdump's `--nano`), microseconds otherwise; native byte order.
    pub fn new(inner: W, nano: bool, name: &str) -> io::Result<Self> {
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::from(LINKTYPE_RAW),
            ts_resolution: if nano { TsResolution::NanoSecond } else { TsResolution::MicroSecond },
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let mut buf = Vec::with_capacity(64 * 1024);
        header.write_to(&mut buf).map_err(pcap_err)?;
        let mut sink = Self { out: Output::new(inner, false), nano, name: name.to_string(), frame: Vec::new(), buf };
        // The header goes out now: a run that sees no packet still leaves a
        // pcap file.
        sink.flush_buf()?;
        sink.end_batch()?;
        Ok(sink)
    }

    /// Writes one record. `Ok(false)` once the reader has gone away.
    /// `ext`: the bytes of the frame's IPv6 extension headers (empty when
    /// none).
    pub fn write(&mut self, ts: Timestamp, rec: &PacketRecord, ext: &[u8]) -> io::Result<bool> {
        self.frame.clear();
        reconstruct(rec, ext, &mut self.frame);
        let frac = match (ts.nanos, self.nano) {
            (false, true) => ts.frac.wrapping_mul(1000),
            (true, false) => ts.frac / 1000,
            _ => ts.frac,
        };
        let caplen = self.frame.len() as u32;
        let raw = RawPcapPacket {
            // pcap's fields are signed 32-bit numbers: this keeps times
            // before 1970 (and odd fractions) as the capture had them.
            ts_sec: ts.sec as u32,
            ts_frac: frac as u32,
            incl_len: caplen,
            orig_len: rec.l3_wire_len.max(caplen),
            data: Cow::Borrowed(&self.frame),
        };
        let res = match Endianness::native() {
            Endianness::Big => raw.write_to::<_, BigEndian>(&mut self.buf),
            Endianness::Little => raw.write_to::<_, LittleEndian>(&mut self.buf),
        };
        res.map_err(pcap_err)?;
        if self.buf.len() >= 32 * 1024 {
            return self.flush_buf();
        }
        Ok(true)
    }

    fn flush_buf(&mut self) -> io::Result<bool> {
        let res = self.out.write_line(&self.buf);
        self.buf.clear();
        res.map_err(|e| self.named(e))
    }

    /// Pushes out what was written since the last batch, so that the file
    /// can be read while tracing goes on.
    pub fn end_batch(&mut self) -> io::Result<bool> {
        if !self.buf.is_empty() && !self.flush_buf()? {
            return Ok(false);
        }
        self.out.end_batch().map_err(|e| self.named(e))
    }

    pub fn finish(&mut self) -> io::Result<()> {
        self.end_batch().map(|_| ())
    }

    fn named(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.name))
    }
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// A writer for text lines or pcap records (standard output, standard
/// error, a file, or what a caller hands in).
pub type BoxWrite<'a> = Box<dyn Write + 'a>;

/// Where the lines and the records go for `args`. Without `-w`, the lines go
/// to `stdout`. With `-w FILE`, the file is created now (before anything is
/// loaded or read, so a bad path fails early, naming the file) and the lines
/// (connection states; packet lines are not printed) still go to `stdout`.
/// With `-w -`, the records go to `stdout` and the lines to standard error.
pub fn outputs<'a>(
    args: &Args,
    stdout: BoxWrite<'a>,
    stdout_line_buffered: bool,
) -> anyhow::Result<(Output<BoxWrite<'a>>, Option<PcapSink<BoxWrite<'a>>>)> {
    let Some(path) = args.write.as_deref() else {
        return Ok((Output::new(stdout, stdout_line_buffered), None));
    };
    if path == Path::new("-") {
        let sink = PcapSink::new(stdout, args.nano, "-").map_err(|e| anyhow!("writing the pcap header: {e}"))?;
        return Ok((Output::new(Box::new(io::stderr()), true), Some(sink)));
    }
    let name = path.display().to_string();
    let file = std::fs::File::create(path).map_err(|e| anyhow!("{name}: {e}"))?;
    let sink = PcapSink::new(Box::new(file) as BoxWrite<'a>, args.nano, &name).map_err(|e| anyhow!("{e}"))?;
    Ok((Output::new(stdout, stdout_line_buffered), Some(sink)))
}

#[cfg(test)]
mod tests {
    use tcptrace_common::{LinkType, SliceFrame, parse_frame, parse_frame_ext};

    use super::*;

    const IPV6_HOPOPTS: u8 = 0;

    /// Parses `frame` cut at `cap`, writes the record, parses that again:
    /// the same record and extension headers, but for the payload bytes,
    /// which are not written.
    fn roundtrip(frame: &[u8], cap: usize) {
        let data = &frame[..cap.min(frame.len())];
        // A cut before the TCP header leaves no record at all.
        let Ok(mut orig) = parse_frame_ext(&SliceFrame { data, wire_len: frame.len() as u32 }, LinkType::RawIp) else {
            return;
        };
        let mut out = Vec::new();
        reconstruct(&orig.rec, orig.tail.bytes(), &mut out);
        let back =
            parse_frame_ext(&SliceFrame { data: &out, wire_len: orig.rec.l3_wire_len }, LinkType::RawIp).unwrap();
        orig.rec.l3_cap_len = orig.rec.l3_cap_len.min(out.len() as u32);
        assert_eq!(back.rec, orig.rec, "record changed through the pcap writer (cut at {cap})");
        assert_eq!(back.tail.bytes(), orig.tail.bytes(), "extension headers changed (cut at {cap})");
    }

    fn ipv4_syn(ihl: usize) -> Vec<u8> {
        let mut p =
            vec![0x40 | (ihl / 4) as u8, 0x10, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p.resize(ihl, 1);
        let tcp = [
            0x9c, 0x40, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0, 0x81, 0xc2, 0xfa, 0xf0, 0, 0, 0, 7, 2, 4, 5, 0xb4, 1, 1, 4,
            2, 1, 3, 3, 7,
        ];
        p.extend_from_slice(&tcp);
        p.extend_from_slice(b"data");
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    #[test]
    fn ipv4_roundtrips_and_checksums() {
        for ihl in [20, 24, 60] {
            let p = ipv4_syn(ihl);
            for cap in [22, 24, ihl + 4, ihl + 19, ihl + 20, ihl + 25, p.len()] {
                roundtrip(&p, cap);
            }
            let rec = parse_frame(&SliceFrame::full(&p), LinkType::RawIp).unwrap();
            let mut out = Vec::new();
            reconstruct(&rec, &[], &mut out);
            assert_eq!(out.len(), ihl + 32, "headers only");
            assert_eq!(fold(sum16(0, &out[..ihl])), 0xffff, "IPv4 header checksum");
        }
    }

    #[test]
    fn tcp_checksum_is_right_without_payload() {
        let mut p = ipv4_syn(20);
        p.truncate(52);
        p[2..4].copy_from_slice(&52u16.to_be_bytes());
        let rec = parse_frame(&SliceFrame::full(&p), LinkType::RawIp).unwrap();
        let mut out = Vec::new();
        reconstruct(&rec, &[], &mut out);
        let mut acc = sum16(0, &out[12..20]) + 6 + 32;
        acc = sum16(fold(acc) as u32, &out[20..]);
        assert_eq!(fold(acc), 0xffff);
    }

    fn ipv6_with(exts: &[(u8, usize)]) -> Vec<u8> {
        let mut p = vec![0x60, 0x12, 0x34, 0x56, 0, 0, exts.first().map_or(6, |e| e.0), 64];
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        for (i, &(ty, len)) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(6, |e| e.0);
            let s = p.len();
            if ty == IPV6_FRAGMENT {
                p.extend_from_slice(&[next, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
            } else {
                p.extend_from_slice(&[next, (len / 8 - 1) as u8]);
                p.resize(s + len, 0);
            }
        }
        p.extend_from_slice(&[0x1f, 0x90, 0xc3, 0x50, 0, 0, 0, 9, 0, 0, 0, 7, 0x60, 0x11, 1, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]);
        p.truncate(p.len() - 8); // data offset 6: 4 option bytes
        p.extend_from_slice(b"xy");
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p
    }

    #[test]
    fn ipv6_extension_headers_roundtrip() {
        let cases: &[&[(u8, usize)]] = &[
            &[],
            &[(IPV6_HOPOPTS, 8)],
            &[(IPV6_HOPOPTS, 16), (IPV6_DSTOPTS, 24)],
            &[(IPV6_DSTOPTS, 8), (IPV6_FRAGMENT, 8)],
            &[(IPV6_ROUTING, 24), (IPV6_FRAGMENT, 8), (IPV6_DSTOPTS, 8)],
            &[(IPV6_HOPOPTS, 8), (IPV6_DSTOPTS, 8), (IPV6_ROUTING, 8), (IPV6_FRAGMENT, 8), (IPV6_DSTOPTS, 8)],
        ];
        for exts in cases {
            let p = ipv6_with(exts);
            let l4 = 40 + exts.iter().map(|e| e.1).sum::<usize>();
            for cap in [40, 44, 52, l4 - 4, l4, l4 + 3, l4 + 4, l4 + 20, l4 + 22, l4 + 24, p.len()] {
                roundtrip(&p, cap);
            }
        }
    }

    /// `exts` with the body of the first routing header given.
    fn ipv6_with_routing(exts: &[(u8, usize)], rh_body: &[u8]) -> Vec<u8> {
        let mut p = ipv6_with(exts);
        let at = 40 + exts.iter().take_while(|e| e.0 != IPV6_ROUTING).map(|e| e.1).sum::<usize>();
        p[at + 2..at + 2 + rh_body.len()].copy_from_slice(rh_body);
        p
    }

    /// A segment routing header (type 4), three segments, a tag and flags.
    fn srh_body() -> Vec<u8> {
        let mut b = vec![4, 1, 2, 0x80, 0xbe, 0xef];
        for last in [0xa, 0xb, 0xc] {
            b.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
        }
        b
    }

    #[test]
    fn extension_headers_are_written_as_they_were() {
        let srh = srh_body();
        for exts in [&[(IPV6_ROUTING, 56)][..], &[(IPV6_HOPOPTS, 8), (IPV6_ROUTING, 56), (IPV6_FRAGMENT, 8)]] {
            let p = ipv6_with_routing(exts, &srh);
            let l4 = 40 + exts.iter().map(|e| e.1).sum::<usize>();
            let rh = 40 + exts.iter().take_while(|e| e.0 != IPV6_ROUTING).map(|e| e.1).sum::<usize>();
            for cap in [rh + 4, rh + 10, rh + 30, l4, l4 + 20, p.len()] {
                roundtrip(&p, cap);
            }
            let orig = parse_frame_ext(&SliceFrame::full(&p), LinkType::RawIp).unwrap();
            let mut out = Vec::new();
            reconstruct(&orig.rec, orig.tail.bytes(), &mut out);
            assert_eq!(&out[40..l4], &p[40..l4], "the extension headers are the original's");
            assert_eq!(&out[rh..rh + 56], &p[rh..rh + 56]);
        }
    }

    /// Behind a type 0 or 2 routing header the checksum's pseudo-header has
    /// the header's last address (tcpdump -vv then says the checksum is
    /// right, as it does for the original).
    #[test]
    fn checksum_uses_the_final_destination() {
        let final_dst = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77];
        for ty in [0u8, 2, 4] {
            let mut body = vec![ty, 1, 0, 0, 0, 0];
            body.extend_from_slice(&final_dst);
            let mut p = ipv6_with_routing(&[(IPV6_ROUTING, 24)], &body);
            p.truncate(p.len() - 6); // no payload: the 24-byte TCP header alone
            let plen = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&plen.to_be_bytes());
            let orig = parse_frame_ext(&SliceFrame::full(&p), LinkType::RawIp).unwrap();
            let mut out = Vec::new();
            reconstruct(&orig.rec, orig.tail.bytes(), &mut out);
            let tcp = &out[64..];
            let dst = if ty == 4 { &out[24..40] } else { &final_dst[..] };
            let mut acc = sum16(0, &out[8..24]) + sum16(0, dst) + 6 + tcp.len() as u32;
            acc = sum16(fold(acc) as u32, tcp);
            assert_eq!(fold(acc), 0xffff, "type {ty}");
        }
    }

    #[test]
    fn pcap_records() {
        let p = ipv4_syn(20);
        let rec = parse_frame(&SliceFrame::full(&p), LinkType::RawIp).unwrap();
        let mut buf = Vec::new();
        {
            let mut sink = PcapSink::new(&mut buf, false, "x").unwrap();
            assert!(sink.write(Timestamp::nanos(1_700_000_000, 123_456_789), &rec, &[]).unwrap());
            sink.finish().unwrap();
        }
        assert_eq!(buf.len(), 24 + 16 + 52);
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 0xa1b2_c3d4);
        assert_eq!(u32_at(16), SNAPLEN);
        assert_eq!(u32_at(20), LINKTYPE_RAW);
        assert_eq!(u32_at(24), 1_700_000_000);
        assert_eq!(u32_at(28), 123_456);
        assert_eq!(u32_at(32), 52);
        assert_eq!(u32_at(36), p.len() as u32);
    }
}
