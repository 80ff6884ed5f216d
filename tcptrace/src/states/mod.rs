//! Connection states: a per-connection, per-endpoint TCP state machine with
//! RFC 9293's state names, driven only by the segments that can change a
//! state, plus a summary for every connection that ends.
//!
//! # What drives a transition
//!
//! Only these segments change anything:
//!
//! - SYN, SYN-ACK, FIN and RST segments;
//! - the ACK that completes a handshake: from the endpoint in `SYN_SENT`, with
//!   `ack == ISN + 1` of the peer's SYN-ACK;
//! - the first segment from an endpoint whose `ack` covers the peer's FIN
//!   (`ack >= FIN seq + payload length + 1`, compared mod 2^32).
//!
//! Those are exactly the segments the kernel programs send when a flag filter
//! is active (as `StateOnly` records when the filter hides them), so the
//! tracker gives the same transitions and summaries whether it sees every
//! packet or only those. Data segments and other ACKs never create a
//! connection, never change a state and do not even count as activity.
//!
//! # How the segments are read
//!
//! Segments are seen at one point between the endpoints. A segment is taken
//! to be sent by its source and received by its destination when it is seen.
//! What an endpoint *received* is read from what it sends next: an endpoint
//! moves to `CLOSE_WAIT` (or `CLOSING`, or `TIME_WAIT`) when it acknowledges
//! the peer's FIN, not when the FIN goes by, because only its ACK shows that
//! it got the FIN and in which state it was (this is what tells a
//! simultaneous close from a normal one). Within one segment, the effects are
//! applied in RFC 9293's order: the acknowledgment first, then the FIN.
//!
//! - Client: the endpoint whose SYN (without ACK) was seen, or, when the
//!   first segment seen is a SYN-ACK, the endpoint it answers (its `SYN_SENT`
//!   is then inferred). When a connection is first seen through a FIN or an
//!   RST (it was open before tracing began), both endpoints are assumed
//!   `ESTABLISHED` (no line is printed for that) and the roles are unknown.
//! - An RST closes both endpoints at once (an endpoint in `TIME_WAIT` too).
//!   An RST from an endpoint that never answered the SYN, to an endpoint in
//!   `SYN_SENT`, is a refused connection.
//! - A retransmitted SYN, SYN-ACK or FIN (same sequence number) changes
//!   nothing. A SYN with a new ISN on a 4-tuple whose connection has ended (or
//!   is in `TIME_WAIT`) starts a new connection; on a connection that has not
//!   ended, it ends the old one first (outcome `reused`).
//! - `TIME_WAIT` lasts [`StateOptions::time_wait_ns`] (60 s, as on Linux),
//!   measured from the segment that started it; it expires on
//!   [`ConnTracker::tick`] or on any later record, with the expiry time as
//!   the event's timestamp.
//! - A connection that is still opening, or has a FIN not yet acknowledged,
//!   and sees no state-relevant segment for [`StateOptions::stale_ns`] gets a
//!   summary with outcome `timeout`. It is still followed afterwards (the
//!   kernel still remembers it), with transition lines but no second summary;
//!   it goes when it ends, is reused or is evicted.
//! - At most [`StateOptions::max_conns`] connections are kept; when full, the
//!   one idle the longest makes room and, if it had not ended, gets a summary
//!   with outcome `evicted`.
//! - A connection that ended by RST is remembered for `time_wait_ns` more, so
//!   that late RSTs, FINs and SYN retransmissions of it are not taken for new
//!   connections.
//! - [`ConnTracker::finish`] expires what is due and prints no summary for
//!   connections still open.

#[cfg(test)]
mod tests;
mod text;

use std::{cmp::Reverse, collections::BinaryHeap, hash::Hasher};

// Addresses and ports: SipHash's flooding resistance buys nothing, and it
// showed in the churn profile.
use crate::format::FastHasher;

use tcptrace_common::record::{Malformed, PacketRecord, flags};

pub use text::{StateLines, TextCache, ns_timestamp, timestamp_ns, write_duration, write_event, write_events};

/// Nanoseconds per second.
pub const NS_PER_SEC: i64 = 1_000_000_000;

/// Tuning of the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOptions {
    /// How long an endpoint stays in `TIME_WAIT` (default 60 s, Linux's
    /// `TCP_TIMEWAIT_LEN`).
    pub time_wait_ns: i64,
    /// How long a connection may stay opening, or with a FIN not
    /// acknowledged, without a state-relevant segment (default 300 s).
    pub stale_ns: i64,
    /// Most connections tracked at once (default 65536).
    pub max_conns: usize,
}

impl Default for StateOptions {
    fn default() -> Self {
        Self { time_wait_ns: 60 * NS_PER_SEC, stale_ns: 300 * NS_PER_SEC, max_conns: 65536 }
    }
}

/// RFC 9293 connection states (`LISTEN` is never seen on the wire, so a
/// server endpoint goes from `CLOSED` to `SYN_RECEIVED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Closed,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl TcpState {
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynReceived => "SYN_RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }
}

/// One end of a connection. For IPv4 only the first four bytes of `addr` are
/// used (the rest are zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub family: u8,
    pub addr: [u8; 16],
    pub port: u16,
}

/// Why an endpoint changed state (from that endpoint's point of view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// It sent a SYN.
    SentSyn,
    /// Its SYN was not seen; a SYN-ACK answering it was.
    SynInferred,
    /// It sent a SYN-ACK.
    SentSynAck,
    /// It acknowledged the peer's SYN-ACK (the handshake's last ACK).
    SentAckOfSynAck,
    /// Its SYN was acknowledged.
    GotAckOfSyn,
    /// It sent a FIN.
    SentFin,
    /// It acknowledged the peer's FIN.
    SentAckOfFin,
    /// Its FIN was acknowledged.
    GotAckOfFin,
    /// It sent an RST.
    SentRst,
    /// It got an RST.
    GotRst,
    /// Its `TIME_WAIT` ran out.
    TimeWaitExpired,
    /// A new SYN reused the 4-tuple while it was in `TIME_WAIT`.
    Reused,
}

impl Cause {
    pub fn text(self) -> &'static str {
        match self {
            Cause::SentSyn => "sent SYN",
            Cause::SynInferred => "SYN not seen, answered by SYN-ACK",
            Cause::SentSynAck => "sent SYN-ACK",
            Cause::SentAckOfSynAck => "sent ACK of SYN-ACK",
            Cause::GotAckOfSyn => "got ACK of SYN",
            Cause::SentFin => "sent FIN",
            Cause::SentAckOfFin => "sent ACK of FIN",
            Cause::GotAckOfFin => "got ACK of FIN",
            Cause::SentRst => "sent RST",
            Cause::GotRst => "got RST",
            Cause::TimeWaitExpired => "TIME_WAIT expired",
            Cause::Reused => "4-tuple reused by new SYN",
        }
    }
}

/// One endpoint's state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub endpoint: Endpoint,
    pub peer: Endpoint,
    pub from: TcpState,
    pub to: TcpState,
    pub cause: Cause,
}

/// Which endpoint of a [`Summary`]: `A` is [`Summary::a`] (the client when
/// the roles are known), `B` the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    A,
    B,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Both FINs acknowledged. `first` sent the first FIN; `simultaneous`
    /// when the second FIN was sent before the first was acknowledged.
    Fin { first: Who, simultaneous: bool },
    /// Reset by `by`.
    Rst { by: Who },
    /// The SYN was answered by an RST.
    Refused,
    /// No state-relevant segment for [`StateOptions::stale_ns`] while opening
    /// or closing.
    Timeout,
    /// Dropped to make room ([`StateOptions::max_conns`]).
    Evicted,
    /// A new SYN took over the 4-tuple before this connection ended.
    Reused,
}

impl Outcome {
    /// The one-word name used in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Fin { .. } => "fin",
            Outcome::Rst { .. } => "rst",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Evicted => "evicted",
            Outcome::Reused => "reused",
        }
    }
}

/// What is printed when a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The client when `roles_known`, else the endpoint that sent the first
    /// segment seen.
    pub a: Endpoint,
    pub b: Endpoint,
    pub roles_known: bool,
    /// The first segment seen was a FIN or an RST.
    pub opened_before_trace: bool,
    pub outcome: Outcome,
    /// From the first SYN to the end (unknown when opened before the trace).
    pub duration_ns: Option<i64>,
    /// From the last SYN before the SYN-ACK to the segment that made both
    /// endpoints `ESTABLISHED` (normally the client's ACK of the SYN-ACK).
    pub handshake_ns: Option<i64>,
    /// Payload bytes A sent to B, and B to A, from sequence numbers: ISN to
    /// FIN, or to the RST's sequence number (or an RST's acknowledgment);
    /// mod 2^32.
    pub bytes: [Option<u32>; 2],
    /// States of A and B when the summary was made.
    pub states: [TcpState; 2],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Transition(Transition),
    Summary(Summary),
}

/// A transition or a summary, at `ts_ns` (the clock of the records fed in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateEvent {
    pub ts_ns: i64,
    pub kind: EventKind,
}

/// The two endpoints, smaller first.
type Key = (Endpoint, Endpoint);

fn key_hash(k: &Key) -> u64 {
    let mut h = FastHasher::default();
    for e in [&k.0, &k.1] {
        let (lo, hi) = e.addr.split_at(8);
        h.write_u64(u64::from_le_bytes(lo.try_into().unwrap()));
        h.write_u64(u64::from_le_bytes(hi.try_into().unwrap()));
        h.write_u64(((e.port as u64) << 8) | e.family as u64);
    }
    h.finish()
}

/// `a >= b` in sequence space.
fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// An `Option<i64>` of nanoseconds in eight bytes (`Option<i64>` takes
/// sixteen, and a connection has six of them): `i64::MIN` is none, and a
/// time of `i64::MIN` itself is kept as `i64::MIN + 1`. Connections are
/// kept by the ten thousand and each is touched cold under churn, so their
/// size shows (see [`Slot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ns(i64);

impl Ns {
    const NONE: Ns = Ns(i64::MIN);

    fn some(v: i64) -> Ns {
        Ns(v.max(i64::MIN + 1))
    }

    fn get(self) -> Option<i64> {
        (self != Ns::NONE).then_some(self.0)
    }
}

impl From<Option<i64>> for Ns {
    fn from(v: Option<i64>) -> Ns {
        v.map_or(Ns::NONE, Ns::some)
    }
}

#[derive(Clone, Copy, Debug)]
struct Side {
    ep: Endpoint,
    state: TcpState,
    /// Initial sequence number (from its SYN or SYN-ACK, or inferred).
    isn: Option<u32>,
    /// Its SYN was acknowledged before it reached `SYN_RECEIVED`
    /// (simultaneous open).
    syn_acked: bool,
    /// Sequence number just past its FIN.
    fin_end: Option<u32>,
    fin_acked: bool,
    /// It acknowledged the peer's FIN.
    got_fin: bool,
    /// Sequence number of the RST it sent.
    rst_seq: Option<u32>,
    /// Its next sequence number, from the ACK of an RST the peer sent.
    rst_acked: Option<u32>,
    tw_deadline: Ns,
}

impl Side {
    fn new(ep: Endpoint) -> Self {
        Side {
            ep,
            state: TcpState::Closed,
            isn: None,
            syn_acked: false,
            fin_end: None,
            fin_acked: false,
            got_fin: false,
            rst_seq: None,
            rst_acked: None,
            tw_deadline: Ns::NONE,
        }
    }

    /// Payload bytes it sent, when the sequence numbers tell.
    fn bytes(&self) -> Option<u32> {
        let isn = self.isn?;
        let end = match (self.fin_end, self.rst_seq, self.rst_acked) {
            (Some(f), _, _) => f.wrapping_sub(1),
            (None, Some(r), _) if r != 0 => r,
            (None, _, Some(a)) => a,
            _ => return None,
        };
        let n = end.wrapping_sub(isn.wrapping_add(1));
        // An RST outside the window (or with seq 0) gives nonsense.
        (n < 1 << 31).then_some(n)
    }
}

#[derive(Clone, Debug)]
struct Conn {
    s: [Side; 2],
    /// Endpoint indexes (0 or 1) are kept in a byte.
    client: Option<u8>,
    /// Endpoint that sent the first segment seen (A when roles are unknown).
    first_from: u8,
    opened_before_trace: bool,
    first_ts: i64,
    /// Last SYN from the client before the SYN-ACK.
    syn_ts: Ns,
    handshake_ns: Ns,
    /// Sender of the last SYN-ACK and the acknowledgment that completes the
    /// handshake (its seq + 1), as the kernel keeps them; cleared by a
    /// retransmitted SYN, consumed by the first matching ACK.
    synack: Option<(u8, u32)>,
    first_fin: Option<u8>,
    simultaneous_close: bool,
    /// When it ended by FIN or RST (it stays for `TIME_WAIT`, or as a
    /// memory of the RST).
    ended: Ns,
    /// Its summary was printed (it ended, or timed out).
    summarized: bool,
    last_active: i64,
    serial: u64,
    deadline: Ns,
}

impl Conn {
    fn key(&self) -> Key {
        (self.s[0].ep, self.s[1].ep)
    }
}

/// What a segment does to an entry that has to go first.
enum Restart {
    No,
    /// End the old connection (outcome `reused` unless it ended already) and
    /// start a new one with this segment.
    Reuse,
}

/// No slot: the end of the least-recently-active list.
const NIL: u32 = u32::MAX;

/// No deadline (in [`ConnTracker`]'s `due`).
const NO_DEADLINE: i64 = i64::MIN;

/// A connection in the tracker's slab, linked into the least-recently-active
/// list.
struct Slot {
    conn: Conn,
    /// [`key_hash`] of its key.
    hash: u64,
    live: bool,
    prev: u32,
    next: u32,
}

/// The tracker: feed it records in time order with [`ConnTracker::observe`].
///
/// Connections live in a slab found through one hash lookup per record (the
/// table holds only slab indexes: the keys are in the slab, which a lookup
/// reads anyway, and a table of keys was two cache misses per new
/// connection under churn); the least-recently-active order is a list
/// through the slab (moving a connection to its end is O(1)), and
/// deadlines are a min-heap. A
/// connection has at most one live entry there, never later than its
/// deadline: a deadline that moves later (each segment of an opening
/// connection moves its staleness deadline) is pushed again only when its
/// entry comes up; one that moves earlier is pushed at once, and the entry
/// it replaces goes stale. Stale entries (an earlier deadline pushed, a
/// connection gone) are skipped when they come up and swept when they
/// outnumber the live ones.
pub struct ConnTracker {
    opts: StateOptions,
    index: hashbrown::HashTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Least and most recently active connection.
    head: u32,
    tail: u32,
    /// (deadline, serial, slot): the serial (creation order) orders equal
    /// deadlines.
    deadlines: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// Per slot: (serial, deadline) of its one live heap entry (serial 0: a
    /// free slot; `NO_DEADLINE`: none). Checking an entry reads this small
    /// array, not the connection (a cache miss each in a sweep).
    due: Vec<(u64, i64)>,
    serial: u64,
    evictions: u64,
}

impl ConnTracker {
    pub fn new(opts: StateOptions) -> Self {
        let max_conns = opts.max_conns.max(1);
        // Room for the default table from the start: growing it by doubling
        // copied and page-faulted the slab several times over while it
        // filled (only the pages used are ever touched).
        let room = max_conns.min(StateOptions::default().max_conns);
        Self {
            opts: StateOptions { max_conns, ..opts },
            index: hashbrown::HashTable::with_capacity(room),
            slots: Vec::with_capacity(room),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            deadlines: BinaryHeap::new(),
            due: Vec::with_capacity(room),
            serial: 0,
            evictions: 0,
        }
    }

    /// Connections tracked now (ended ones still in `TIME_WAIT` or
    /// remembered after an RST included).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Most connections tracked at once ([`StateOptions::max_conns`]).
    pub fn max_conns(&self) -> usize {
        self.opts.max_conns
    }

    /// Connections dropped to make room (ended ones included).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Expires what is due at `now` (`TIME_WAIT`, stale connections).
    pub fn tick(&mut self, now: i64, out: &mut Vec<StateEvent>) {
        while let Some(&Reverse((due, serial, slot))) = self.deadlines.peek() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            let idx = slot as usize;
            if self.due[idx] != (serial, due) {
                continue;
            }
            self.due[idx].1 = NO_DEADLINE;
            let c = &mut self.slots[idx].conn;
            match c.deadline.get() {
                None => continue,
                Some(d) if d > due => {
                    // It moved later since this entry was pushed.
                    self.due[idx].1 = d;
                    self.deadlines.push(Reverse((d, serial, slot)));
                    continue;
                }
                Some(_) => c.deadline = Ns::NONE,
            }
            if c.ended.get().is_some() {
                let mut any_tw = false;
                for i in 0..2 {
                    if c.s[i].state != TcpState::TimeWait {
                        continue;
                    }
                    match c.s[i].tw_deadline.get() {
                        Some(d) if d <= due => {
                            c.s[i].tw_deadline = Ns::NONE;
                            set(c, i, TcpState::Closed, Cause::TimeWaitExpired, d, self.opts, out);
                        }
                        _ => any_tw = true,
                    }
                }
                if any_tw {
                    self.reschedule(idx);
                } else {
                    self.remove(idx);
                }
            } else {
                // The summary only: the connection is still followed (as the
                // kernel still follows it), so that segments that come later
                // give the same transitions with or without a flag filter.
                self.end(idx, due, Outcome::Timeout, out);
                self.reschedule(idx);
            }
        }
    }

    /// At the end of the run: expires what is due at `now`. Connections still
    /// open get no summary.
    pub fn finish(&mut self, now: i64, out: &mut Vec<StateEvent>) {
        self.tick(now, out);
    }

    /// Feeds one record seen at `ts` (nanoseconds, any clock that only moves
    /// forward: the events carry the same clock).
    pub fn observe(&mut self, ts: i64, rec: &PacketRecord, out: &mut Vec<StateEvent>) {
        if rec.family != 4 && rec.family != 6 {
            return;
        }
        if rec.malformed == Malformed::TcpTruncated as u8 || rec.malformed == Malformed::TcpHdrTooShort as u8 {
            // No flags or sequence numbers to go by.
            return;
        }
        self.tick(ts, out);
        // The addresses as numbers: comparing them so orders the endpoints
        // as `Endpoint`'s `Ord` does (the family is the same), without
        // building both first.
        let addr = |a: &[u8; 16]| {
            let v = u128::from_be_bytes(*a);
            if rec.family == 4 { v & !(u128::MAX >> 32) } else { v }
        };
        let (src, dst) = ((addr(&rec.src), rec.sport), (addr(&rec.dst), rec.dport));
        let ep = |(a, port): (u128, u16)| Endpoint { family: rec.family, addr: a.to_be_bytes(), port };
        let (key, from) = if src <= dst { ((ep(src), ep(dst)), 0) } else { ((ep(dst), ep(src)), 1) };
        let seg = Seg {
            flags: rec.tcp_flags,
            seq: rec.seq,
            ack: rec.ack,
            payload: rec.ip_total_len.saturating_sub(rec.l4_off as u32).saturating_sub(rec.data_off as u32),
        };
        let ctl = seg.flags & (flags::SYN | flags::FIN | flags::RST) != 0;
        let slots = &self.slots;
        let found = self.index.find(key_hash(&key), |&i| slots[i as usize].conn.key() == key).copied();
        if let Some(slot) = found {
            let idx = slot as usize;
            match self.step(idx, from, &seg, ts, out) {
                Restart::No => return,
                Restart::Reuse => {
                    self.end(idx, ts, Outcome::Reused, out);
                    self.remove(idx);
                }
            }
        }
        if !ctl {
            return;
        }
        let idx = self.create(key, from, &seg, ts, out);
        self.step(idx, from, &seg, ts, out);
    }

    fn create(&mut self, key: Key, from: usize, seg: &Seg, ts: i64, out: &mut Vec<StateEvent>) -> usize {
        while self.index.len() >= self.opts.max_conns && self.head != NIL {
            let old = self.head as usize;
            self.evictions += 1;
            self.end(old, ts, Outcome::Evicted, out);
            self.remove(old);
        }
        self.serial += 1;
        let mut c = Conn {
            s: [Side::new(key.0), Side::new(key.1)],
            client: None,
            first_from: from as u8,
            opened_before_trace: false,
            first_ts: ts,
            syn_ts: Ns::NONE,
            handshake_ns: Ns::NONE,
            synack: None,
            first_fin: None,
            simultaneous_close: false,
            ended: Ns::NONE,
            summarized: false,
            last_active: ts,
            serial: self.serial,
            deadline: Ns::NONE,
        };
        let to = from ^ 1;
        if seg.flags & flags::SYN != 0 && seg.flags & flags::RST == 0 {
            if seg.flags & flags::ACK != 0 {
                // A SYN-ACK first: its receiver's SYN went by unseen.
                c.client = Some(to as u8);
                c.s[to].isn = Some(seg.ack.wrapping_sub(1));
                set(&mut c, to, TcpState::SynSent, Cause::SynInferred, ts, self.opts, out);
            } else {
                c.client = Some(from as u8);
            }
        } else {
            c.opened_before_trace = true;
            c.s[0].state = TcpState::Established;
            c.s[1].state = TcpState::Established;
        }
        let hash = key_hash(&key);
        let slot = Slot { conn: c, hash, live: true, prev: NIL, next: NIL };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                self.due[i as usize] = (self.serial, NO_DEADLINE);
                i as usize
            }
            None => {
                self.slots.push(slot);
                self.due.push((self.serial, NO_DEADLINE));
                self.slots.len() - 1
            }
        };
        self.link_last(idx);
        let slots = &self.slots;
        self.index.insert_unique(hash, idx as u32, |&i| slots[i as usize].hash);
        idx
    }

    /// Appends slot `idx` (unlinked) to the least-recently-active list.
    fn link_last(&mut self, idx: usize) {
        let tail = self.tail;
        self.slots[idx].prev = tail;
        self.slots[idx].next = NIL;
        match tail {
            NIL => self.head = idx as u32,
            t => self.slots[t as usize].next = idx as u32,
        }
        self.tail = idx as u32;
    }

    fn unlink(&mut self, idx: usize) {
        let (prev, next) = (self.slots[idx].prev, self.slots[idx].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn remove(&mut self, idx: usize) {
        if !self.slots[idx].live {
            return;
        }
        self.unlink(idx);
        let c = &mut self.slots[idx];
        c.live = false;
        if let Ok(entry) = self.index.find_entry(c.hash, |&i| i == idx as u32) {
            entry.remove();
        }
        self.free.push(idx as u32);
        self.due[idx] = (0, NO_DEADLINE);
        // Its deadline, if any, is left in the heap and skipped later.
        self.sweep();
    }

    /// Drops the heap's stale entries once they outnumber the live
    /// connections (each has at most one live entry), so the heap stays
    /// within a small multiple of the table.
    fn sweep(&mut self) {
        if self.deadlines.len() > 2 * self.index.len() + 1024 {
            let live = &self.due;
            self.deadlines.retain(|Reverse((due, serial, slot))| live[*slot as usize] == (*serial, *due));
        }
    }

    /// Sets the deadline of slot `idx` from its state.
    fn reschedule(&mut self, idx: usize) {
        let c = &mut self.slots[idx].conn;
        let want = if let Some(end) = c.ended.get() {
            let tw = c.s.iter().filter(|s| s.state == TcpState::TimeWait).filter_map(|s| s.tw_deadline.get()).min();
            Some(tw.unwrap_or(end.saturating_add(self.opts.time_wait_ns)))
        } else if !c.summarized
            && c.s.iter().any(|s| {
                matches!(
                    s.state,
                    TcpState::SynSent
                        | TcpState::SynReceived
                        | TcpState::FinWait1
                        | TcpState::Closing
                        | TcpState::LastAck
                )
            })
        {
            Some(c.last_active.saturating_add(self.opts.stale_ns))
        } else {
            None
        };
        c.deadline = want.into();
        // A live entry no later than `want` is enough (see `ConnTracker`).
        let queued = self.due[idx].1;
        if let Some(d) = want
            && (queued == NO_DEADLINE || d < queued)
        {
            self.due[idx].1 = d;
            self.deadlines.push(Reverse((d, c.serial, idx as u32)));
            self.sweep();
        }
    }

    fn touch(&mut self, idx: usize, ts: i64) {
        let c = &mut self.slots[idx].conn;
        let ts = ts.max(c.last_active);
        if ts != c.last_active {
            c.last_active = ts;
            if self.tail != idx as u32 {
                self.unlink(idx);
                self.link_last(idx);
            }
        }
    }

    /// Makes the summary of slot `idx` (once); marks it ended for a FIN or RST.
    fn end(&mut self, idx: usize, ts: i64, outcome: Outcome, out: &mut Vec<StateEvent>) {
        let c = &mut self.slots[idx].conn;
        if matches!(outcome, Outcome::Fin { .. } | Outcome::Rst { .. } | Outcome::Refused) && c.ended.get().is_none() {
            c.ended = Ns::some(ts);
        }
        if c.summarized {
            return;
        }
        c.summarized = true;
        let a = usize::from(c.client.unwrap_or(c.first_from));
        let b = a ^ 1;
        let who = |i: usize| if i == a { Who::A } else { Who::B };
        let outcome = match outcome {
            Outcome::Fin { .. } => {
                let first = c.first_fin.map_or(a, usize::from);
                Outcome::Fin { first: who(first), simultaneous: c.simultaneous_close }
            }
            Outcome::Rst { by } => Outcome::Rst { by },
            o => o,
        };
        out.push(StateEvent {
            ts_ns: ts,
            kind: EventKind::Summary(Summary {
                a: c.s[a].ep,
                b: c.s[b].ep,
                roles_known: c.client.is_some(),
                opened_before_trace: c.opened_before_trace,
                outcome,
                duration_ns: (!c.opened_before_trace).then(|| ts.saturating_sub(c.first_ts)),
                handshake_ns: c.handshake_ns.get(),
                bytes: [c.s[a].bytes(), c.s[b].bytes()],
                states: [c.s[a].state, c.s[b].state],
            }),
        });
    }

    /// Applies a segment from endpoint `from` of the connection in slot `idx`.
    fn step(&mut self, idx: usize, from: usize, seg: &Seg, ts: i64, out: &mut Vec<StateEvent>) -> Restart {
        let opts = self.opts;
        let c = &mut self.slots[idx].conn;
        let to = from ^ 1;
        let f = seg.flags;
        let has = |bit: u16| f & bit != 0;
        let n_before = out.len();
        let mut changed = false;

        if c.ended.get().is_some() {
            // Ended: only an RST (closing TIME_WAIT) or a new SYN matter.
            if has(flags::RST) {
                for i in [from, to] {
                    if c.s[i].state == TcpState::TimeWait {
                        c.s[i].tw_deadline = Ns::NONE;
                        let cause = if i == from { Cause::SentRst } else { Cause::GotRst };
                        set(c, i, TcpState::Closed, cause, ts, opts, out);
                    }
                }
                if out.len() != n_before {
                    self.reschedule(idx);
                }
                return Restart::No;
            }
            if has(flags::SYN) && !has(flags::ACK) {
                if c.s[from].isn == Some(seg.seq) {
                    // A late retransmission of the old SYN.
                    return Restart::No;
                }
                for i in [from, to] {
                    if c.s[i].state == TcpState::TimeWait {
                        set(c, i, TcpState::Closed, Cause::Reused, ts, opts, out);
                    }
                }
                return Restart::Reuse;
            }
            if has(flags::SYN) && c.s[from].isn != Some(seg.seq) {
                // A SYN-ACK of something new.
                return Restart::Reuse;
            }
            return Restart::No;
        }

        if has(flags::RST) {
            let refused =
                c.s[to].state == TcpState::SynSent && c.s[from].state == TcpState::Closed && c.client == Some(to as u8);
            c.s[from].rst_seq = Some(seg.seq);
            if has(flags::ACK) {
                c.s[to].rst_acked = Some(seg.ack);
            }
            for i in [from, to] {
                let cause = if i == from { Cause::SentRst } else { Cause::GotRst };
                set(c, i, TcpState::Closed, cause, ts, opts, out);
            }
            let a = usize::from(c.client.unwrap_or(c.first_from));
            let by = if from == a { Who::A } else { Who::B };
            self.touch(idx, ts);
            self.end(idx, ts, if refused { Outcome::Refused } else { Outcome::Rst { by } }, out);
            self.reschedule(idx);
            return Restart::No;
        }

        if has(flags::SYN) {
            if !has(flags::ACK) {
                match (c.s[from].state, c.s[from].isn) {
                    (TcpState::Closed, _) => {
                        c.s[from].isn = Some(seg.seq);
                        set(c, from, TcpState::SynSent, Cause::SentSyn, ts, opts, out);
                        c.client.get_or_insert(from as u8);
                        if c.client == Some(from as u8) {
                            c.syn_ts = Ns::some(ts);
                        }
                    }
                    (state, Some(isn)) if isn == seg.seq => {
                        // Retransmission: the handshake is timed from the
                        // last one before the SYN-ACK.
                        if c.client == Some(from as u8) && c.s[to].isn.is_none() {
                            c.syn_ts = Ns::some(ts);
                        }
                        // The handshake's ACK must now follow a new SYN-ACK.
                        if state == TcpState::SynSent {
                            c.synack = None;
                        }
                        changed = true;
                    }
                    _ => return Restart::Reuse,
                }
            } else {
                match (c.s[from].state, c.s[from].isn) {
                    (TcpState::Closed, _) => {
                        c.s[from].isn = Some(seg.seq);
                        set(c, from, TcpState::SynReceived, Cause::SentSynAck, ts, opts, out);
                    }
                    (TcpState::SynSent, Some(isn)) if isn == seg.seq => {
                        // Simultaneous open: it got the peer's SYN.
                        set(c, from, TcpState::SynReceived, Cause::SentSynAck, ts, opts, out);
                        if c.s[from].syn_acked {
                            set(c, from, TcpState::Established, Cause::GotAckOfSyn, ts, opts, out);
                        }
                    }
                    (_, Some(isn)) if isn == seg.seq => changed = true,
                    _ => return Restart::Reuse,
                }
                c.synack = Some((from as u8, seg.seq.wrapping_add(1)));
                // Its ACK part: the peer's SYN is acknowledged.
                if let Some(isn) = c.s[to].isn
                    && seg.ack == isn.wrapping_add(1)
                {
                    match c.s[to].state {
                        TcpState::SynReceived => set(c, to, TcpState::Established, Cause::GotAckOfSyn, ts, opts, out),
                        TcpState::SynSent => c.s[to].syn_acked = true,
                        _ => {}
                    }
                }
            }
            handshake_done(c, ts);
            if changed || out.len() != n_before {
                self.touch(idx, ts);
            }
            self.reschedule(idx);
            return Restart::No;
        }

        if has(flags::ACK) {
            // The handshake's last ACK: the first ACK of the last SYN-ACK
            // from the other endpoint.
            if let Some((sx, end)) = c.synack
                && usize::from(sx) == to
                && seg.ack == end
            {
                c.synack = None;
                if c.s[from].state == TcpState::SynSent {
                    set(c, from, TcpState::Established, Cause::SentAckOfSynAck, ts, opts, out);
                }
                if c.s[to].state == TcpState::SynReceived {
                    set(c, to, TcpState::Established, Cause::GotAckOfSyn, ts, opts, out);
                }
                handshake_done(c, ts);
            }
            // The first ACK of the peer's FIN: what `from` did with it...
            if let Some(fe) = c.s[to].fin_end
                && !c.s[from].got_fin
                && seq_ge(seg.ack, fe)
            {
                c.s[from].got_fin = true;
                changed = true;
                let old = c.s[from].state;
                let new = match old {
                    TcpState::Established | TcpState::SynReceived | TcpState::SynSent => TcpState::CloseWait,
                    TcpState::FinWait1 => TcpState::Closing,
                    TcpState::FinWait2 => TcpState::TimeWait,
                    s => s,
                };
                set(c, from, new, Cause::SentAckOfFin, ts, opts, out);
                // ...and what the peer does with the acknowledgment.
                c.s[to].fin_acked = true;
                let old = c.s[to].state;
                let new = match old {
                    TcpState::FinWait1 => TcpState::FinWait2,
                    TcpState::Closing => TcpState::TimeWait,
                    TcpState::LastAck => TcpState::Closed,
                    s => s,
                };
                set(c, to, new, Cause::GotAckOfFin, ts, opts, out);
            }
        }

        if has(flags::FIN) {
            changed = true;
            if c.s[from].fin_end.is_none() {
                c.s[from].fin_end = Some(seg.seq.wrapping_add(seg.payload).wrapping_add(1));
                if c.first_fin.is_none() {
                    c.first_fin = Some(from as u8);
                } else if !c.s[from].got_fin {
                    c.simultaneous_close = true;
                }
                let new = match c.s[from].state {
                    TcpState::Established | TcpState::SynReceived | TcpState::SynSent => TcpState::FinWait1,
                    TcpState::CloseWait => TcpState::LastAck,
                    s => s,
                };
                set(c, from, new, Cause::SentFin, ts, opts, out);
            }
        }

        let both_closed = c.s[0].fin_acked && c.s[1].fin_acked;
        if changed || out.len() != n_before {
            self.touch(idx, ts);
        }
        if both_closed {
            self.end(idx, ts, Outcome::Fin { first: Who::A, simultaneous: false }, out);
        }
        self.reschedule(idx);
        Restart::No
    }
}

/// The parts of a segment the tracker reads.
#[derive(Clone, Copy, Debug)]
struct Seg {
    flags: u16,
    seq: u32,
    ack: u32,
    payload: u32,
}

fn transition(ts: i64, endpoint: Endpoint, peer: Endpoint, from: TcpState, to: TcpState, cause: Cause) -> StateEvent {
    StateEvent { ts_ns: ts, kind: EventKind::Transition(Transition { endpoint, peer, from, to, cause }) }
}

/// Moves endpoint `i` to `new` (when it differs) with an event.
fn set(c: &mut Conn, i: usize, new: TcpState, cause: Cause, ts: i64, opts: StateOptions, out: &mut Vec<StateEvent>) {
    let old = c.s[i].state;
    if old == new {
        return;
    }
    c.s[i].state = new;
    if new == TcpState::TimeWait {
        c.s[i].tw_deadline = Ns::some(ts.saturating_add(opts.time_wait_ns));
    }
    out.push(transition(ts, c.s[i].ep, c.s[i ^ 1].ep, old, new, cause));
}

/// Records the handshake time once both endpoints are `ESTABLISHED`.
fn handshake_done(c: &mut Conn, ts: i64) {
    if c.handshake_ns.get().is_none()
        && c.s.iter().all(|s| s.state == TcpState::Established)
        && let Some(t) = c.syn_ts.get()
    {
        c.handshake_ns = Ns::some(ts.saturating_sub(t));
    }
}
