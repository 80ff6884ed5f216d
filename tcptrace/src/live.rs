//! Live tracing: load, attach, consume the ring buffer, print.

use std::io::{self, Write};

use anyhow::{Context as _, bail};
use tcptrace_common::{PacketRecord, RecordKind};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::Args,
    format::{FormatOptions, Formatter, Timestamp},
    loader::{self, Tracer},
    output::Output,
    states::{StateLines, StateOptions},
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
        let t = boot_ns as i128 + self.offset_ns;
        Timestamp::nanos(t.div_euclid(1_000_000_000) as i64, t.rem_euclid(1_000_000_000) as u64)
    }
}

/// Traces the interfaces in `args` until Ctrl-C, SIGTERM, `-c` or a closed
/// output. Prints tcpdump's summary on stderr at the end.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    if args.iface.is_empty() {
        bail!(crate::UsageError("no interface given: use -i IFACE (or -r FILE to read a capture)".into()));
    }
    for iface in &args.iface {
        if loader::nix_ifindex(iface) == 0 {
            bail!(crate::UsageError(format!("{iface}: no such interface")));
        }
    }
    let (filter, ports) = crate::filter::filter_from_args(args);
    let sizes = loader::Sizes { ring_buffer: args.buffer_size, conn_table: args.conn_table_size };
    let mut tracer = Tracer::load(crate::ebpf::OBJECT, &filter, &ports, sizes)
        .map_err(crate::privilege_hint)?;
    for iface in &args.iface {
        let hook = tracer.attach(iface, args.attach).map_err(crate::privilege_hint)?;
        eprintln!(
            "tcptrace: listening on {iface} ({} ingress, TC egress), link-type EN10MB (Ethernet)",
            match hook {
                loader::IngressHook::Xdp => "XDP",
                loader::IngressHook::Tc => "TC",
            }
        );
    }
    let events = tracer.take_events()?;
    // SAFETY: the ring buffer owns its map fd and keeps it open for as long as
    // the AsyncFd (which owns the ring buffer) exists.
    let mut afd = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(io::Error::from)
        .context("polling the ring buffer")?;
    let mut formatter = Formatter::new(FormatOptions::from_args(args));
    let mut out = Output::stdout(args.line_buffered);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut shown: u64 = 0;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut line = Vec::with_capacity(256);
    // Connection states (unless --no-states): fed every record, Packet and
    // StateOnly; TIME_WAIT and stale connections expire on a 1 s tick too.
    let mut states = (!args.no_states).then(|| StateLines::new(StateOptions::default()));
    let mut state_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    state_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut interrupted = false;
    'outer: loop {
        tokio::select! {
            _ = sigint.recv() => { interrupted = true; break }
            _ = sigterm.recv() => { interrupted = true; break }
            _ = state_tick.tick(), if states.is_some() => {
                if let Some(st) = states.as_mut() {
                    let clock = BootClock::sample();
                    line.clear();
                    st.tick(clock_ns(libc::CLOCK_BOOTTIME) as i64, &formatter, |ns| clock.to_timestamp(ns as u64), &mut line);
                    if !line.is_empty() && (!out.write_line(&line)? || !out.end_batch()?) {
                        break;
                    }
                }
            }
            guard = afd.readable_mut() => {
                let mut guard = guard.context("waiting for the ring buffer")?;
                let clock = BootClock::sample();
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    let rec = PacketRecord::from_bytes(&item).context("ring buffer record")?;
                    drop(item);
                    let is_packet = RecordKind::try_from(rec.kind) == Ok(RecordKind::Packet);
                    line.clear();
                    if is_packet {
                        formatter.write_packet(clock.to_timestamp(rec.ts_ns), &rec, &mut line);
                    }
                    if let Some(st) = states.as_mut() {
                        st.observe(rec.ts_ns as i64, &rec, &formatter, |ns| clock.to_timestamp(ns as u64), &mut line);
                    }
                    if line.is_empty() {
                        continue;
                    }
                    if !out.write_line(&line)? {
                        break 'outer;
                    }
                    shown += u64::from(is_packet);
                    if shown >= limit {
                        break 'outer;
                    }
                }
                guard.clear_ready();
                if !out.end_batch()? {
                    break;
                }
            }
        }
    }
    // Records already in the ring buffer when we stopped are still printed
    // (up to -c), as tcpdump flushes what it captured.
    let rb = afd.get_mut();
    if shown < limit && !out.is_closed() {
        let clock = BootClock::sample();
        while let Some(item) = rb.next() {
            let Ok(rec) = PacketRecord::from_bytes(&item) else { continue };
            drop(item);
            let is_packet = rec.kind == RecordKind::Packet as u8;
            line.clear();
            if is_packet {
                formatter.write_packet(clock.to_timestamp(rec.ts_ns), &rec, &mut line);
            }
            if let Some(st) = states.as_mut() {
                st.observe(rec.ts_ns as i64, &rec, &formatter, |ns| clock.to_timestamp(ns as u64), &mut line);
            }
            if line.is_empty() {
                continue;
            }
            if !out.write_line(&line)? {
                break;
            }
            shown += u64::from(is_packet);
            if shown >= limit {
                break;
            }
        }
    }
    // Connection states: expire what is due now (open connections get no
    // summary).
    if let Some(st) = states.as_mut()
        && !out.is_closed()
    {
        let clock = BootClock::sample();
        line.clear();
        st.finish(clock_ns(libc::CLOCK_BOOTTIME) as i64, &formatter, |ns| clock.to_timestamp(ns as u64), &mut line);
        if !line.is_empty() {
            out.write_line(&line)?;
        }
    }
    // Like tcpdump, end the output with an empty line when stopped by a signal
    // (not when -c was reached).
    if interrupted {
        out.write_line(b"\n")?;
    }
    out.finish()?;
    let c = tracer.counters()?;
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{shown} packets captured");
    let _ = writeln!(err, "{} packets received by filter", c.matched);
    let _ = writeln!(err, "{} packets dropped by kernel", c.ringbuf_full);
    // Detach before returning: dropping the tracer drops its links.
    drop(afd);
    drop(tracer);
    Ok(())
}
