//! The text of state lines (without the timestamp, which the caller prints in
//! the packet lines' style).
//!
//! ```text
//! STATE 10.99.0.2.5555 SYN_RECEIVED -> ESTABLISHED (got ACK of SYN, peer 10.99.0.1.40036)
//! CONN 10.99.0.1.40036 > 10.99.0.2.5555: fin, server closed first, duration 1.743ms, handshake 0.048ms, bytes >0 <2
//! ```

use super::{Endpoint, EventKind, Outcome, StateEvent, Summary, Who};
use crate::format::{addr, push_u32};

/// `addr.port`, numeric, as tcpdump -n prints it.
fn endpoint(s: &mut String, e: &Endpoint) {
    if e.family == 6 {
        addr::ipv6(&e.addr, s);
    } else {
        addr::ipv4(&e.addr[..4], s);
    }
    s.push('.');
    push_u32(s, e.port as u32);
}

/// The text of the endpoints written last: the lines of one connection name
/// the same two endpoints again and again (a dozen lines per short
/// connection), so each is formatted once.
/// Also the middle of each kind of state line, ` FROM -> TO (cause, peer `,
/// made once.
#[derive(Default)]
pub struct TextCache {
    endpoints: [(Option<Endpoint>, String); 4],
    next: usize,
    /// By (from, to, cause); empty until first needed.
    middles: Vec<String>,
    /// Where a summary line is made (kept: an allocation per record with
    /// events showed in profiles of connection churn).
    line: String,
}

/// Kinds of [`super::TcpState`] and [`super::Cause`] (indexes of `middles`).
const STATES: usize = 10;
const CAUSES: usize = 12;
// The last variants (a new one must come last, or these change).
const _: () = assert!(super::TcpState::TimeWait as usize == STATES - 1);
const _: () = assert!(super::Cause::Reused as usize == CAUSES - 1);

impl TextCache {
    fn middle(&mut self, t: &super::Transition) -> &str {
        if self.middles.is_empty() {
            self.middles = vec![String::new(); STATES * STATES * CAUSES];
        }
        let i = ((t.from as usize * STATES) + t.to as usize) * CAUSES + t.cause as usize;
        let m = &mut self.middles[i];
        if m.is_empty() {
            m.push(' ');
            m.push_str(t.from.name());
            m.push_str(" -> ");
            m.push_str(t.to.name());
            m.push_str(" (");
            m.push_str(t.cause.text());
            m.push_str(", peer ");
        }
        m
    }

    /// `addr.port` of `e`.
    fn endpoint(&mut self, e: &Endpoint) -> &str {
        let i = match self.endpoints.iter().position(|(k, _)| k.as_ref() == Some(e)) {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (self.next + 1) % 4;
                let (k, text) = &mut self.endpoints[i];
                *k = Some(*e);
                text.clear();
                endpoint(text, e);
                i
            }
        };
        &self.endpoints[i].1
    }
}

/// `whole.fff`: `frac` (below 1000) with three digits.
fn push_milli(s: &mut String, whole: i64, frac: i64) {
    push_u64(s, whole as u64);
    s.push('.');
    // SAFETY: only ASCII digits are appended.
    crate::format::push_decimal(unsafe { s.as_mut_vec() }, frac as u32, 3);
}

fn push_u64(s: &mut String, v: u64) {
    match u32::try_from(v) {
        Ok(v) => push_u32(s, v),
        Err(_) => {
            push_u64(s, v / 1_000_000_000);
            // SAFETY: only ASCII digits are appended.
            crate::format::push_decimal(unsafe { s.as_mut_vec() }, (v % 1_000_000_000) as u32, 9);
        }
    }
}

/// A duration: `0.048ms` below a second (microsecond precision), `12.345s`
/// from a second on (millisecond precision).
pub fn write_duration(s: &mut String, ns: i64) {
    let ns = ns.max(0);
    if ns < 1_000_000_000 {
        let us = ns / 1000;
        push_milli(s, us / 1000, us % 1000);
        s.push_str("ms");
    } else {
        let ms = ns / 1_000_000;
        push_milli(s, ms / 1000, ms % 1000);
        s.push('s');
    }
}

/// Appends the line for `ev` (ending in `\n`), after the timestamp.
pub fn write_event(ev: &StateEvent, out: &mut Vec<u8>) {
    event_text(ev, out, &mut TextCache::default());
}

/// Appends the line for `ev` (ending in `\n`).
fn event_text(ev: &StateEvent, out: &mut Vec<u8>, cache: &mut TextCache) {
    match &ev.kind {
        EventKind::Transition(t) => {
            // Straight into `out`: these are most of the state lines.
            out.extend_from_slice(b"STATE ");
            out.extend_from_slice(cache.endpoint(&t.endpoint).as_bytes());
            out.extend_from_slice(cache.middle(t).as_bytes());
            out.extend_from_slice(cache.endpoint(&t.peer).as_bytes());
            out.extend_from_slice(b")\n");
        }
        EventKind::Summary(sm) => {
            let mut s = std::mem::take(&mut cache.line);
            s.clear();
            summary(&mut s, sm, cache);
            s.push('\n');
            out.extend_from_slice(s.as_bytes());
            cache.line = s;
        }
    }
}

fn summary(s: &mut String, sm: &Summary, cache: &mut TextCache) {
    s.push_str("CONN ");
    s.push_str(cache.endpoint(&sm.a));
    s.push_str(" > ");
    s.push_str(cache.endpoint(&sm.b));
    s.push_str(": ");
    s.push_str(sm.outcome.name());
    let side = |s: &mut String, w: Who, cache: &mut TextCache| {
        if sm.roles_known {
            s.push_str(if w == Who::A { "client" } else { "server" });
        } else {
            s.push_str(cache.endpoint(if w == Who::A { &sm.a } else { &sm.b }));
        }
    };
    match sm.outcome {
        Outcome::Fin { simultaneous: true, .. } => s.push_str(", simultaneous close"),
        Outcome::Fin { first, .. } => {
            s.push_str(", ");
            side(s, first, cache);
            s.push_str(" closed first");
        }
        Outcome::Rst { by } => {
            s.push_str(" by ");
            side(s, by, cache);
        }
        Outcome::Refused => {}
        Outcome::Timeout | Outcome::Evicted | Outcome::Reused => {
            s.push_str(" in ");
            s.push_str(sm.states[0].name());
            s.push('/');
            s.push_str(sm.states[1].name());
        }
    }
    if sm.opened_before_trace {
        s.push_str(", opened before trace");
    }
    s.push_str(", duration ");
    match sm.duration_ns {
        Some(d) => write_duration(s, d),
        None => s.push('-'),
    }
    s.push_str(", handshake ");
    match sm.handshake_ns {
        Some(d) => write_duration(s, d),
        None => s.push('-'),
    }
    s.push_str(", bytes >");
    let n = |s: &mut String, b: Option<u32>| match b {
        Some(b) => push_u32(s, b),
        None => s.push('?'),
    };
    n(s, sm.bytes[0]);
    s.push_str(" <");
    n(s, sm.bytes[1]);
}

/// Appends one line per event, each with its timestamp in the packet lines'
/// style (see [`crate::format::Formatter::write_aside_timestamp`]); `to_ts`
/// turns an event's nanoseconds into the timestamp to print.
pub fn write_events(
    fmt: &crate::format::Formatter,
    events: &[StateEvent],
    to_ts: impl Fn(i64) -> crate::format::Timestamp,
    cache: &mut TextCache,
    out: &mut Vec<u8>,
) {
    // Where the last timestamp's text is in `out`: the events of one record
    // mostly share it.
    let mut last_ts: Option<(i64, std::ops::Range<usize>)> = None;
    for ev in events {
        match &last_ts {
            Some((ns, at)) if *ns == ev.ts_ns => out.extend_from_within(at.clone()),
            _ => {
                let start = out.len();
                fmt.write_aside_timestamp(to_ts(ev.ts_ns), out);
                last_ts = Some((ev.ts_ns, start..out.len()));
            }
        }
        event_text(ev, out, cache);
    }
}

/// Nanoseconds since the epoch of a capture-file timestamp.
pub fn timestamp_ns(ts: crate::format::Timestamp) -> i64 {
    let frac = if ts.nanos { ts.frac as i64 } else { (ts.frac as i64).wrapping_mul(1000) };
    ts.sec.wrapping_mul(super::NS_PER_SEC).wrapping_add(frac)
}

/// The timestamp of nanoseconds since the epoch.
pub fn ns_timestamp(ns: i64) -> crate::format::Timestamp {
    crate::format::Timestamp::nanos(ns.div_euclid(super::NS_PER_SEC), ns.rem_euclid(super::NS_PER_SEC) as u64)
}

/// A tracker and its text output, as the capture-file and live loops drive
/// it: each call appends the lines of the events it caused to `line`.
pub struct StateLines {
    tracker: super::ConnTracker,
    events: Vec<StateEvent>,
}

impl StateLines {
    pub fn new(opts: super::StateOptions) -> Self {
        Self { tracker: super::ConnTracker::new(opts), events: Vec::new() }
    }

    pub fn tracker(&self) -> &super::ConnTracker {
        &self.tracker
    }

    /// [`super::ConnTracker::observe`]: the events `rec` caused.
    pub fn observe_events(&mut self, ts_ns: i64, rec: &tcptrace_common::PacketRecord) -> &[StateEvent] {
        self.events.clear();
        self.tracker.observe(ts_ns, rec, &mut self.events);
        &self.events
    }

    /// [`super::ConnTracker::tick`]: the events of expiries due at `now_ns`.
    pub fn tick_events(&mut self, now_ns: i64) -> &[StateEvent] {
        self.events.clear();
        self.tracker.tick(now_ns, &mut self.events);
        &self.events
    }

    /// [`super::ConnTracker::finish`]: the events at the end.
    pub fn finish_events(&mut self, now_ns: i64) -> &[StateEvent] {
        self.events.clear();
        self.tracker.finish(now_ns, &mut self.events);
        &self.events
    }
}
