//! What happens to a record after it is parsed, the same for live tracing and
//! capture files: packet line (with names unless `-n`) or, with `-w`, a pcap
//! record instead, connection-state lines, `-c`, and the output's buffering
//! and closed-pipe rules.
//!
//! Records wait in order while the names of their addresses are looked up,
//! so lines come out in capture order, as in tcpdump, without the event loop
//! ever blocking on DNS.

use std::{collections::VecDeque, io, io::Write, net::IpAddr};

use tcptrace_common::{PacketRecord, SliceFrame, record::MAX_EXT, routed_destination};

use crate::{
    cli::{Args, TimestampMode},
    format::{FormatOptions, Formatter, LinkInfo, Timestamp},
    output::Output,
    pcap::PcapSink,
    states::{self, StateEvent, StateLines, StateOptions},
};

/// How record clock values (`ns`) become wall-clock timestamps for state lines.
#[derive(Debug, Clone, Copy)]
pub enum TimeBase {
    /// `ns` is wall-clock nanoseconds since the epoch (capture files).
    Realtime,
    /// `ns` is `CLOCK_BOOTTIME`; add this offset for wall-clock time.
    Boot { offset_ns: i128 },
}

impl TimeBase {
    pub fn timestamp(self, ns: i64) -> Timestamp {
        match self {
            TimeBase::Realtime => states::ns_timestamp(ns),
            TimeBase::Boot { offset_ns } => {
                let t = ns as i128 + offset_ns;
                // In 64 bits whenever it fits (until 2262): a 128-bit
                // division is a library call, once per record and line.
                match i64::try_from(t) {
                    Ok(t) => Timestamp::nanos(t.div_euclid(1_000_000_000), t.rem_euclid(1_000_000_000) as u64),
                    Err(_) => Timestamp::nanos(t.div_euclid(1_000_000_000) as i64, t.rem_euclid(1_000_000_000) as u64),
                }
            }
        }
    }
}

/// Whether to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Go,
    /// `-c` reached or the reader closed the output.
    Stop,
}

struct Pending {
    ts: Timestamp,
    ns: i64,
    link: LinkInfo,
    rec: PacketRecord,
    /// Its IPv6 extension headers' bytes (see [`Pipeline::push`]).
    ext: Vec<u8>,
    show: bool,
}

pub struct Pipeline<W: Write> {
    fmt: Formatter,
    states: Option<StateLines>,
    out: Output<W>,
    /// `-w`: shown records go here instead of the packet lines.
    pcap: Option<PcapSink<W>>,
    time: TimeBase,
    queue: VecDeque<Pending>,
    requests: Vec<IpAddr>,
    shown: u64,
    limit: u64,
    last_ns: Option<i64>,
    line: Vec<u8>,
    /// `--json`: objects instead of lines; `scratch` holds the packet line.
    json: bool,
    scratch: Vec<u8>,
    stopped: bool,
    /// `--metrics`: counters of what goes through.
    metrics: Option<crate::metrics::EventMetrics>,
    /// Endpoint texts of the last state lines.
    text: states::TextCache,
}

/// State events as lines or, with `--json`, objects.
fn put_events(
    events: &[StateEvent],
    fmt: &Formatter,
    time: TimeBase,
    json: bool,
    metrics: Option<&crate::metrics::EventMetrics>,
    text: &mut states::TextCache,
    out: &mut Vec<u8>,
) {
    if let Some(m) = metrics {
        m.events(events);
    }
    if json {
        for ev in events {
            crate::json::write_event(time.timestamp(ev.ts_ns), ev, out);
        }
    } else {
        states::write_events(fmt, events, |ns| time.timestamp(ns), text, out);
    }
}

/// `rec` as the state tracker takes it when its frame has a routing header
/// (the first of the headers it lists, as in the kernel's connection table)
/// naming another final destination: with that destination, the address its
/// connection has (see [`tcptrace_common::routed_destination`]), so that
/// both directions are one connection. `None` otherwise.
fn routed_record(rec: &PacketRecord, ext: &[u8]) -> Option<PacketRecord> {
    if ext.is_empty() {
        return None;
    }
    let rh = crate::format::ext_headers(rec, ext).take(MAX_EXT).find(|e| e.kind == 43)?.bytes?;
    let mut dst = rec.dst;
    routed_destination(&SliceFrame::full(rh), 0, &mut dst).then_some(PacketRecord { dst, ..*rec })
}

impl<W: Write> Pipeline<W> {
    /// `out` takes the lines; `pcap` (from `-w`), when given, takes the
    /// shown records instead of their packet lines (see [`crate::pcap::outputs`]).
    pub fn new(args: &Args, out: Output<W>, pcap: Option<PcapSink<W>>, time: TimeBase) -> Self {
        let mut opts = FormatOptions::from_args(args);
        // No packet lines, so no names to look up (state lines are numeric).
        opts.numeric |= pcap.is_some();
        // JSON carries the time in its own fields; `line` has none.
        if args.json {
            opts.ts_mode = TimestampMode::None;
        }
        Self {
            fmt: Formatter::new(opts),
            states: (!args.no_states).then(|| {
                StateLines::new(StateOptions { max_conns: args.max_connections as usize, ..StateOptions::default() })
            }),
            out,
            pcap,
            time,
            queue: VecDeque::new(),
            requests: Vec::new(),
            shown: 0,
            limit: args.count.unwrap_or(u64::MAX),
            last_ns: None,
            line: Vec::with_capacity(512),
            json: args.json,
            scratch: Vec::with_capacity(256),
            stopped: false,
            metrics: None,
            text: states::TextCache::default(),
        }
    }

    /// `--metrics`: counts packets and state events into `m`.
    pub fn set_metrics(&mut self, m: crate::metrics::EventMetrics) {
        self.metrics = Some(m);
    }

    /// The connection tracker, when states are followed.
    pub fn tracker(&self) -> Option<&states::ConnTracker> {
        self.states.as_ref().map(|s| s.tracker())
    }

    /// Writes a whole line (ending in a newline) of its own, such as a
    /// `stats` object, between records.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<Flow> {
        if !self.stopped && !self.out.write_line(line)? {
            self.stopped = true;
        }
        self.end_batch()
    }

    /// Whether connection states are followed (records that are not shown
    /// still matter then).
    pub fn tracks_states(&self) -> bool {
        self.states.is_some()
    }

    /// Whether packet lines need host names (without `-n`, unless `-w`).
    pub fn resolves_names(&self) -> bool {
        !self.fmt.options().numeric
    }

    pub fn set_time(&mut self, time: TimeBase) {
        self.time = time;
    }

    /// Packet lines (or, with `-w`, pcap records) written so far.
    pub fn shown(&self) -> u64 {
        self.shown
    }

    /// Takes a record: `show` prints its packet line; every record goes to the
    /// state tracker. `ts` is its wall-clock time, `ns` its clock value,
    /// `ext` the bytes of its frame's IPv6 extension headers (empty when
    /// none; see [`tcptrace_common::ExtTail`]).
    pub fn push(
        &mut self,
        ts: Timestamp,
        ns: i64,
        link: LinkInfo,
        rec: &PacketRecord,
        ext: &[u8],
        show: bool,
    ) -> io::Result<Flow> {
        if self.stopped {
            return Ok(Flow::Stop);
        }
        let before = self.requests.len();
        if show && self.resolves_names() {
            self.requests.extend(self.fmt.unresolved(rec, ext));
            // Both addresses may be the same one.
            if self.requests.len() == before + 2 && self.requests[before] == self.requests[before + 1] {
                self.requests.pop();
            }
        }
        // Whether it waits for a name: it just asked for one.
        let waits = self.requests.len() != before;
        if self.queue.is_empty() && !waits {
            // Nothing waits before it and it waits for nothing: no queueing.
            self.emit(ts, ns, link, rec, ext, show)?;
            return Ok(if self.stopped { Flow::Stop } else { Flow::Go });
        }
        self.queue.push_back(Pending { ts, ns, link, rec: *rec, ext: ext.to_vec(), show });
        self.drain()
    }

    /// Addresses whose names the queued records wait for: ask a resolver, then
    /// give the answers to [`Pipeline::set_name`]. Each is returned once per
    /// record that needs it (the resolver drops repeats).
    pub fn take_requests(&mut self) -> std::vec::Drain<'_, IpAddr> {
        self.requests.drain(..)
    }

    /// Most host names kept; then the cache is emptied and names are looked
    /// up again, so a trace seeing ever new addresses stays bounded.
    pub const MAX_NAMES: usize = 65_536;

    /// Whether the name cache is full and may be emptied now: no record
    /// waits for a name. The caller empties it, and its resolver's memory of
    /// what it asked, with [`Pipeline::clear_names`].
    pub fn names_full(&self) -> bool {
        self.fmt.host_names() >= Self::MAX_NAMES && self.queue.is_empty()
    }

    pub fn clear_names(&mut self) {
        self.fmt.clear_host_names();
    }

    /// Whether records are waiting for names.
    pub fn waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn set_name(&mut self, ip: IpAddr, name: Option<String>) -> io::Result<Flow> {
        self.fmt.set_host_name(ip, name);
        self.drain()
    }

    /// Prints queued records, in order, up to the first one still waiting
    /// for a name.
    fn drain(&mut self) -> io::Result<Flow> {
        while let Some(p) = self.queue.front() {
            if self.stopped {
                self.queue.clear();
                break;
            }
            if p.show && self.fmt.unresolved(&p.rec, &p.ext).next().is_some() {
                break;
            }
            let Some(p) = self.queue.pop_front() else { break };
            self.emit(p.ts, p.ns, p.link, &p.rec, &p.ext, p.show)?;
        }
        Ok(if self.stopped { Flow::Stop } else { Flow::Go })
    }

    /// Writes what one record gives (packet line or pcap record, state
    /// lines), now.
    fn emit(
        &mut self,
        ts: Timestamp,
        ns: i64,
        link: LinkInfo,
        rec: &PacketRecord,
        ext: &[u8],
        show: bool,
    ) -> io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.line.clear();
        if let (true, Some(pcap)) = (show, self.pcap.as_mut()) {
            if !pcap.write(ts, rec, ext)? {
                self.stopped = true;
                return Ok(());
            }
            if self.states.is_some() {
                // State lines' -ttt/-ttttt deltas follow the packets.
                self.fmt.skip_packet(ts);
            }
        } else if show && self.json {
            self.scratch.clear();
            self.fmt.write_packet_link(ts, link, rec, ext, &mut self.scratch);
            let text = String::from_utf8_lossy(&self.scratch);
            crate::json::write_packet(ts, rec, &text, &mut self.line);
        } else if show {
            self.fmt.write_packet_link(ts, link, rec, ext, &mut self.line);
        }
        if let Some(st) = self.states.as_mut() {
            let routed = routed_record(rec, ext);
            put_events(
                st.observe_events(ns, routed.as_ref().unwrap_or(rec)),
                &self.fmt,
                self.time,
                self.json,
                self.metrics.as_ref(),
                &mut self.text,
                &mut self.line,
            );
        }
        self.last_ns = Some(ns);
        if !self.line.is_empty() && !self.out.write_line(&self.line)? {
            self.stopped = true;
            return Ok(());
        }
        if show {
            if let Some(m) = &self.metrics {
                m.packet(rec);
            }
            self.shown += 1;
            if self.shown >= self.limit {
                self.stopped = true;
            }
        }
        Ok(())
    }

    /// Expires connections (TIME_WAIT, stale) at clock value `now_ns`, when no
    /// record is waiting (they would come first).
    pub fn tick(&mut self, now_ns: i64) -> io::Result<Flow> {
        if self.stopped {
            return Ok(Flow::Stop);
        }
        if self.queue.is_empty() {
            self.write_expiries(now_ns, false)?;
        }
        self.end_batch()
    }

    /// Writes the lines of the connections that expire at `now_ns` (at the
    /// end of the run when `finish`), when states are followed.
    fn write_expiries(&mut self, now_ns: i64, finish: bool) -> io::Result<()> {
        let Some(st) = self.states.as_mut() else { return Ok(()) };
        self.line.clear();
        let events = if finish { st.finish_events(now_ns) } else { st.tick_events(now_ns) };
        put_events(events, &self.fmt, self.time, self.json, self.metrics.as_ref(), &mut self.text, &mut self.line);
        if !self.line.is_empty() && !self.out.write_line(&self.line)? {
            self.stopped = true;
        }
        Ok(())
    }

    /// Pushes out what was written since the last batch (lines and records).
    pub fn end_batch(&mut self) -> io::Result<Flow> {
        if !self.out.end_batch()? {
            self.stopped = true;
        }
        if let Some(pcap) = self.pcap.as_mut()
            && !pcap.end_batch()?
        {
            self.stopped = true;
        }
        Ok(if self.stopped { Flow::Stop } else { Flow::Go })
    }

    /// The end: records still waiting are printed with the names known (the
    /// rest as numbers), connections due expire at `now_ns` (or at the last
    /// record's time), tcpdump's trailing empty line when `interrupted`, flush.
    pub fn finish(&mut self, now_ns: Option<i64>, interrupted: bool) -> io::Result<()> {
        while let Some(p) = self.queue.front() {
            let unresolved: Vec<IpAddr> = self.fmt.unresolved(&p.rec, &p.ext).collect();
            for ip in unresolved {
                self.fmt.set_host_name(ip, None);
            }
            self.drain()?;
        }
        if let (Some(now), false) = (now_ns.or(self.last_ns), self.stopped) {
            self.write_expiries(now, true)?;
        }
        // tcpdump's empty line (not in JSON, where every line is an object).
        if interrupted && !self.json && !self.out.is_closed() {
            self.out.write_line(b"\n")?;
        }
        if let Some(pcap) = self.pcap.as_mut() {
            pcap.finish()?;
        }
        self.out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_to_wall_clock() {
        let tb = |offset_ns: i128, ns: i64| {
            let t = TimeBase::Boot { offset_ns }.timestamp(ns);
            (t.sec, t.frac)
        };
        assert_eq!(tb(1_700_000_000_000_000_000, 5_123_456_789), (1_700_000_005, 123_456_789));
        // Before the epoch: floor division, positive fraction.
        assert_eq!(tb(-2_000_000_000, 500_000_000), (-2, 500_000_000));
        // Beyond 64 bits of nanoseconds (the 128-bit path).
        // i64::MAX + 10^9 = 9,223,372,037,854,775,807 ns.
        assert_eq!(tb(i64::MAX as i128, 1_000_000_000), (9_223_372_037, 854_775_807));
    }
}
