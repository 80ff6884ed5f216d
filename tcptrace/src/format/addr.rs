//! Address text as tcpdump prints it with `-n` (`addrtostr`, `addrtostr6`).

use std::fmt::Write;

pub fn ipv4(a: &[u8], out: &mut String) {
    for (i, &b) in a[..4].iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        super::push_u32(out, b as u32);
    }
}

/// tcpdump's `addrtostr6`: the longest run (first on a tie) of two or more
/// zero words becomes `::`; `::a.b.c.d` and `::ffff:a.b.c.d` keep the IPv4 part
/// dotted.
pub fn ipv6(a: &[u8; 16], out: &mut String) {
    let mut words = [0u16; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u16::from_be_bytes([a[2 * i], a[2 * i + 1]]);
    }
    let (mut best_base, mut best_len) = (-1i32, 0i32);
    let (mut cur_base, mut cur_len) = (-1i32, 0i32);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            if cur_base == -1 {
                cur_base = i as i32;
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if cur_base != -1 {
            if best_base == -1 || cur_len > best_len {
                best_base = cur_base;
                best_len = cur_len;
            }
            cur_base = -1;
        }
    }
    if cur_base != -1 && (best_base == -1 || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
    }
    if best_base != -1 && best_len < 2 {
        best_base = -1;
    }
    for i in 0..8i32 {
        if best_base != -1 && i >= best_base && i < best_base + best_len {
            if i == best_base {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)) {
            ipv4(&a[12..16], out);
            return;
        }
        let _ = write!(out, "{:x}", words[i as usize]);
    }
    if best_base != -1 && best_base + best_len == 8 {
        out.push(':');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s6(a: [u8; 16]) -> String {
        let mut s = String::new();
        ipv6(&a, &mut s);
        s
    }

    fn p(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn ipv6_text() {
        assert_eq!(s6(p("2001:db8::10")), "2001:db8::10");
        assert_eq!(s6(p("::ffff:192.0.2.1")), "::ffff:192.0.2.1");
        assert_eq!(s6(p("::192.0.2.1")), "::192.0.2.1");
        assert_eq!(s6(p("2001:db8::ffff:0:1")), "2001:db8::ffff:0:1");
        assert_eq!(s6(p("::")), "::");
        assert_eq!(s6(p("::1")), "::1");
        assert_eq!(s6(p("fe80::")), "fe80::");
        assert_eq!(s6(p("1:0:2:0:0:3:0:0")), "1:0:2::3:0:0");
        assert_eq!(s6(p("1:0:2:3:4:5:6:7")), "1:0:2:3:4:5:6:7");
    }
}
