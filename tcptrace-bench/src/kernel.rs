//! Kernel cost per packet: tcptrace's XDP and TC programs against an empty
//! pass-through program of the same type, all run with BPF_PROG_TEST_RUN
//! (the kernel's own per-run average over `repeat` runs).

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};
use aya::programs::{SchedClassifier, Xdp};
use tcptrace::loader::{Sizes, TC_INGRESS_PROG, Tracer, XDP_PROG};
use tcptrace_common::{FilterConfig, PortSet, record::flags};

use crate::{bpf, frames, util::median};

/// The ring buffer with a reader: tcptrace's default size, so that records
/// are written to memory the reader keeps reusing, as in a real run.
const RING_BYTES: u32 = 4 << 20;

pub struct Row {
    pub hook: &'static str,
    pub case: &'static str,
    pub empty_ns: f64,
    pub ns: f64,
    /// The median over the rounds of the case's time less that of the empty
    /// program's run just before it.
    pub extra_ns: f64,
    pub target: Option<f64>,
}

fn filter(track_states: bool) -> (FilterConfig, PortSet) {
    let mut ports = PortSet::empty();
    ports.insert(8080);
    let cfg = FilterConfig {
        flag_mask: flags::SYN | flags::FIN | flags::RST,
        use_ports: 1,
        track_states: track_states as u8,
        // As tcptrace loads it for a terminal or -l (the most wakeups).
        wake_every_ns: tcptrace_common::filter::WAKE_EVERY_INTERACTIVE_NS,
        ..Default::default()
    };
    (cfg, ports)
}

/// A data segment with timestamps, `sport` > `dport`.
fn ack_frame(dport: u16) -> Vec<u8> {
    let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    frames::tcp4(&frames::Tcp {
        flags: flags::ACK | flags::PSH,
        dport,
        ack: 5000,
        options: ts.to_vec(),
        payload: vec![0x55; 100],
        ..Default::default()
    })
}

fn syn_frame() -> Vec<u8> {
    frames::tcp4(&frames::Tcp { options: frames::syn_options(), ..Default::default() })
}

struct Loaded {
    tracer: Tracer,
    drained: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    consumer: Option<std::thread::JoinHandle<()>>,
    /// Without a consumer thread: the ring buffer, read between runs.
    events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
}

impl Loaded {
    /// tcptrace's programs with no reader while they run: [`Loaded::drain`]
    /// empties the ring buffer between runs (a run of 1,000,000 records
    /// fits in it).
    fn without_reader(object: &[u8]) -> Result<Self> {
        let (cfg, ports) = filter(false);
        let sizes = Sizes { ring_buffer: 256 << 20, conn_table: 65536 };
        let mut tracer = Tracer::load(object, &cfg, &ports, sizes).context("load tcptrace")?;
        let events = tracer.take_events()?;
        let (drained, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        Ok(Self { tracer, drained, stop, consumer: None, events: Some(events) })
    }

    /// Reads what waits in the ring buffer (without a consumer thread).
    fn drain(&mut self) {
        if let Some(ev) = self.events.as_mut() {
            self.drained.fetch_add(read_all(ev), Ordering::Relaxed);
        }
    }

    fn new(track_states: bool) -> Result<Self> {
        Self::with_filter(tcptrace::ebpf::OBJECT, filter(track_states))
    }

    /// As tcptrace loads its programs for output to a file or a pipe.
    fn batch() -> Result<Self> {
        let (mut cfg, ports) = filter(false);
        tcptrace::filter::set_delivery(&mut cfg, true, RING_BYTES);
        Self::with_filter(tcptrace::ebpf::OBJECT, (cfg, ports))
    }

    fn with_filter(object: &[u8], (cfg, ports): (FilterConfig, PortSet)) -> Result<Self> {
        // tcptrace's default size: the consumer keeps up (a run in which it
        // did not is measured again).
        let sizes = Sizes { ring_buffer: RING_BYTES, conn_table: 65536 };
        let mut tracer = Tracer::load(object, &cfg, &ports, sizes).context("load tcptrace")?;
        let mut events = tracer.take_events()?;
        let drained = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (drained.clone(), stop.clone());
        // The consumer: waits on the ring buffer's fd as tcptrace does, then
        // reads every record.
        let consumer = std::thread::spawn(move || {
            let fd = events.as_raw_fd();
            while !s.load(Ordering::Relaxed) {
                let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 20) };
                d.fetch_add(read_all(&mut events), Ordering::Relaxed);
            }
        });
        Ok(Self { tracer, drained, stop, consumer: Some(consumer), events: None })
    }

    fn fd(&mut self, xdp: bool) -> Result<BorrowedFd<'_>> {
        Ok(if xdp {
            let p: &mut Xdp = self.tracer.program(XDP_PROG)?;
            p.fd()?.as_fd()
        } else {
            let p: &mut SchedClassifier = self.tracer.program(TC_INGRESS_PROG)?;
            p.fd()?.as_fd()
        })
    }
}

/// The emit floor ([`bpf::load_emit_floor`]) for both hooks, with its own
/// ring buffer of the size (c') uses, read between runs as (c')'s is.
struct Floor {
    xdp: std::os::fd::OwnedFd,
    tc: std::os::fd::OwnedFd,
    events: aya::maps::RingBuf<aya::maps::MapData>,
}

impl Floor {
    fn new() -> Result<Self> {
        let ring = bpf::ring_buffer(256 << 20).context("create the floor's ring buffer")?;
        let size = tcptrace_common::record::RECORD_SIZE as u32;
        let xdp =
            bpf::load_emit_floor(bpf::BPF_PROG_TYPE_XDP, ring.as_fd(), size).context("load the XDP emit floor")?;
        let tc =
            bpf::load_emit_floor(bpf::BPF_PROG_TYPE_SCHED_CLS, ring.as_fd(), size).context("load the TC emit floor")?;
        let map = aya::maps::MapData::from_fd(ring).context("the floor's ring buffer")?;
        let events = aya::maps::RingBuf::try_from(aya::maps::Map::RingBuf(map))?;
        Ok(Self { xdp, tc, events })
    }

    /// Empties the ring buffer; the number of records read.
    fn drain(&mut self) -> u64 {
        read_all(&mut self.events)
    }
}

/// Reads every record waiting in `events`, as tcptrace does (each one
/// touched); how many there were.
fn read_all(events: &mut aya::maps::RingBuf<aya::maps::MapData>) -> u64 {
    let mut n = 0;
    while let Some(item) = events.next() {
        std::hint::black_box(&*item);
        n += 1;
    }
    n
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.consumer.take() {
            let _ = c.join();
        }
    }
}

pub fn run(rounds: usize, repeat: u32) -> Result<(Vec<Row>, String)> {
    let mut plain = Loaded::new(false)?;
    let mut states = Loaded::new(true)?;
    let mut alone = Loaded::without_reader(tcptrace::ebpf::OBJECT)?;
    let mut batch = Loaded::batch()?;
    let empty_xdp = bpf::load_empty(bpf::BPF_PROG_TYPE_XDP).context("load the empty XDP program")?;
    let empty_tc = bpf::load_empty(bpf::BPF_PROG_TYPE_SCHED_CLS).context("load the empty TC program")?;
    let mut floor = Floor::new()?;
    let skip_xdp = bpf::load_skip_floor(bpf::BPF_PROG_TYPE_XDP, 8080).context("load the XDP skip floor")?;
    let skip_tc = bpf::load_skip_floor(bpf::BPF_PROG_TYPE_SCHED_CLS, 8080).context("load the TC skip floor")?;
    let mut floor_read = 0;
    let mut rerun = 0;
    let (untraced, traced_ack, syn) = (ack_frame(9999), ack_frame(8080), syn_frame());
    // (case, frame, which load, target ns over empty)
    #[derive(Clone, Copy, PartialEq)]
    enum Which {
        Plain,
        States,
        Alone,
        Batch,
        Floor,
        SkipFloor,
    }
    let cases: [(&'static str, &[u8], Which, Option<f64>); 8] = [
        ("(a) port not traced", &untraced, Which::Plain, Some(5.0)),
        (
            "(g) floor of (a): Ethernet type, IP protocol, port read and compared; nothing else",
            &untraced,
            Which::SkipFloor,
            None,
        ),
        ("(b) traced port, flags filter it out (--no-states)", &traced_ack, Which::Plain, Some(5.0)),
        ("(b') same, state tracking on (default)", &traced_ack, Which::States, None),
        ("(c) SYN emitted, consumer draining", &syn, Which::Plain, Some(40.0)),
        ("(c') SYN emitted, ring buffer read only between runs", &syn, Which::Alone, None),
        ("(c'') SYN emitted, consumer draining, file-or-pipe wakeups", &syn, Which::Batch, None),
        ("(f) floor of (c'): clock, reserve, 144-byte write, submit; no parse", &syn, Which::Floor, None),
    ];
    let mut rows = Vec::new();
    for (hook, xdp) in [("XDP", true), ("TC", false)] {
        let empty = if xdp { empty_xdp.as_fd() } else { empty_tc.as_fd() };
        let mut empty_all = Vec::new();
        let mut per_case: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        let mut extra: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        // Rounds interleave the reference and the cases, so that noise from
        // other work on the machine falls on all of them alike.
        for _ in 0..rounds {
            for (i, (_, frame, st, _)) in cases.iter().enumerate() {
                let (rv, empty_ns) = bpf::test_run(empty, frame, repeat)?;
                check_verdict(xdp, rv)?;
                empty_all.push(empty_ns as f64);
                let ns = match st {
                    Which::SkipFloor | Which::Floor => {
                        let fd = match (st, xdp) {
                            (Which::SkipFloor, true) => skip_xdp.as_fd(),
                            (Which::SkipFloor, false) => skip_tc.as_fd(),
                            (_, true) => floor.xdp.as_fd(),
                            (_, false) => floor.tc.as_fd(),
                        };
                        let (rv, ns) = bpf::test_run(fd, frame, repeat)?;
                        if *st == Which::Floor {
                            floor_read += floor.drain();
                        }
                        check_verdict(xdp, rv)?;
                        ns
                    }
                    Which::Plain | Which::States | Which::Alone | Which::Batch => {
                        let l = match st {
                            Which::Plain => &mut plain,
                            Which::States => &mut states,
                            Which::Alone => &mut alone,
                            _ => &mut batch,
                        };
                        // A run in which the reader fell behind (another
                        // process had its CPU) and records took the cheaper
                        // "full" path measures something else: it is run
                        // again.
                        let mut tries = 0;
                        loop {
                            let full_before = l.tracer.counters()?.ringbuf_full;
                            let (rv, ns) = bpf::test_run(l.fd(xdp)?, frame, repeat)?;
                            l.drain();
                            check_verdict(xdp, rv)?;
                            if l.tracer.counters()?.ringbuf_full == full_before {
                                break ns;
                            }
                            tries += 1;
                            rerun += 1;
                            if tries == 5 {
                                bail!("the ring buffer filled in 5 runs in a row of {hook} {}", cases[i].0);
                            }
                            // Let the reader empty it.
                            std::thread::sleep(std::time::Duration::from_millis(300));
                        }
                    }
                };
                per_case[i].push(ns as f64);
                extra[i].push(ns as f64 - empty_ns as f64);
            }
        }
        let e = median(&empty_all);
        for (i, (case, _, _, target)) in cases.iter().enumerate() {
            let (ns, extra_ns) = (median(&per_case[i]), median(&extra[i]));
            rows.push(Row { hook, case, empty_ns: e, ns, extra_ns, target: *target });
        }
    }
    let c = plain.tracer.counters()?;
    // Let the consumer catch up before reading its count.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let note = format!(
        "records emitted {}, ring buffer full {} (runs measured again for it: {rerun}), read by the consumer {}",
        c.emitted,
        c.ringbuf_full,
        plain.drained.load(Ordering::Relaxed)
    );
    // Every run of the floor must have emitted all its records.
    let floor_runs = 2 * rounds as u64 * repeat as u64;
    if floor_read != floor_runs {
        bail!("the emit floor's ring buffer gave {floor_read} records for {floor_runs} runs");
    }
    Ok((rows, note))
}

/// One line of [`ab`]: a case, both objects' medians.
pub struct AbRow {
    pub hook: &'static str,
    pub case: &'static str,
    pub a_ns: f64,
    pub b_ns: f64,
}

/// The embedded programs (A) against those of another build's object file
/// (B), for telling apart changes smaller than the run-to-run noise: cases
/// (a), (b), (b') and (c') (no reader: the least noisy emitting case), the two
/// objects run back to back in each round, in the order ABBA then BAAB, so
/// that drift over a round falls on both alike.
pub fn ab(rounds: usize, repeat: u32, other: &[u8]) -> Result<Vec<AbRow>> {
    let mut a = [
        Loaded::new(false)?,
        Loaded::with_filter(tcptrace::ebpf::OBJECT, filter(true))?,
        Loaded::without_reader(tcptrace::ebpf::OBJECT)?,
    ];
    let mut b = [
        Loaded::with_filter(other, filter(false))?,
        Loaded::with_filter(other, filter(true))?,
        Loaded::without_reader(other)?,
    ];
    let (untraced, traced_ack, syn) = (ack_frame(9999), ack_frame(8080), syn_frame());
    // (case, frame, which load: 0 plain, 1 states, 2 no reader)
    let cases: [(&'static str, &[u8], usize); 4] = [
        ("(a) port not traced", &untraced, 0),
        ("(b) traced port, flags filter it out (--no-states)", &traced_ack, 0),
        ("(b') same, state tracking on (default)", &traced_ack, 1),
        ("(c') SYN emitted, ring buffer read only between runs", &syn, 2),
    ];
    let mut rows = Vec::new();
    for (hook, xdp) in [("XDP", true), ("TC", false)] {
        for (case, frame, which) in cases {
            let (mut sa, mut sb) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let order: [bool; 4] =
                    if round % 2 == 0 { [false, true, true, false] } else { [true, false, false, true] };
                for is_b in order {
                    let l = if is_b { &mut b[which] } else { &mut a[which] };
                    let (rv, ns) = bpf::test_run(l.fd(xdp)?, frame, repeat)?;
                    l.drain();
                    check_verdict(xdp, rv)?;
                    if is_b { &mut sb } else { &mut sa }.push(ns as f64);
                }
            }
            rows.push(AbRow { hook, case, a_ns: median(&sa), b_ns: median(&sb) });
        }
    }
    Ok(rows)
}

fn check_verdict(xdp: bool, rv: u32) -> Result<()> {
    let want = if xdp { 2 } else { u32::MAX };
    if rv != want {
        bail!("verdict {rv}, expected {want}");
    }
    Ok(())
}
