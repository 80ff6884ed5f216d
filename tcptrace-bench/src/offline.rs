//! Offline formatting: `tcptrace -r X -n --no-states` against
//! `tcpdump -n -r X tcp` on a generated capture.

use std::{
    collections::HashSet,
    io::{BufWriter, Write},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use tcptrace_common::record::flags::*;

use crate::{
    frames::{self, Rng, Tcp},
    util::{median, run_timed},
};

pub struct Capture {
    pub frames: u64,
    pub hosts4: usize,
    pub hosts6: usize,
    pub connections: u64,
    pub bytes: u64,
}

/// Writes a pcap of at least `min_frames` Ethernet frames: connections of
/// 8 to 12 segments (handshake with mss/sackOK/TS/wscale, data both ways with
/// timestamps, some SACK blocks, FIN or RST close), one in ten over IPv6,
/// between `clients4` IPv4 clients (and a tenth as many IPv6 ones) and 10
/// servers of each family.
pub fn generate(path: &Path, min_frames: u64, clients4: u32) -> Result<Capture> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    // pcap header: microseconds, version 2.4, snaplen 262144, Ethernet.
    w.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
    w.write_all(&[2, 0, 4, 0])?;
    w.write_all(&[0; 8])?;
    w.write_all(&262144u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let clients6 = (clients4 / 10).max(1);
    let mut rng = Rng::new(0xbe7c_4a11);
    let (mut frames_n, mut conns, mut bytes) = (0u64, 0u64, 24u64);
    let mut h4 = HashSet::new();
    let mut h6 = HashSet::new();
    let mut t_us: u64 = 1_700_000_000 * 1_000_000;
    let mut tsval: u32 = 1_000_000;
    let server_ports = [443u16, 8080, 5001, 9000, 22];
    while frames_n < min_frames {
        let v6 = conns % 10 == 9;
        let ci = (conns / 10 * 9 + conns % 10) as u32; // index among this family's connections
        let (c, s): (Vec<u8>, Vec<u8>) = if v6 {
            let i = (conns / 10) as u32 % clients6;
            let mut c = [0u8; 16];
            c[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            c[12..].copy_from_slice(&(i + 1).to_be_bytes());
            let mut s = [0u8; 16];
            s[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            s[4] = 0xff;
            s[15] = (conns % 10) as u8 + 1;
            (c.to_vec(), s.to_vec())
        } else {
            let i = ci % clients4;
            let c = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            let s = [192, 168, 0, (conns % 10) as u8 + 1];
            (c.to_vec(), s.to_vec())
        };
        if v6 {
            h6.insert(c.clone());
            h6.insert(s.clone());
        } else {
            h4.insert(c.clone());
            h4.insert(s.clone());
        }
        let cport = 1024 + (rng.below(64000) as u16);
        let sport = server_ports[(conns % server_ports.len() as u64) as usize];
        let (mut cseq, mut sseq) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let mut segs: Vec<(bool, Tcp)> = Vec::new(); // (from client, segment)
        let ts = |v: u32, e: u32| {
            let mut o = vec![1, 1, 8, 10];
            o.extend(v.to_be_bytes());
            o.extend(e.to_be_bytes());
            o
        };
        let mut syn = frames::syn_options();
        syn[8..12].copy_from_slice(&tsval.to_be_bytes());
        let mut synack = frames::syn_options();
        synack[8..12].copy_from_slice(&(tsval + 7).to_be_bytes());
        synack[12..16].copy_from_slice(&tsval.to_be_bytes());
        let base = Tcp { sport: cport, dport: sport, win: 64240, ..Tcp::default() };
        segs.push((true, Tcp { flags: SYN, seq: cseq, options: syn, ..base.clone() }));
        segs.push((
            false,
            Tcp { flags: SYN | ACK, seq: sseq, ack: cseq + 1, options: synack, win: 65160, ..base.clone() },
        ));
        cseq += 1;
        sseq += 1;
        segs.push((
            true,
            Tcp { flags: ACK, seq: cseq, ack: sseq, options: ts(tsval + 1, tsval + 7), win: 502, ..base.clone() },
        ));
        for _ in 0..1 + rng.below(3) {
            let req = 40 + rng.below(300) as u32;
            let resp = 100 + rng.below(1300) as u32;
            segs.push((
                true,
                Tcp {
                    flags: PSH | ACK,
                    seq: cseq,
                    ack: sseq,
                    options: ts(tsval + 2, tsval + 7),
                    payload: vec![0; req as usize],
                    win: 502,
                    ..base.clone()
                },
            ));
            cseq += req;
            let mut o = ts(tsval + 9, tsval + 2);
            if rng.below(8) == 0 {
                // nop, nop, sack 1 {x:y}
                o = [vec![1, 1], o, vec![1, 1, 5, 10]].concat();
                o.extend((cseq + 100).to_be_bytes());
                o.extend((cseq + 200).to_be_bytes());
            }
            segs.push((
                false,
                Tcp {
                    flags: PSH | ACK,
                    seq: sseq,
                    ack: cseq,
                    options: o,
                    payload: vec![0; resp as usize],
                    win: 509,
                    ..base.clone()
                },
            ));
            sseq += resp;
        }
        if rng.below(25) == 0 {
            segs.push((true, Tcp { flags: RST | ACK, seq: cseq, ack: sseq, win: 0, ..base.clone() }));
        } else {
            segs.push((
                true,
                Tcp {
                    flags: FIN | ACK,
                    seq: cseq,
                    ack: sseq,
                    options: ts(tsval + 11, tsval + 9),
                    win: 502,
                    ..base.clone()
                },
            ));
            segs.push((
                false,
                Tcp {
                    flags: FIN | ACK,
                    seq: sseq,
                    ack: cseq + 1,
                    options: ts(tsval + 12, tsval + 11),
                    win: 509,
                    ..base.clone()
                },
            ));
            segs.push((
                true,
                Tcp {
                    flags: ACK,
                    seq: cseq + 1,
                    ack: sseq + 1,
                    options: ts(tsval + 13, tsval + 12),
                    win: 502,
                    ..base.clone()
                },
            ));
        }
        tsval = tsval.wrapping_add(20);
        for (from_client, mut seg) in segs {
            if !from_client {
                std::mem::swap(&mut seg.sport, &mut seg.dport);
            }
            let (src, dst) = if from_client { (&c, &s) } else { (&s, &c) };
            let l4 = seg.bytes();
            let frame = if v6 {
                frames::ethernet(0x86dd, &[], &frames::ipv6(src[..].try_into()?, dst[..].try_into()?, &[], 6, &l4))
            } else {
                frames::ethernet(
                    0x0800,
                    &[],
                    &frames::ipv4(src[..].try_into()?, dst[..].try_into()?, 6, 0x4000, &[], &l4),
                )
            };
            t_us += 1 + rng.below(40);
            w.write_all(&((t_us / 1_000_000) as u32).to_le_bytes())?;
            w.write_all(&((t_us % 1_000_000) as u32).to_le_bytes())?;
            w.write_all(&(frame.len() as u32).to_le_bytes())?;
            w.write_all(&(frame.len() as u32).to_le_bytes())?;
            w.write_all(&frame)?;
            bytes += 16 + frame.len() as u64;
            frames_n += 1;
        }
        conns += 1;
    }
    w.flush()?;
    Ok(Capture { frames: frames_n, hosts4: h4.len(), hosts6: h6.len(), connections: conns, bytes })
}

/// A line up to and including `length N` (what follows comes from the
/// payload, which tcptrace does not dissect).
fn upto_length(line: &str) -> &str {
    match line.find(", length ") {
        Some(i) => {
            let rest = &line[i + 9..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            &line[..i + 9 + digits]
        }
        None => line,
    }
}

pub fn compare(tcptrace_out: &Path, tcpdump_out: &Path) -> Result<u64> {
    let a = std::fs::read_to_string(tcptrace_out)?;
    let b = std::fs::read_to_string(tcpdump_out)?;
    // tcpdump continues some payload dissections (OpenFlow on a client's
    // port 6633, ...) on indented lines: those come after `length N`.
    let cont = |l: &&str| !l.starts_with([' ', '\t']);
    let (mut la, mut lb) = (a.lines().filter(cont), b.lines().filter(cont));
    let mut n = 0u64;
    loop {
        match (la.next(), lb.next()) {
            (None, None) => return Ok(n),
            (Some(x), Some(y)) => {
                if upto_length(x) != upto_length(y) {
                    bail!("line {}: tcptrace and tcpdump differ:\n  tcptrace: {x}\n  tcpdump:  {y}", n + 1);
                }
                n += 1;
            }
            (x, y) => bail!("line {}: one output ends first: tcptrace {x:?}, tcpdump {y:?}", n + 1),
        }
    }
}

pub struct Result1 {
    pub cap: Capture,
    pub tcptrace_cpu: f64,
    pub tcpdump_cpu: f64,
    pub tcptrace_wall: f64,
    pub tcpdump_wall: f64,
}

pub fn run(tcptrace: &Path, dir: &Path, min_frames: u64, clients4: u32, runs: usize) -> Result<Result1> {
    let pcap = dir.join(format!("bench-{clients4}.pcap"));
    let cap = generate(&pcap, min_frames, clients4).context("generate the capture")?;
    let ours = |c: &mut Command| {
        c.arg("-r").arg(&pcap).args(["-n", "--no-states"]);
    };
    let mut tt = Command::new(tcptrace);
    ours(&mut tt);
    let mut td = Command::new("tcpdump");
    td.args(["-n", "-r"]).arg(&pcap).arg("tcp").stderr(std::process::Stdio::null());
    // Identical output first (this also warms the page cache).
    let (out_a, out_b) = (dir.join("tcptrace.txt"), dir.join("tcpdump.txt"));
    run_timed(&mut tt, &out_a)?;
    run_timed(&mut td, &out_b)?;
    let lines = compare(&out_a, &out_b)?;
    if lines != cap.frames {
        bail!("{lines} lines for {} frames", cap.frames);
    }
    let _ = std::fs::remove_file(&out_a);
    let _ = std::fs::remove_file(&out_b);
    let null = Path::new("/dev/null");
    let (mut a_cpu, mut b_cpu, mut a_wall, mut b_wall) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let e = run_timed(&mut tt, null)?;
        a_cpu.push(e.cpu_s);
        a_wall.push(e.wall_s);
        let e = run_timed(&mut td, null)?;
        b_cpu.push(e.cpu_s);
        b_wall.push(e.wall_s);
    }
    let _ = std::fs::remove_file(&pcap);
    Ok(Result1 {
        cap,
        tcptrace_cpu: median(&a_cpu),
        tcpdump_cpu: median(&b_cpu),
        tcptrace_wall: median(&a_wall),
        tcpdump_wall: median(&b_wall),
    })
}
