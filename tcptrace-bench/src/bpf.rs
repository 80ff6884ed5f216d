//! Raw `bpf(2)` calls: the empty pass-through reference programs, test runs
//! with a repeat count, and programs of another process by id.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the expected attach type aya gives XDP programs.
const BPF_XDP: u32 = 37;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: attr is a zero-padded bpf_attr of the size we pass.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}
fn get32(a: &[u8; 128], off: usize) -> u32 {
    u32::from_ne_bytes(a[off..off + 4].try_into().unwrap())
}

/// `r0 = verdict; exit`: the cheapest program of `prog_type`, which passes
/// every frame as tcptrace's do (XDP_PASS = 2, TC_ACT_UNSPEC = -1).
pub fn load_empty(prog_type: u32) -> io::Result<OwnedFd> {
    let verdict: i32 = if prog_type == BPF_PROG_TYPE_XDP { 2 } else { -1 };
    // mov64 r0, imm (0xb7); exit (0x95)
    load(prog_type, &[0xb7 | ((verdict as u32 as u64) << 32), 0x95], b"empty")
}

/// A BPF ring buffer of `bytes` (a power of two, at least a page).
pub fn ring_buffer(bytes: u32) -> io::Result<OwnedFd> {
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    let mut a = [0u8; 128];
    put32(&mut a, 0, BPF_MAP_TYPE_RINGBUF);
    put32(&mut a, 12, bytes);
    a[48..52].copy_from_slice(b"ring");
    let fd = bpf(BPF_MAP_CREATE, &mut a)?;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One BPF instruction: opcode, registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64 | ((dst as u64 | (src as u64) << 4) << 8) | ((off as u16 as u64) << 16) | ((imm as u32 as u64) << 32)
}

/// The least a program can do to emit a `record_bytes` record (a multiple
/// of 8) into the ring buffer `ring`, as tcptrace's programs emit one: read
/// the boot clock (`bpf_ktime_get_boot_ns`), reserve, write every word of
/// the record (the first one the timestamp, the others zero), submit
/// without waking the reader. No parsing, filtering or counting: the floor
/// under any record of that size.
pub fn load_emit_floor(prog_type: u32, ring: BorrowedFd<'_>, record_bytes: u32) -> io::Result<OwnedFd> {
    const CALL: u8 = 0x85;
    const MOV64_IMM: u8 = 0xb7;
    const MOV64_REG: u8 = 0xbf;
    const LD_IMM64: u8 = 0x18;
    const JEQ_IMM: u8 = 0x15;
    const ST_DW: u8 = 0x7a;
    const STX_DW: u8 = 0x7b;
    const EXIT: u8 = 0x95;
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    const KTIME_GET_BOOT_NS: i32 = 125;
    const RINGBUF_RESERVE: i32 = 131;
    const RINGBUF_SUBMIT: i32 = 132;
    const BPF_RB_NO_WAKEUP: i32 = 1;
    let verdict: i32 = if prog_type == BPF_PROG_TYPE_XDP { 2 } else { -1 };
    let words = (record_bytes / 8) as usize;
    let mut insns = vec![
        insn(CALL, 0, 0, 0, KTIME_GET_BOOT_NS),
        insn(MOV64_REG, 6, 0, 0, 0),
        insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, ring.as_raw_fd()),
        0,
        insn(MOV64_IMM, 2, 0, 0, record_bytes as i32),
        insn(MOV64_IMM, 3, 0, 0, 0),
        insn(CALL, 0, 0, 0, RINGBUF_RESERVE),
    ];
    // if r0 == 0 skip the stores and the submit: words stores, 3 insns.
    insns.push(insn(JEQ_IMM, 0, 0, (words + 3) as i16, 0));
    insns.push(insn(STX_DW, 0, 6, 0, 0));
    for w in 1..words {
        insns.push(insn(ST_DW, 0, 0, (w * 8) as i16, 0));
    }
    insns.push(insn(MOV64_REG, 1, 0, 0, 0));
    insns.push(insn(MOV64_IMM, 2, 0, 0, BPF_RB_NO_WAKEUP));
    insns.push(insn(CALL, 0, 0, 0, RINGBUF_SUBMIT));
    insns.push(insn(MOV64_IMM, 0, 0, 0, verdict));
    insns.push(insn(EXIT, 0, 0, 0, 0));
    load(prog_type, &insns, b"emit_floor")
}

/// The least a program can do to find that a frame is TCP on a port it does
/// not trace: direct reads of the Ethernet type, the IPv4 protocol and the
/// destination port, assuming no VLAN tag and no IP options (no real parser
/// may), and a compare with `port`. No counting: the floor under cases (a)
/// and (b).
pub fn load_skip_floor(prog_type: u32, port: u16) -> io::Result<OwnedFd> {
    const LDX_W: u8 = 0x61;
    const LDX_H: u8 = 0x69;
    const LDX_B: u8 = 0x71;
    const MOV64_REG: u8 = 0xbf;
    const ADD64_IMM: u8 = 0x07;
    const JGT_REG: u8 = 0x2d;
    const JNE_IMM: u8 = 0x55;
    const JEQ_IMM: u8 = 0x15;
    const MOV64_IMM: u8 = 0xb7;
    const EXIT: u8 = 0x95;
    let xdp = prog_type == BPF_PROG_TYPE_XDP;
    let verdict: i32 = if xdp { 2 } else { -1 };
    // xdp_md.data/data_end, __sk_buff.data/data_end
    let (data, data_end) = if xdp { (0, 4) } else { (76, 80) };
    // Loads are little-endian: 0x0800 on the wire reads as 0x0008.
    let be = |v: u16| i32::from(v.swap_bytes());
    let insns = [
        insn(LDX_W, 2, 1, data, 0),
        insn(LDX_W, 3, 1, data_end, 0),
        insn(MOV64_REG, 4, 2, 0, 0),
        insn(ADD64_IMM, 4, 0, 0, 14 + 20 + 4),
        insn(JGT_REG, 4, 3, 6, 0),
        insn(LDX_H, 5, 2, 12, 0),
        insn(JNE_IMM, 5, 0, 4, be(0x0800)),
        insn(LDX_B, 5, 2, 14 + 9, 0),
        insn(JNE_IMM, 5, 0, 2, 6),
        insn(LDX_H, 5, 2, 14 + 20 + 2, 0),
        insn(JEQ_IMM, 5, 0, 0, be(port)),
        insn(MOV64_IMM, 0, 0, 0, verdict),
        insn(EXIT, 0, 0, 0, 0),
    ];
    load(prog_type, &insns, b"skip_floor")
}

fn load(prog_type: u32, insns: &[u64], name: &[u8]) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog_type);
    put32(&mut a, 4, insns.len() as u32);
    put64(&mut a, 8, insns.as_ptr() as u64);
    put64(&mut a, 16, license.as_ptr() as u64);
    a[48..48 + name.len().min(15)].copy_from_slice(&name[..name.len().min(15)]);
    if prog_type == BPF_PROG_TYPE_XDP {
        put32(&mut a, 68, BPF_XDP);
    }
    let fd = bpf(BPF_PROG_LOAD, &mut a)?;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Runs `prog` `repeat` times on `frame`; returns (return value, the kernel's
/// average nanoseconds per run).
pub fn test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog.as_raw_fd() as u32);
    put32(&mut a, 8, frame.len() as u32);
    put64(&mut a, 16, frame.as_ptr() as u64);
    put32(&mut a, 32, repeat);
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok((get32(&a, 4), get32(&a, 36)))
}

/// A new fd for the program with kernel id `id`.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut a)?;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Ids of the programs of type `prog_type` process `pid` holds open.
pub fn prog_ids_of(pid: u32, prog_type: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return ids };
    for e in dir.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else { continue };
        if link.to_string_lossy() != "anon_inode:bpf-prog" {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy()))
            .unwrap_or_default();
        let field =
            |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u32>().ok());
        if field("prog_type:") == Some(prog_type)
            && let Some(id) = field("prog_id:")
        {
            ids.push(id);
        }
    }
    ids.sort();
    ids.dedup();
    ids
}
