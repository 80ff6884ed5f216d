//! tcptrace's kernel programs: XDP (ingress) and TC (ingress and egress).
//!
//! Each runs the shared parser from `tcptrace-common` on the frame, applies the
//! filter userspace wrote into `CONFIG`/`PORTS`, and for a match writes a
//! [`PacketRecord`] straight into the `EVENTS` ring buffer. They never change,
//! redirect or drop a frame: XDP returns `XDP_PASS`, TC returns `TC_ACT_UNSPEC`
//! (tcx: "next"), so later programs and the stack see the frame as it was.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action, xdp_md, __sk_buff},
    helpers::{bpf_ktime_get_boot_ns, bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use tcptrace_common::{
    FilterConfig, Frame, LinkType, PacketRecord, PortBitmap, Skip,
    filter::matches,
    parse::{fill_record, parse_headers},
    record::{Direction, MALFORMED_KINDS, MAX_OPTIONS, counter},
};

/// Records for userspace. Its size is set by the loader (`--buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Entry 0: the filter.
#[map]
static CONFIG: Array<FilterConfig> = Array::with_max_entries(1, 0);

/// Entry 0: the traced ports, when `CONFIG.use_ports` is set.
#[map]
static PORTS: Array<PortBitmap> = Array::with_max_entries(1, 0);

/// Event counters, indexed by `tcptrace_common::record::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Malformed frames, indexed by `Malformed`.
#[map]
static MALFORMED: PerCpuArray<u64> = PerCpuArray::with_max_entries(MALFORMED_KINDS as u32, 0);

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        // Per-CPU slot: no other writer while this program runs on this CPU.
        unsafe { *p += 1 };
    }
}

/// `len` if it is in 1..=40, re-read through a volatile load so that LLVM
/// cannot replace the range check below with an equivalent test on another
/// register (which the verifier could not connect to `len`).
#[inline(always)]
fn verifier_bounded_len(len: u32) -> Option<u32> {
    // SAFETY: reading a local through a valid reference.
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len == 0 || len > MAX_OPTIONS as u32 { None } else { Some(len) }
}

struct XdpFrame {
    ctx: *mut xdp_md,
    len: u32,
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        self.len
    }
    #[inline(always)]
    fn cap_len(&self) -> u32 {
        self.len
    }
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        let rc = unsafe { bpf_xdp_load_bytes(self.ctx, off, out.as_mut_ptr().cast(), N as u32) };
        if rc == 0 { Some(out) } else { None }
    }
    #[inline(always)]
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        let Some(len) = verifier_bounded_len(len) else { return false };
        unsafe { bpf_xdp_load_bytes(self.ctx, off, out.as_mut_ptr().cast(), len) == 0 }
    }
}

struct SkbFrame {
    skb: *mut __sk_buff,
    len: u32,
}

impl Frame for SkbFrame {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        self.len
    }
    #[inline(always)]
    fn cap_len(&self) -> u32 {
        self.len
    }
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        let rc = unsafe { bpf_skb_load_bytes(self.skb.cast(), off, out.as_mut_ptr().cast(), N as u32) };
        if rc == 0 { Some(out) } else { None }
    }
    #[inline(always)]
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        let Some(len) = verifier_bounded_len(len) else { return false };
        unsafe { bpf_skb_load_bytes(self.skb.cast(), off, out.as_mut_ptr().cast(), len) == 0 }
    }
}

/// Parses, filters and emits one frame. Never fails: every outcome is counted.
#[inline(always)]
fn trace<F: Frame>(frame: &F, ifindex: u32, direction: Direction) {
    bump(&COUNTERS, counter::FRAMES);
    let headers = match parse_headers(frame, LinkType::Ethernet) {
        Ok(h) => h,
        Err(Skip::NotTcp) => return,
        Err(Skip::LaterFragment) => {
            bump(&COUNTERS, counter::LATER_FRAGMENTS);
            return;
        }
        Err(Skip::Malformed(reason)) => {
            bump(&MALFORMED, reason as u32);
            return;
        }
    };
    bump(&COUNTERS, counter::TCP);
    let Some(cfg) = CONFIG.get(0) else { return };
    if !matches(&headers, cfg, PORTS.get(0)) {
        return;
    }
    bump(&COUNTERS, counter::MATCHED);
    let Some(mut entry) = EVENTS.reserve::<PacketRecord>(0) else {
        bump(&COUNTERS, counter::RINGBUF_FULL);
        return;
    };
    let rec = entry.write(PacketRecord::zeroed());
    rec.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    rec.ifindex = ifindex;
    rec.direction = direction as u8;
    fill_record(frame, &headers, rec);
    let malformed = rec.malformed;
    entry.submit(0);
    bump(&COUNTERS, counter::EMITTED);
    if malformed != 0 {
        bump(&MALFORMED, malformed as u32);
    }
}

#[xdp]
pub fn tcptrace_xdp(ctx: XdpContext) -> u32 {
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    trace(&XdpFrame { ctx: ctx.ctx, len }, ifindex, Direction::Ingress);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn tc(ctx: &TcContext, direction: Direction) -> i32 {
    let skb = ctx.skb.skb;
    let (len, ifindex) = unsafe { ((*skb).len, (*skb).ifindex) };
    trace(&SkbFrame { skb, len }, ifindex, direction);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn tcptrace_tc_ingress(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Ingress)
}

#[classifier]
pub fn tcptrace_tc_egress(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Egress)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
