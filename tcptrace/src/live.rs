//! Live tracing: load, attach, consume the ring buffer, print.

use std::{
    io::{self, IsTerminal, Write},
    net::IpAddr,
};

use anyhow::{Context as _, bail};
use aya::maps::{MapData, RingBuf};
use tcptrace_common::{PacketRecord, RecordKind, decode::decode_entry};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::Args,
    format::{LinkInfo, Timestamp},
    loader::{self, Tracer},
    names::Resolver,
    pcap::BoxWrite,
    pipeline::{Flow, Pipeline, TimeBase},
};

/// Converts `CLOCK_BOOTTIME` nanoseconds (the kernel's record timestamps) to
/// wall-clock time. The offset between the clocks is sampled again for every
/// batch of records, so it follows clock steps and never drifts.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    offset_ns: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl BootClock {
    pub fn sample() -> Self {
        // Read boottime between two realtime reads and use their midpoint.
        let r1 = clock_ns(libc::CLOCK_REALTIME);
        let b = clock_ns(libc::CLOCK_BOOTTIME);
        let r2 = clock_ns(libc::CLOCK_REALTIME);
        Self { offset_ns: (r1 + r2) / 2 - b }
    }

    pub fn to_timestamp(&self, boot_ns: u64) -> Timestamp {
        self.time_base().timestamp(boot_ns as i64)
    }

    pub fn time_base(&self) -> TimeBase {
        TimeBase::Boot { offset_ns: self.offset_ns }
    }
}

/// The next name from the resolver, if there is one (never ready otherwise).
async fn next_name(resolver: &mut Option<Resolver>) -> Option<(IpAddr, Option<String>)> {
    match resolver {
        Some(r) if r.outstanding() > 0 => r.recv().await,
        _ => std::future::pending().await,
    }
}

/// How soon after reading records we look again for records the kernel
/// submitted without waking us, for a kernel that wakes us at most every
/// `wake_every_ns` per CPU (see [`tcptrace_common::filter::FilterConfig`]).
///
/// A record submitted without a wakeup always follows, within
/// `wake_every_ns`, one on the same CPU whose wakeup we got. So a drain that
/// found records arms a timer for at least that long later, and a timer drain
/// that finds none disarms it: no record is left behind, and an idle tracer
/// has no timer at all. (At least 20 ms: more records per look.)
fn look_again_after(wake_every_ns: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(wake_every_ns).max(std::time::Duration::from_millis(20))
}

/// Most records read in one go: a ring buffer refilled as fast as it is read
/// must not keep signals, ticks and statistics from their turn.
const MAX_PER_DRAIN: usize = 16_384;

/// Reads records (at most [`MAX_PER_DRAIN`]) into `pipe`; returns how many.
fn drain_ring(rb: &mut RingBuf<MapData>, pipe: &mut Pipeline<BoxWrite<'static>>) -> anyhow::Result<(Flow, usize)> {
    let clock = BootClock::sample();
    pipe.set_time(clock.time_base());
    let mut n = 0;
    while n < MAX_PER_DRAIN
        && let Some(item) = rb.next()
    {
        n += 1;
        let (rec, ext) = decode_entry(&item).context("ring buffer record")?;
        let show = match RecordKind::try_from(rec.kind) {
            Ok(RecordKind::Packet) => true,
            Ok(RecordKind::StateOnly) => false,
            Err(k) => anyhow::bail!("ring buffer record of unknown kind {k}"),
        };
        let ts = clock.to_timestamp(rec.ts_ns);
        let flow = pipe.push(ts, rec.ts_ns as i64, LinkInfo::None, &rec, ext, show)?;
        drop(item);
        if flow == Flow::Stop {
            return Ok((Flow::Stop, n));
        }
    }
    Ok((Flow::Go, n))
}

/// When to read again after a read of `n` records: at once when it stopped
/// at [`MAX_PER_DRAIN`] (after the other events had their turn), otherwise
/// `look_again` later.
fn next_look(n: usize, look_again: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if n >= MAX_PER_DRAIN { now } else { now + look_again }
}

/// The next scrape of `--metrics`, if it is on (never ready otherwise).
async fn next_scrape(
    scrapes: &mut Option<tokio::sync::mpsc::Receiver<crate::metrics::Scrape>>,
) -> Option<crate::metrics::Scrape> {
    match scrapes {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The statistics now; `walk` also counts the kernel connection map's
/// entries (a system call per entry).
fn snapshot(tracer: &Tracer, pipe: &Pipeline<BoxWrite<'static>>, walk: bool) -> anyhow::Result<crate::stats::Snapshot> {
    let tracker = pipe.tracker();
    Ok(crate::stats::Snapshot {
        kernel: tracer.counters()?,
        kernel_conns: if walk { Some(tracer.conn_entries()?) } else { None },
        kernel_conn_table_size: tracer.sizes().conn_table,
        captured: pipe.shown(),
        tracked: tracker.map_or(0, |t| t.len() as u64),
        max_tracked: tracker.map_or(0, |t| t.max_conns() as u64),
        user_evictions: tracker.map_or(0, |t| t.evictions()),
    })
}

/// tcpdump's "listening on" message for `iface`.
fn listening(iface: &str, hook: loader::IngressHook) -> String {
    format!(
        "listening on {iface} ({} ingress, TC egress), link-type EN10MB (Ethernet)",
        match hook {
            loader::IngressHook::Xdp => "XDP",
            loader::IngressHook::Tc => "TC",
        }
    )
}

/// Traces the interfaces in `args` until Ctrl-C, SIGTERM, `-c` or a closed
/// output. Prints tcpdump's summary on stderr at the end.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    if args.iface.is_empty() {
        bail!(crate::UsageError("no interface given: use -i IFACE (or -r FILE to read a capture)".into()));
    }
    // `-i any`: the interfaces that are up now. With --wait, one that is not
    // there yet is waited for.
    let (ifaces, missing) = crate::ifaces::expand_or_wait(&args.iface, args.wait)?;
    let hosts = crate::filter::hosts_from_args(args)?;
    crate::caps::check()?;
    // -w's file is created before anything is loaded: a bad path attaches nothing.
    let line_buffered = args.line_buffered || io::stdout().is_terminal();
    let (text, pcap) = crate::pcap::outputs(args, Box::new(crate::output::RawStdout), line_buffered)?;
    let (mut filter, ports) = crate::filter::filter_from_args(args);
    // To a file or pipe, block buffered (as tcpdump): fewer, larger batches.
    crate::filter::set_delivery(&mut filter, !line_buffered, args.buffer_size);
    let look_again = look_again_after(filter.wake_every_ns);
    // So is the metrics address: one in use attaches nothing either.
    let metrics_listener = match args.metrics {
        Some(addr) => Some(crate::metrics::bind(addr)?),
        None => None,
    };
    let sizes = loader::Sizes { ring_buffer: args.buffer_size, conn_table: args.conn_table_size };
    let mut tracer =
        Tracer::load_with_hosts(crate::ebpf::OBJECT, &filter, &ports, &hosts, sizes).map_err(crate::privilege_hint)?;
    for iface in &ifaces {
        let hook = tracer.attach(iface, args.attach).map_err(crate::privilege_hint)?;
        eprintln!("tcptrace: {}", listening(iface, hook));
    }
    let events = tracer.take_events()?;
    // SAFETY: the ring buffer owns its map fd and keeps it open for as long as
    // the AsyncFd (which owns the ring buffer) exists.
    let mut afd = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(io::Error::from)
        .context("polling the ring buffer")?;
    let mut pipe = Pipeline::new(args, text, pcap, BootClock::sample().time_base());
    let mut metrics = None;
    let mut scrapes = None;
    if let Some(listener) = metrics_listener {
        let m = crate::metrics::Metrics::new();
        pipe.set_metrics(m.events());
        eprintln!("tcptrace: metrics on http://{}/metrics", listener.local_addr()?);
        scrapes = Some(crate::metrics::serve(listener));
        metrics = Some(m);
    }
    let stats_every = args.stats_interval.map(std::time::Duration::from_secs);
    let mut stats_tick = tokio::time::interval(stats_every.unwrap_or(std::time::Duration::from_secs(3600)));
    stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: skip it, the first statistics come after SECS.
    stats_tick.reset();
    let mut resolver = pipe.resolves_names().then(|| Resolver::new(4));
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // TIME_WAIT and stale connections expire on a tick while traffic is idle.
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let drain_again = tokio::time::sleep(look_again);
    tokio::pin!(drain_again);
    let mut drain_armed = false;
    let mut interrupted = false;
    let mut lost = None;
    // --wait: interfaces that went away, to attach again when they are back.
    // (name, what to say when it is there: "is back" or "appeared").
    let mut waiting: Vec<(String, &str)> = Vec::new();
    for name in missing {
        eprintln!("tcptrace: {name}: no such interface yet; waiting for it (--wait)");
        waiting.push((name, "appeared"));
    }
    // -i any: every interface that is up, also those that come up later
    // (looked for on the tick); those that go away are dropped.
    let any = args.iface.iter().any(|i| i == "any");
    let mut refused: Vec<String> = Vec::new();
    loop {
        let flow = tokio::select! {
            _ = sigint.recv() => { interrupted = true; break }
            _ = sigterm.recv() => { interrupted = true; break }
            Some((ip, name)) = next_name(&mut resolver) => pipe.set_name(ip, name)?,
            Some(reply) = next_scrape(&mut scrapes) => {
                let snap = snapshot(&tracer, &pipe, true)?;
                if let Some(m) = metrics.as_mut() {
                    let _ = reply.send(m.render(&snap));
                }
                Flow::Go
            }
            _ = stats_tick.tick(), if stats_every.is_some() => {
                let snap = snapshot(&tracer, &pipe, true)?;
                if args.json {
                    let mut line = Vec::with_capacity(512);
                    crate::json::write_stats(clock_ns(libc::CLOCK_REALTIME), &snap, &mut line);
                    pipe.write_line(&line)?
                } else {
                    eprintln!("{}", snap.text_line());
                    Flow::Go
                }
            }
            _ = tick.tick() => {
                // A deleted interface takes its links along and the ring
                // buffer goes quiet: notice it here.
                while let Some(name) = tracer.gone_interface().map(str::to_string) {
                    if any && !args.iface.contains(&name) {
                        // Came with `-i any`: interfaces come and go.
                        tracer.forget(&name);
                        eprintln!("tcptrace: {name}: the interface went away");
                        continue;
                    }
                    if !args.wait {
                        lost = Some(name);
                        break;
                    }
                    tracer.forget(&name);
                    eprintln!("tcptrace: {name}: the interface went away; waiting for it to come back (--wait)");
                    waiting.push((name, "is back"));
                }
                if lost.is_some() {
                    break;
                }
                // --wait: attach again to those that came back.
                let mut still = Vec::new();
                for (name, verb) in waiting.drain(..) {
                    if loader::nix_ifindex(&name) == 0 {
                        still.push((name, verb));
                        continue;
                    }
                    match tracer.attach(&name, args.attach) {
                        Ok(hook) => eprintln!("tcptrace: {name} {verb}: {}", listening(&name, hook)),
                        Err(e) => {
                            log::warn!("{name}: attaching: {e}");
                            still.push((name, verb));
                        }
                    }
                }
                waiting = still;
                // -i any: interfaces that came up since.
                if any {
                    refused.retain(|n| loader::nix_ifindex(n) != 0);
                    for name in crate::ifaces::up_interfaces().unwrap_or_default() {
                        if tracer.is_attached(&name) || waiting.iter().any(|(w, _)| *w == name) || refused.contains(&name) {
                            continue;
                        }
                        match tracer.attach(&name, args.attach) {
                            Ok(hook) => eprintln!("tcptrace: {name} came up: {}", listening(&name, hook)),
                            Err(e) => {
                                // Once: it is not tried again.
                                eprintln!("tcptrace: {name} came up, not traced: {}", crate::privilege_hint(e));
                                refused.push(name);
                            }
                        }
                    }
                }
                if pipe.tracks_states() {
                    pipe.set_time(BootClock::sample().time_base());
                    pipe.tick(clock_ns(libc::CLOCK_BOOTTIME) as i64)?
                } else {
                    Flow::Go
                }
            }
            // Records submitted without a wakeup (see look_again_after).
            _ = &mut drain_again, if drain_armed => {
                let (flow, n) = drain_ring(afd.get_mut(), &mut pipe)?;
                drain_armed = n > 0;
                if drain_armed {
                    drain_again.as_mut().reset(next_look(n, look_again));
                }
                flow
            }
            guard = afd.readable_mut() => {
                let mut guard = guard.context("waiting for the ring buffer")?;
                let (flow, n) = drain_ring(guard.get_inner_mut(), &mut pipe)?;
                guard.clear_ready();
                if n > 0 {
                    drain_armed = true;
                    drain_again.as_mut().reset(next_look(n, look_again));
                }
                flow
            }
        };
        if let Some(r) = resolver.as_mut() {
            for ip in pipe.take_requests() {
                r.request(ip);
            }
            if pipe.names_full() && r.outstanding() == 0 {
                log::info!("name cache full ({} addresses): emptied", Pipeline::<BoxWrite<'static>>::MAX_NAMES);
                pipe.clear_names();
                r.forget();
            }
        }
        if flow == Flow::Stop || pipe.end_batch()? == Flow::Stop {
            break;
        }
    }
    // Records already in the ring buffer when we stopped are still printed
    // (up to -c), as tcpdump flushes what it captured; names still being
    // looked up are printed as numbers. At most about one ring buffer's
    // worth: traffic may still be filling it.
    let mut left = args.buffer_size as usize / std::mem::size_of::<PacketRecord>() + 1;
    while left > 0 {
        let (flow, n) = drain_ring(afd.get_mut(), &mut pipe)?;
        left = left.saturating_sub(n);
        if flow == Flow::Stop || n < MAX_PER_DRAIN {
            break;
        }
    }
    pipe.finish(Some(clock_ns(libc::CLOCK_BOOTTIME) as i64), interrupted)?;
    let shown = pipe.shown();
    let c = tracer.counters()?;
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{shown} packets captured");
    let _ = writeln!(err, "{} packets received by filter", c.matched);
    let _ = writeln!(err, "{} packets dropped by kernel", c.ringbuf_full);
    log::info!("kernel counters: {c}");
    // Detach before returning: dropping the tracer drops its links.
    drop(afd);
    drop(tracer);
    match lost {
        Some(iface) => bail!("{iface}: the interface went away while tracing"),
        None => Ok(()),
    }
}
