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
    bindings::{
        __sk_buff, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC, xdp_action, xdp_md,
    },
    helpers::{bpf_ktime_get_boot_ns, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    macros::{classifier, map, xdp},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use tcptrace_common::{
    FilterConfig, Frame, LinkType, PacketRecord, PortSet, RecordKind, Skip,
    conn::{self, ConnKey, ConnState, Step},
    filter::{HostSet, matches_endpoints, matches_flags, matches_hosts},
    parse::{Headers, conn_key, fill_ext, fill_record, parse_headers},
    record::{Direction, EXT_TAIL_HEAD, ExtRecord, MAX_OPTIONS, RECORD_SIZE, Stats, counter},
};

/// Records for userspace. Its size is set by the loader (`--buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// A value the loader writes into the object before loading it (aya's
/// `override_global`), in a `.rodata.*` section: aya loads that as a frozen
/// read-only map, so no map lookup reads it and the verifier knows its
/// values (the branches they rule out cost nothing at run time). Behind an
/// `UnsafeCell`, LLVM takes it for memory that may hold other bytes than
/// the initialiser's and reads it, only the fields a path uses; a plain
/// `static` it would fold into its initialiser. (The programs never write
/// it; the verifier would refuse.)
#[repr(transparent)]
struct LoaderWritten<T>(core::cell::UnsafeCell<T>);

// SAFETY: read-only for the programs (see above).
unsafe impl<T> Sync for LoaderWritten<T> {}

impl<T> LoaderWritten<T> {
    const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// The value as the loader wrote it.
    #[inline(always)]
    fn get(&'static self) -> &'static T {
        // SAFETY: never written once loaded.
        unsafe { &*self.0.get() }
    }
}

/// The filter.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".rodata.filter")]
static FILTER: LoaderWritten<FilterConfig> = LoaderWritten::new(FilterConfig {
    flag_mask: 0,
    family: 0,
    use_ports: 0,
    track_states: 0,
    use_hosts: 0,
    _pad: [0; 2],
    wake_every_ns: 0,
    wake_bytes: 0,
});

/// The traced ports, when `FILTER.use_ports` is set.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".rodata.filter")]
static PORT_SET: LoaderWritten<PortSet> = LoaderWritten::new(PortSet::empty());

/// The traced addresses and networks, when `FILTER.use_hosts` is set.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".rodata.filter")]
static HOST_SET: LoaderWritten<HostSet> = LoaderWritten::new(HostSet::empty());

/// The filter as the loader wrote it.
#[inline(always)]
fn filter() -> &'static FilterConfig {
    FILTER.get()
}

/// The traced ports as the loader wrote them.
#[inline(always)]
fn ports() -> &'static PortSet {
    PORT_SET.get()
}

/// What the kernel remembers of each connection on the traced ports, to send
/// state-changing segments the flag filter hides. Its size is set by the
/// loader; the least recently used entry makes room for a new one.
#[map]
static CONNS: LruHashMap<ConnKey, ConnState> = LruHashMap::with_max_entries(65536, 0);

/// Scratch space for building a connection key off the small BPF stack.
#[map]
static KEY_SCRATCH: PerCpuArray<ConnKey> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: when this CPU last woke the ring buffer's reader (boot ns).
#[map]
static LAST_WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Submit flags for a record made at `now`: a wakeup when this CPU has not
/// woken the reader for `FILTER.wake_every_ns` (so the first record after a
/// quiet spell comes out at once) or when `FILTER.wake_bytes` wait, none
/// otherwise. Waking the reader (an irq_work, a self-IPI: about a
/// microsecond in a VM) for every record cost more than everything else a
/// record costs; the reader drains the ring buffer again on a timer after
/// each read that found records (see `live.rs`), so no record is left
/// behind.
#[inline(always)]
fn wakeup_flags(now: u64, cfg: &FilterConfig) -> u64 {
    match LAST_WAKEUP.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no other writer while this program runs here.
        Some(last) => unsafe {
            if now.wrapping_sub(*last) >= cfg.wake_every_ns {
                *last = now;
                BPF_RB_FORCE_WAKEUP as u64
            } else if cfg.wake_bytes != 0 && EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= cfg.wake_bytes {
                BPF_RB_FORCE_WAKEUP as u64
            } else {
                BPF_RB_NO_WAKEUP as u64
            }
        },
        None => 0,
    }
}

/// Entry 0: this CPU's event and malformed-frame counters, looked up once
/// per frame (the verifier inlines a per-CPU array lookup: no helper call).
#[map]
static STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's counters.
#[inline(always)]
fn stats() -> Option<&'static mut Stats> {
    // SAFETY: per-CPU slot: no other writer while this program runs on this
    // CPU (programs do not nest on one CPU for these hooks).
    STATS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn bump(stats: &mut Stats, index: u32) {
    if let Some(c) = stats.counters.get_mut(index as usize) {
        *c += 1;
    }
}

#[inline(always)]
fn bump_malformed(stats: &mut Stats, reason: u8) {
    if let Some(c) = stats.malformed.get_mut(reason as usize) {
        *c += 1;
    }
}

/// Highest offset read through direct packet access (the verifier wants the
/// variable part of a packet pointer bounded well below 64 KiB).
const DIRECT_MAX_OFF: u32 = 0x3fff;

/// The frame's linear area (`data..data_end`: XDP's buffer, an skb's head),
/// read through direct packet access: no helper call. A read that does not
/// fit in it returns `None` and marks the frame `incomplete`, because the
/// bytes may still be in the frame (an skb's paged data): a parse that left
/// it complete read only bytes that were there, so its result is exactly
/// what the helper-based frame gives; one that did not is done again with
/// the helpers.
///
/// `len` gives the frame's length when the parser asks for it (IPv6, cooked
/// captures, the record): `skb->len` for TC, which counts paged data too;
/// `data_end - data` for XDP (see [`xdp_len`]).
struct LinearFrame<L: Fn() -> u32> {
    data: usize,
    data_end: usize,
    len: L,
    incomplete: core::cell::Cell<bool>,
}

impl<L: Fn() -> u32> LinearFrame<L> {
    #[inline(always)]
    fn new(data: usize, data_end: usize, len: L) -> Self {
        Self { data, data_end, len, incomplete: core::cell::Cell::new(false) }
    }

    /// The address of `N` bytes at `off` when they are all in the linear
    /// area, in a form the verifier can check: `off` bounded by a test (the
    /// verifier takes the bound from the branch), added to the packet
    /// pointer, the end compared with `data_end`.
    #[inline(always)]
    fn at<const N: usize>(&self, off: u32) -> Option<*const [u8; N]> {
        if off <= DIRECT_MAX_OFF {
            let p = self.data + off as usize;
            if p + N <= self.data_end {
                return Some(p as *const [u8; N]);
            }
        }
        self.incomplete.set(true);
        None
    }
}

impl<L: Fn() -> u32> Frame for LinearFrame<L> {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        (self.len)()
    }
    #[inline(always)]
    fn cap_len(&self) -> u32 {
        (self.len)()
    }
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        // SAFETY: `at` checked that the N bytes are in the packet.
        self.at::<N>(off).map(|p| unsafe { core::ptr::read_unaligned(p) })
    }
    /// The options in 8-byte words and a 4-byte tail (TCP options come in
    /// 4-byte words): no helper call. False when any part of them is not in
    /// the linear area, or their length is not a multiple of 4 (`out` may
    /// then hold some of them).
    #[inline(always)]
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        let Some(len) = verifier_bounded_len(len) else { return false };
        // SAFETY: reading a local (volatile: the verifier must see the
        // bound checked on the register the pointer is made from).
        let off = unsafe { core::ptr::read_volatile(&off) };
        if off > DIRECT_MAX_OFF {
            return false;
        }
        let base = self.data + off as usize;
        let out = out.as_mut_ptr();
        let mut i = 0;
        while i < MAX_OPTIONS / 8 {
            let o = (i * 8) as u32;
            if o >= len {
                return true;
            }
            let left = len - o;
            let p = base + i * 8;
            if left >= 8 && p + 8 <= self.data_end {
                // SAFETY: checked against `data_end` just above; 8 * i + 8 <= MAX_OPTIONS.
                unsafe { copy_bytes::<8>(p, out.add(i * 8)) };
            } else if left == 4 && p + 4 <= self.data_end {
                // SAFETY: as above.
                unsafe { copy_bytes::<4>(p, out.add(i * 8)) };
                return true;
            } else {
                return false;
            }
            i += 1;
        }
        true
    }
    /// Spans (extension headers) are read through the helpers: see [`Direct`].
    #[inline(always)]
    fn load_span<const N: usize>(&self, _off: u32, _len: u32, _out: &mut [u8; N]) -> bool {
        false
    }
}

/// Copies `N` bytes from the packet address `p` to `out`.
///
/// # Safety
/// `p..p + N` must be in the packet and `out..out + N` writable.
#[inline(always)]
unsafe fn copy_bytes<const N: usize>(p: usize, out: *mut u8) {
    // SAFETY: the caller's.
    unsafe { core::ptr::write_unaligned(out.cast::<[u8; N]>(), core::ptr::read_unaligned(p as *const [u8; N])) }
}

/// A frame the fast path parsed completely, for the full path: the record's
/// header fields are read through direct access too (`fill_record` reads
/// only ranges the parse already found in the linear area: the IP header,
/// and the TCP header's first 20 bytes), and so are the options when they
/// are in the linear area (a helper call cost an emitted record 11–25 ns
/// more, kernel bench `--ab`); other options through the frame `back`
/// makes (helpers, which read any part of the frame), and the connection
/// tracking and the address check through their global functions, which
/// get only the context and make their own frame.
struct Direct<'a, L: Fn() -> u32, B, BF: Fn() -> B> {
    linear: &'a LinearFrame<L>,
    back: BF,
}

impl<L: Fn() -> u32, B: Frame, BF: Fn() -> B> Frame for Direct<'_, L, B, BF> {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        self.linear.wire_len()
    }
    #[inline(always)]
    fn cap_len(&self) -> u32 {
        self.linear.cap_len()
    }
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        self.linear.load(off)
    }
    #[inline(always)]
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        self.linear.load_options(off, len, out) || (self.back)().load_options(off, len, out)
    }
    #[inline(always)]
    fn load_span<const N: usize>(&self, off: u32, len: u32, out: &mut [u8; N]) -> bool {
        (self.back)().load_span(off, len, out)
    }
}

impl<L: Fn() -> u32, B: Track, BF: Fn() -> B> Track for Direct<'_, L, B, BF> {
    #[inline(always)]
    fn track(&self, h: &Headers) -> bool {
        (self.back)().track(h)
    }
    #[inline(always)]
    fn hosts(&self, h: &Headers) -> bool {
        (self.back)().hosts(h)
    }
    #[inline(always)]
    fn emit_ext(&self, h: &Headers, meta: u64) {
        (self.back)().emit_ext(h, meta)
    }
}

/// `len` if it is in 1..=40 (see [`verifier_bounded`]).
#[inline(always)]
fn verifier_bounded_len(len: u32) -> Option<u32> {
    verifier_bounded::<MAX_OPTIONS>(len)
}

/// `len` if it is in 1..=N, re-read through a volatile load so that LLVM
/// cannot replace the range check below with an equivalent test on another
/// register (which the verifier could not connect to `len`).
#[inline(always)]
fn verifier_bounded<const N: usize>(len: u32) -> Option<u32> {
    // SAFETY: reading a local through a valid reference.
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len == 0 || len > N as u32 { None } else { Some(len) }
}

/// An XDP frame read with `bpf_xdp_load_bytes`.
struct XdpFrame {
    ctx: *mut xdp_md,
    len: u32,
}

impl XdpFrame {
    /// The frame of the program's context.
    #[inline(always)]
    fn of(ctx: *mut xdp_md) -> Self {
        Self { ctx, len: xdp_len(ctx) }
    }
}

/// The length of an XDP frame: `data_end - data`. The program is loaded
/// without `BPF_F_XDP_HAS_FRAGS`, so the kernel never hands it a
/// multi-buffer frame (drivers refuse to attach it where frames could span
/// buffers; generic XDP linearises the skb first): the linear area is the
/// whole frame, and `bpf_xdp_get_buff_len` would give the same number. That
/// helper call made an emitted record cost 30–40 ns more (it ran twice: for
/// the record's length and for the options' frame) on this VM, where every
/// call into the kernel goes through return-thunk mitigations.
#[inline(always)]
fn xdp_len(ctx: *mut xdp_md) -> u32 {
    // SAFETY: the program's own context.
    unsafe { ((*ctx).data_end as usize).wrapping_sub((*ctx).data as usize) as u32 }
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
        // Not zeroed first: BPF has no inline memset for that, it calls a
        // byte loop. The helper writes all N bytes when it succeeds.
        let mut out = core::mem::MaybeUninit::<[u8; N]>::uninit();
        let rc = unsafe { bpf_xdp_load_bytes(self.ctx, off, out.as_mut_ptr().cast(), N as u32) };
        // SAFETY: written by the helper (rc 0).
        if rc == 0 { Some(unsafe { out.assume_init() }) } else { None }
    }
    #[inline(always)]
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        let Some(len) = verifier_bounded_len(len) else { return false };
        unsafe { bpf_xdp_load_bytes(self.ctx, off, out.as_mut_ptr().cast(), len) == 0 }
    }
    #[inline(always)]
    fn load_into<const N: usize>(&self, off: u32, out: &mut [u8; N]) -> bool {
        unsafe { bpf_xdp_load_bytes(self.ctx, off, out.as_mut_ptr().cast(), N as u32) == 0 }
    }
    #[inline(always)]
    fn load_span<const N: usize>(&self, off: u32, len: u32, out: &mut [u8; N]) -> bool {
        let Some(len) = verifier_bounded::<N>(len) else { return false };
        unsafe { bpf_xdp_load_bytes(self.ctx, off, out.as_mut_ptr().cast(), len) == 0 }
    }
}

/// A TC frame read with `bpf_skb_load_bytes` (linear and paged data alike).
struct SkbFrame {
    skb: *mut __sk_buff,
    len: u32,
}

impl SkbFrame {
    /// The frame of the program's context.
    #[inline(always)]
    fn of(skb: *mut __sk_buff) -> Self {
        // SAFETY: the program's own context.
        Self { skb, len: unsafe { (*skb).len } }
    }
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
        // Not zeroed first (see `XdpFrame::load`).
        let mut out = core::mem::MaybeUninit::<[u8; N]>::uninit();
        let rc = unsafe { bpf_skb_load_bytes(self.skb.cast(), off, out.as_mut_ptr().cast(), N as u32) };
        // SAFETY: written by the helper (rc 0).
        if rc == 0 { Some(unsafe { out.assume_init() }) } else { None }
    }
    #[inline(always)]
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        let Some(len) = verifier_bounded_len(len) else { return false };
        unsafe { bpf_skb_load_bytes(self.skb.cast(), off, out.as_mut_ptr().cast(), len) == 0 }
    }
    #[inline(always)]
    fn load_into<const N: usize>(&self, off: u32, out: &mut [u8; N]) -> bool {
        unsafe { bpf_skb_load_bytes(self.skb.cast(), off, out.as_mut_ptr().cast(), N as u32) == 0 }
    }
    #[inline(always)]
    fn load_span<const N: usize>(&self, off: u32, len: u32, out: &mut [u8; N]) -> bool {
        let Some(len) = verifier_bounded::<N>(len) else { return false };
        unsafe { bpf_skb_load_bytes(self.skb.cast(), off, out.as_mut_ptr().cast(), len) == 0 }
    }
}

// Each program parses, filters and emits one frame. It never fails: every
// outcome is counted.
//
// The fast path: the headers are parsed through direct packet access on the
// linear area, which nearly always holds them all, and a frame that leaves
// no record (not TCP, filtered out, skipped) is counted and done with. Every
// other frame, and any whose headers go past the linear area, takes the
// full path through the helpers from the start, as if the fast path had
// not run.

/// True when the frame leaves no record and was counted. Its decisions are
/// those of [`trace_full`] on the same bytes: a parse that did not read past
/// the linear area read the bytes the helpers would have read.
///
/// Kept apart from `trace_full` (no shared continuation) so that the
/// verifier, which walks every path, adds the cost of this parse to that of
/// the full path instead of multiplying them.
#[inline(always)]
fn done_on_fast_path<L: Fn() -> u32>(linear: &LinearFrame<L>) -> bool {
    let parsed = parse_headers(linear, LinkType::Ethernet);
    if linear.incomplete.get() {
        return false;
    }
    let cfg = filter();
    if let Ok(h) = &parsed
        // With --host/--net, the full path checks the addresses.
        && matches_endpoints(h, cfg, Some(ports()))
        && (cfg.use_hosts != 0 || cfg.track_states != 0 || matches_flags(h, cfg))
    {
        return false;
    }
    // Looked up once the frame is known to end here: a call (even one the
    // verifier inlines) in the middle of the decision made LLVM keep the
    // ports and the context in stack slots across it.
    let Some(stats) = stats() else { return true };
    match parsed {
        Ok(_) => {
            bump(stats, counter::FRAMES);
            bump(stats, counter::TCP);
        }
        Err(Skip::NotTcp) => bump(stats, counter::FRAMES),
        Err(Skip::LaterFragment) => {
            bump(stats, counter::FRAMES);
            bump(stats, counter::LATER_FRAGMENTS);
        }
        Err(Skip::Malformed(reason)) => {
            bump(stats, counter::FRAMES);
            bump_malformed(stats, reason as u8);
        }
    }
    true
}

/// The headers for the full path of a frame the fast path did not finish:
/// parsed again through direct access when that parse was complete (a few
/// ns; the same result as the helpers', see [`LinearFrame`]), else `None`
/// (the full path parses through the helpers). Parsing again costs less
/// than handing the fast path's result over, which kept it in stack slots
/// on the fast path too (+3 ns for every frame skipped).
#[inline(always)]
fn linear_headers<L: Fn() -> u32>(linear: &LinearFrame<L>) -> Option<Result<Headers, Skip>> {
    if linear.incomplete.get() {
        return None;
    }
    let parsed = parse_headers(linear, LinkType::Ethernet);
    (!linear.incomplete.get()).then_some(parsed)
}

/// The full path: parse through the helpers (unless `parsed` gives the
/// result already), filter, track, emit.
#[inline(always)]
fn trace_full<F: Frame + Track>(frame: &F, parsed: Option<Result<Headers, Skip>>, ifindex: u32, direction: Direction) {
    let Some(stats) = stats() else { return };
    bump(stats, counter::FRAMES);
    let parsed = match parsed {
        Some(p) => p,
        None => parse_headers(frame, LinkType::Ethernet),
    };
    let headers = match parsed {
        Ok(h) => h,
        Err(Skip::NotTcp) => return,
        Err(Skip::LaterFragment) => {
            bump(stats, counter::LATER_FRAGMENTS);
            return;
        }
        Err(Skip::Malformed(reason)) => {
            bump_malformed(stats, reason as u8);
            return;
        }
    };
    bump(stats, counter::TCP);
    let cfg = filter();
    if !matches_endpoints(&headers, cfg, Some(ports())) {
        return;
    }
    if cfg.use_hosts != 0 && !frame.hosts(&headers) {
        return;
    }
    // The connection map is only needed when the flag filter hides segments;
    // shown segments update it too, so that it knows every SYN and FIN.
    let shown = matches_flags(&headers, cfg);
    let relevant = cfg.track_states != 0 && frame.track(&headers);
    let kind = if shown {
        bump(stats, counter::MATCHED);
        RecordKind::Packet
    } else if relevant {
        bump(stats, counter::STATE_ONLY);
        RecordKind::StateOnly
    } else {
        return;
    };
    if headers.ext_count != 0 {
        // Rare, and sent with the extension headers' bytes: see `emit_ext`.
        frame.emit_ext(&headers, ifindex as u64 | (kind as u64) << 32 | (direction as u64) << 40);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<PacketRecord>(0) else {
        bump(stats, counter::RINGBUF_FULL);
        return;
    };
    // SAFETY: the entry is valid ring-buffer memory for one record, 8-byte
    // aligned.
    let (now, malformed) =
        unsafe { build_record(entry.as_mut_ptr(), frame, &headers, ifindex, direction as u8, kind as u8) };
    entry.submit(wakeup_flags(now, cfg));
    count_sent(stats, malformed);
}

/// Zeroes the record at `rec` in place and fills it for the frame (`h` its
/// headers), seen now on interface `ifindex` in `direction`, as a record of
/// `kind`; returns the time it was made and its [`tcptrace_common::Malformed`]
/// reason. Zeroed with word stores (volatile, so that LLVM does not make
/// them a `memset` call: BPF's is a byte loop, 144 stores, a quarter of an
/// emitted record's cost).
///
/// # Safety
/// `rec` must be valid, 8-byte aligned memory for one record, not otherwise
/// in use.
#[inline(always)]
unsafe fn build_record<F: Frame>(
    rec: *mut PacketRecord,
    frame: &F,
    h: &Headers,
    ifindex: u32,
    direction: u8,
    kind: u8,
) -> (u64, u8) {
    // SAFETY: the caller's; every bit pattern is a valid record.
    let rec = unsafe {
        let words = rec.cast::<u64>();
        let mut i = 0;
        while i < RECORD_SIZE / 8 {
            core::ptr::write_volatile(words.add(i), 0);
            i += 1;
        }
        &mut *rec
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    rec.ts_ns = now;
    rec.ifindex = ifindex;
    rec.direction = direction;
    fill_record(frame, h, rec);
    rec.kind = kind;
    (now, rec.malformed)
}

/// Counts a record sent, and its malformed reason when it has one.
#[inline(always)]
fn count_sent(stats: &mut Stats, malformed: u8) {
    bump(stats, counter::EMITTED);
    if malformed != 0 {
        bump_malformed(stats, malformed);
    }
}

/// The connection tracking of a frame type, behind a global BPF function.
trait Track {
    fn track(&self, h: &Headers) -> bool;
    /// Whether the segment comes from or goes to a `--host`/`--net` entry.
    fn hosts(&self, h: &Headers) -> bool;
    /// Sends the record of a frame with IPv6 extension headers (see
    /// [`emit_ext`]); `meta` is the interface index, the kind << 32 and
    /// the direction << 40.
    fn emit_ext(&self, h: &Headers, meta: u64);
}

impl Track for SkbFrame {
    #[inline(always)]
    fn track(&self, h: &Headers) -> bool {
        tcptrace_track_skb(self.skb, h)
    }
    #[inline(always)]
    fn hosts(&self, h: &Headers) -> bool {
        tcptrace_hosts_skb(self.skb, h)
    }
    #[inline(always)]
    fn emit_ext(&self, h: &Headers, meta: u64) {
        tcptrace_ext_skb(self.skb, h, meta);
    }
}

impl Track for XdpFrame {
    #[inline(always)]
    fn track(&self, h: &Headers) -> bool {
        tcptrace_track_xdp(self.ctx, h)
    }
    #[inline(always)]
    fn hosts(&self, h: &Headers) -> bool {
        tcptrace_hosts_xdp(self.ctx, h)
    }
    #[inline(always)]
    fn emit_ext(&self, h: &Headers, meta: u64) {
        tcptrace_ext_xdp(self.ctx, h, meta);
    }
}

/// The `--host`/`--net` check for TC programs, a global function like
/// [`tcptrace_track_skb`] (as a static one, walked for every state of its
/// callers, it made the verifier give up).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcptrace_hosts_skb(skb: *mut __sk_buff, h: *const Headers) -> bool {
    given(h).is_some_and(|h| matches_hosts(&SkbFrame::of(skb), h, hosts()))
}

/// The `--host`/`--net` check for the XDP program.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcptrace_hosts_xdp(ctx: *mut xdp_md, h: *const Headers) -> bool {
    given(h).is_some_and(|h| matches_hosts(&XdpFrame::of(ctx), h, hosts()))
}

/// The traced addresses as the loader wrote them.
#[inline(always)]
fn hosts() -> &'static HostSet {
    HOST_SET.get()
}

// [`track`] as global functions: the verifier checks a global function once,
// on its own, from its argument types, where it walked a static one again
// for every different state of its caller (each outcome of the parse before
// it): that made most of the load time with state tracking on.
//
// Only the context and the headers cross these calls: an argument a function
// does not use may be left unset by the caller (LLVM passes it as
// undefined), which the verifier rejects for a global function.

/// The headers a global function was given: the verifier cannot know the
/// pointer is never null.
#[inline(always)]
fn given<'a>(h: *const Headers) -> Option<&'a Headers> {
    // SAFETY: the callers pass their own headers (or, to the verifier's
    // mind, possibly null).
    unsafe { h.as_ref() }
}

/// A frame read through direct access where the bytes are in the linear
/// area, else through `back` (the helpers), read by read: for the
/// connection tracking's global functions, which read only the addresses (a
/// helper call per read made the tracking of a data segment 10–26 ns
/// dearer, kernel bench `--ab`). The address check of `--host`/`--net`
/// keeps the helpers: with this frame its stack and its caller's together
/// went past BPF's 512 bytes.
struct LinearFirst<B: Frame> {
    data: usize,
    data_end: usize,
    back: B,
}

impl<B: Frame> Frame for LinearFirst<B> {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        self.back.wire_len()
    }
    #[inline(always)]
    fn cap_len(&self) -> u32 {
        self.back.cap_len()
    }
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        LinearFrame::new(self.data, self.data_end, || 0).load(off).or_else(|| self.back.load(off))
    }
    #[inline(always)]
    fn load_options(&self, off: u32, len: u32, out: &mut [u8; MAX_OPTIONS]) -> bool {
        self.back.load_options(off, len, out)
    }
    #[inline(always)]
    fn load_span<const N: usize>(&self, off: u32, len: u32, out: &mut [u8; N]) -> bool {
        self.back.load_span(off, len, out)
    }
}

impl LinearFirst<SkbFrame> {
    #[inline(always)]
    fn skb(skb: *mut __sk_buff) -> Self {
        // SAFETY: the program's own context.
        let (data, data_end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
        Self { data, data_end, back: SkbFrame::of(skb) }
    }
}

impl LinearFirst<XdpFrame> {
    #[inline(always)]
    fn xdp(ctx: *mut xdp_md) -> Self {
        // SAFETY: the program's own context.
        let (data, data_end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
        Self { data, data_end, back: XdpFrame::of(ctx) }
    }
}

/// [`track`] for TC programs. `h` must point to the frame's headers.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcptrace_track_skb(skb: *mut __sk_buff, h: *const Headers) -> bool {
    given(h).is_some_and(|h| track(&LinearFirst::skb(skb), h))
}

/// [`track`] for the XDP program. `h` must point to the frame's headers.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcptrace_track_xdp(ctx: *mut xdp_md, h: *const Headers) -> bool {
    given(h).is_some_and(|h| track(&LinearFirst::xdp(ctx), h))
}

/// Updates the connection map with this segment; true when it changes the
/// connection's state.
#[inline(always)]
fn track<F: Frame>(frame: &F, h: &Headers) -> bool {
    if h.tcp_fixed < 20 {
        return false;
    }
    let Some(key) = KEY_SCRATCH.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU scratch slot, used only here while this program runs.
    let key = unsafe { &mut *key };
    let Some(from) = conn_key(frame, h, key) else { return false };
    let seg = h.segment();
    match CONNS.get_ptr_mut(&*key) {
        Some(st) => {
            // SAFETY: a valid map value pointer for the duration of this program.
            let st = unsafe { &mut *st };
            match conn::step(st, from, &seg) {
                Step::Nothing => false,
                Step::Relevant => true,
                Step::Closed => {
                    if CONNS.remove(&*key).is_ok()
                        && let Some(stats) = stats()
                    {
                        bump(stats, counter::CONN_CLOSED);
                    }
                    true
                }
            }
        }
        None => {
            let mut slot = core::mem::MaybeUninit::uninit();
            let st = ConnState::zeroed_in(&mut slot);
            match conn::step(st, from, &seg) {
                Step::Nothing => false,
                // A RST on a connection we do not know: relevant, nothing to keep.
                Step::Closed => true,
                Step::Relevant => {
                    if CONNS.insert(&*key, &*st, 0).is_ok()
                        && let Some(stats) = stats()
                    {
                        bump(stats, counter::CONN_NEW);
                    }
                    true
                }
            }
        }
    }
}

/// Per CPU: where the record of a frame with IPv6 extension headers is
/// built, with the headers' bytes, before it is copied into `EVENTS` (its
/// size depends on theirs, which a reservation's cannot).
#[map]
static EXT_RECORD: PerCpuArray<ExtRecord> = PerCpuArray::with_max_entries(1, 0);

/// [`emit_ext`] for TC programs. `h` must point to the frame's headers.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcptrace_ext_skb(skb: *mut __sk_buff, h: *const Headers, meta: u64) -> bool {
    given(h).is_some_and(|h| emit_ext(&SkbFrame::of(skb), h, meta))
}

/// [`emit_ext`] for the XDP program.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcptrace_ext_xdp(ctx: *mut xdp_md, h: *const Headers, meta: u64) -> bool {
    given(h).is_some_and(|h| emit_ext(&XdpFrame::of(ctx), h, meta))
}

/// Sends the record of a frame with IPv6 extension headers, followed by
/// their bytes ([`ExtRecord`], cut after them): built in `EXT_RECORD`,
/// then copied with `bpf_ringbuf_output`, which takes a size known only at
/// run time, as a reservation cannot. A global function (see [`track`]'s),
/// verified once, apart from the parse; it reads the frame through the
/// helpers, whose copies take less of the stack its caller leaves it than
/// direct reads did. True when the record was sent.
#[inline(always)]
fn emit_ext<F: Frame>(frame: &F, h: &Headers, meta: u64) -> bool {
    let Some(stats) = stats() else { return false };
    let Some(r) = EXT_RECORD.get_ptr_mut(0) else { return false };
    // SAFETY: this CPU's slot, used only by this program while it runs.
    let (now, malformed) =
        unsafe { build_record(&raw mut (*r).rec, frame, h, meta as u32, (meta >> 40) as u8, (meta >> 32) as u8) };
    // SAFETY: as above.
    let r = unsafe { &mut *r };
    fill_ext(frame, h, &mut r.tail);
    let Some(size) = verifier_bounded::<{ core::mem::size_of::<ExtRecord>() }>(
        (RECORD_SIZE + EXT_TAIL_HEAD) as u32 + r.tail.len as u32,
    ) else {
        return false;
    };
    // SAFETY: `size` bytes of the slot (bounded just above).
    let bytes = unsafe { core::slice::from_raw_parts((r as *const ExtRecord).cast::<u8>(), size as usize) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flags(now, filter())).is_err() {
        bump(stats, counter::RINGBUF_FULL);
        return false;
    }
    count_sent(stats, malformed);
    true
}

#[xdp]
pub fn tcptrace_xdp(ctx: XdpContext) -> u32 {
    let xdp = ctx.ctx;
    let linear = LinearFrame::new(ctx.data(), ctx.data_end(), || xdp_len(xdp));
    if done_on_fast_path(&linear) {
        return xdp_action::XDP_PASS;
    }
    let ifindex = unsafe { (*xdp).ingress_ifindex };
    let back = || XdpFrame::of(xdp);
    match linear_headers(&linear) {
        Some(parsed) => trace_full(&Direct { linear: &linear, back }, Some(parsed), ifindex, Direction::Ingress),
        None => trace_full(&back(), None, ifindex, Direction::Ingress),
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn tc(ctx: &TcContext, direction: Direction) -> i32 {
    let skb = ctx.skb.skb;
    // Read where it is used: the fast path never needs it.
    let len = || unsafe { (*skb).len };
    let linear = LinearFrame::new(ctx.data(), ctx.data_end(), len);
    if done_on_fast_path(&linear) {
        return TC_ACT_UNSPEC;
    }
    let ifindex = unsafe { (*skb).ifindex };
    let back = || SkbFrame::of(skb);
    match linear_headers(&linear) {
        Some(parsed) => trace_full(&Direct { linear: &linear, back }, Some(parsed), ifindex, direction),
        None => trace_full(&back(), None, ifindex, direction),
    }
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
