//! MPTCP option text (tcpdump 4.99.3's print-mptcp.c at default verbosity).
//! The 64-bit data sequence numbers are always printed raw.

use std::fmt::Write;

use tcptrace_common::record::flags::{ACK, SYN};

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
/// A DSS data ACK or data sequence number at `o[*p..]`: 8 bytes when `wide`,
/// else 4; false when fewer than that remain.
fn dss_number(s: &mut String, o: &[u8], p: &mut usize, rem: &mut usize, wide: bool) -> bool {
    let n = if wide { 8 } else { 4 };
    if *rem < n {
        return false;
    }
    let _ = if wide { write!(s, "{}", be64(&o[*p..])) } else { write!(s, "{}", be32(&o[*p..])) };
    *p += n;
    *rem -= n;
    true
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

const NAMES: [&str; 9] = ["capable", "join", "dss", "add-addr", "rem-addr", "prio", "fail", "fast-close", "unknown"];

/// Prints one MPTCP option (`o` is the whole option, kind and length bytes
/// included, all of it captured). Returns false where tcpdump's printer
/// fails, which ends the line with `[bad opt]`.
pub(crate) fn print(s: &mut String, o: &[u8], flags: u8) -> bool {
    let len = o.len();
    if len < 3 {
        return false;
    }
    let sub = ((o[2] >> 4) & 0xf).min(8);
    let _ = write!(s, " {len} {}", NAMES[sub as usize]);
    let flags = flags as u16;
    match sub {
        0 => {
            if !((len == 12 || len == 4) && flags & SYN != 0)
                && !((len == 20 || len == 22) && flags & (SYN | ACK) == ACK)
            {
                return false;
            }
            let version = o[2] & 0xf;
            if version > 1 {
                let _ = write!(s, " Unknown Version ({version})");
                return true;
            }
            let _ = write!(s, " v{version}");
            if o[3] & 0x80 != 0 {
                s.push_str(" csum");
            }
            if len == 12 || len >= 20 {
                let _ = write!(s, " {{0x{:x}", be64(&o[4..]));
                if len >= 20 {
                    let _ = write!(s, ",0x{:x}", be64(&o[12..]));
                }
                s.push('}');
            }
            true
        }
        1 => {
            let ok = (len == 12 && flags & SYN != 0)
                || (len == 16 && flags & (SYN | ACK) == (SYN | ACK))
                || (len == 24 && flags & ACK != 0);
            if !ok {
                return false;
            }
            if len != 24 {
                if o[2] & 1 != 0 {
                    s.push_str(" backup");
                }
                let _ = write!(s, " id {}", o[3]);
            }
            match len {
                12 => {
                    let _ = write!(s, " token 0x{:x} nonce 0x{:x}", be32(&o[4..]), be32(&o[8..]));
                }
                16 => {
                    let _ = write!(s, " hmac 0x{:x} nonce 0x{:x}", be64(&o[4..]), be32(&o[12..]));
                }
                _ => {
                    s.push_str(" hmac 0x");
                    for b in &o[4..24] {
                        let _ = write!(s, "{b:02x}");
                    }
                }
            }
            true
        }
        2 => {
            if len < 4 || flags & SYN != 0 {
                return false;
            }
            let f = o[3];
            if f & 0x10 != 0 {
                s.push_str(" fin");
            }
            let mut p = 4;
            let mut rem = len - 4;
            if f & 0x01 != 0 {
                s.push_str(" ack ");
                if !dss_number(s, o, &mut p, &mut rem, f & 0x02 != 0) {
                    return false;
                }
            }
            if f & 0x04 != 0 {
                s.push_str(" seq ");
                if !dss_number(s, o, &mut p, &mut rem, f & 0x08 != 0) {
                    return false;
                }
                if rem < 4 {
                    return false;
                }
                let _ = write!(s, " subseq {}", be32(&o[p..]));
                p += 4;
                rem -= 4;
                if rem < 2 {
                    return false;
                }
                let _ = write!(s, " len {}", be16(&o[p..]));
                p += 2;
                rem -= 2;
                if rem >= 2 {
                    let _ = write!(s, " csum 0x{:x}", be16(&o[p..]));
                    rem -= 2;
                }
            }
            rem == 0
        }
        3 => {
            if ![8, 10, 16, 18, 20, 22, 28, 30].contains(&len) {
                return false;
            }
            let name = match o[2] & 0xf {
                6 => "v0-ip6",
                4 => "v0-ip4",
                1 => "v1-echo",
                0 => "v1",
                _ => "[bad version/echo]",
            };
            let _ = write!(s, " {name} id {}", o[3]);
            if matches!(len, 8 | 10 | 16 | 18) {
                s.push(' ');
                super::addr::ipv4(&o[4..8], s);
                if len == 10 || len == 18 {
                    let _ = write!(s, ":{}", be16(&o[8..]));
                }
                if len == 16 {
                    let _ = write!(s, " hmac 0x{:x}", be64(&o[8..]));
                }
                if len == 18 {
                    let _ = write!(s, " hmac 0x{:x}", be64(&o[10..]));
                }
            } else {
                let mut a = [0u8; 16];
                a.copy_from_slice(&o[4..20]);
                s.push(' ');
                super::addr::ipv6(&a, s);
                if len == 22 || len == 30 {
                    let _ = write!(s, ":{}", be16(&o[20..]));
                }
                if len == 28 {
                    let _ = write!(s, " hmac 0x{:x}", be64(&o[20..]));
                }
                if len == 30 {
                    let _ = write!(s, " hmac 0x{:x}", be64(&o[22..]));
                }
            }
            true
        }
        4 => {
            if len < 4 {
                return false;
            }
            s.push_str(" id");
            for b in &o[3..len] {
                let _ = write!(s, " {b}");
            }
            true
        }
        5 => {
            if len != 3 && len != 4 {
                return false;
            }
            s.push_str(if o[2] & 1 != 0 { " backup" } else { " non-backup" });
            if len == 4 {
                let _ = write!(s, " id {}", o[3]);
            }
            true
        }
        6 => {
            if len != 12 {
                return false;
            }
            let _ = write!(s, " seq {}", be64(&o[4..]));
            true
        }
        7 => {
            if len != 12 {
                return false;
            }
            let _ = write!(s, " key 0x{:x}", be64(&o[4..]));
            true
        }
        _ => true,
    }
}
