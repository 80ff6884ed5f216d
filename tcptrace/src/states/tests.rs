//! The state machine, from scripted segments.

use tcptrace_common::record::{PacketRecord, flags::*};

use super::*;

const C: ([u8; 4], u16) = ([10, 0, 0, 1], 40000);
const S: ([u8; 4], u16) = ([10, 0, 0, 2], 80);
const MS: i64 = 1_000_000;

/// One scripted segment: who sends it, flags, seq, ack, payload, time (ms).
#[derive(Clone, Copy, Debug)]
struct P {
    from_client: bool,
    flags: u16,
    seq: u32,
    ack: u32,
    len: u32,
    t_ms: i64,
}

fn c(flags: u16, seq: u32, ack: u32, len: u32, t_ms: i64) -> P {
    P { from_client: true, flags, seq, ack, len, t_ms }
}

fn s(flags: u16, seq: u32, ack: u32, len: u32, t_ms: i64) -> P {
    P { from_client: false, flags, seq, ack, len, t_ms }
}

fn record(p: &P) -> PacketRecord {
    let (src, dst) = if p.from_client { (C, S) } else { (S, C) };
    let mut r = PacketRecord::zeroed();
    r.family = 4;
    r.src[..4].copy_from_slice(&src.0);
    r.dst[..4].copy_from_slice(&dst.0);
    r.sport = src.1;
    r.dport = dst.1;
    r.tcp_flags = p.flags;
    r.seq = p.seq;
    r.ack = p.ack;
    r.l4_off = 20;
    r.data_off = 32;
    r.ip_total_len = 20 + 32 + p.len;
    r.l3_wire_len = r.ip_total_len;
    r.l3_cap_len = r.ip_total_len;
    r
}

fn run_opts(opts: StateOptions, script: &[P], tick_ms: Option<i64>) -> Vec<StateEvent> {
    let mut t = ConnTracker::new(opts);
    let mut out = Vec::new();
    for p in script {
        t.observe(p.t_ms * MS, &record(p), &mut out);
    }
    if let Some(now) = tick_ms {
        t.tick(now * MS, &mut out);
    }
    out
}

fn run(script: &[P]) -> Vec<StateEvent> {
    run_opts(StateOptions::default(), script, None)
}

/// Events as text lines (without timestamps), for readable assertions.
fn lines(ev: &[StateEvent]) -> Vec<String> {
    ev.iter()
        .map(|e| {
            let mut v = Vec::new();
            write_event(e, &mut v);
            String::from_utf8(v).unwrap().trim_end().to_string()
        })
        .collect()
}

/// Transitions only, as "c SYN_SENT" / "s CLOSED" (endpoint, new state).
fn moves(ev: &[StateEvent]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e.kind {
            EventKind::Transition(t) => {
                let who = if t.endpoint.port == C.1 { "c" } else { "s" };
                Some(format!("{who} {}", t.to.name()))
            }
            EventKind::Summary(_) => None,
        })
        .collect()
}

fn summaries(ev: &[StateEvent]) -> Vec<Summary> {
    ev.iter()
        .filter_map(|e| match e.kind {
            EventKind::Summary(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Client ISN 1000, server ISN 5000.
fn handshake() -> Vec<P> {
    vec![c(SYN, 1000, 0, 0, 0), s(SYN | ACK, 5000, 1001, 0, 1), c(ACK, 1001, 5001, 0, 2)]
}

/// Handshake, 10 bytes from the client, 20 from the server, with their ACKs.
fn opened() -> Vec<P> {
    let mut v = handshake();
    v.extend([
        c(ACK | PSH, 1001, 5001, 10, 3),
        s(ACK, 5001, 1011, 0, 4),
        s(ACK | PSH, 5001, 1011, 20, 5),
        c(ACK, 1011, 5021, 0, 6),
    ]);
    v
}

#[test]
fn normal_open_and_close_client_first() {
    let mut script = opened();
    script.extend([
        c(FIN | ACK, 1011, 5021, 0, 10),
        s(ACK, 5021, 1012, 0, 11),
        s(FIN | ACK, 5021, 1012, 0, 12),
        c(ACK, 1012, 5022, 0, 13),
    ]);
    let ev = run(&script);
    assert_eq!(
        moves(&ev),
        [
            "c SYN_SENT",
            "s SYN_RECEIVED",
            "c ESTABLISHED",
            "s ESTABLISHED",
            "c FIN_WAIT_1",
            "s CLOSE_WAIT",
            "c FIN_WAIT_2",
            "s LAST_ACK",
            "c TIME_WAIT",
            "s CLOSED",
        ]
    );
    assert_eq!(
        lines(&ev),
        [
            "STATE 10.0.0.1.40000 CLOSED -> SYN_SENT (sent SYN, peer 10.0.0.2.80)",
            "STATE 10.0.0.2.80 CLOSED -> SYN_RECEIVED (sent SYN-ACK, peer 10.0.0.1.40000)",
            "STATE 10.0.0.1.40000 SYN_SENT -> ESTABLISHED (sent ACK of SYN-ACK, peer 10.0.0.2.80)",
            "STATE 10.0.0.2.80 SYN_RECEIVED -> ESTABLISHED (got ACK of SYN, peer 10.0.0.1.40000)",
            "STATE 10.0.0.1.40000 ESTABLISHED -> FIN_WAIT_1 (sent FIN, peer 10.0.0.2.80)",
            "STATE 10.0.0.2.80 ESTABLISHED -> CLOSE_WAIT (sent ACK of FIN, peer 10.0.0.1.40000)",
            "STATE 10.0.0.1.40000 FIN_WAIT_1 -> FIN_WAIT_2 (got ACK of FIN, peer 10.0.0.2.80)",
            "STATE 10.0.0.2.80 CLOSE_WAIT -> LAST_ACK (sent FIN, peer 10.0.0.1.40000)",
            "STATE 10.0.0.1.40000 FIN_WAIT_2 -> TIME_WAIT (sent ACK of FIN, peer 10.0.0.2.80)",
            "STATE 10.0.0.2.80 LAST_ACK -> CLOSED (got ACK of FIN, peer 10.0.0.1.40000)",
            "CONN 10.0.0.1.40000 > 10.0.0.2.80: fin, client closed first, duration 13.000ms, handshake 2.000ms, bytes >10 <20",
        ]
    );
    // The summary comes with the last ACK.
    assert_eq!(ev.last().unwrap().ts_ns, 13 * MS);
}

#[test]
fn server_closes_first_with_fin_ack_and_data_on_fin() {
    let mut script = opened();
    script.extend([
        // 5 bytes on the FIN segment: the FIN sits at 5021 + 5.
        s(FIN | ACK | PSH, 5021, 1011, 5, 10),
        c(ACK, 1011, 5026, 0, 11),       // acks the data, not the FIN
        c(FIN | ACK, 1011, 5027, 0, 12), // acks the FIN and closes
        s(ACK, 5027, 1012, 0, 13),
    ]);
    let ev = run(&script);
    assert_eq!(
        moves(&ev)[4..],
        ["s FIN_WAIT_1", "c CLOSE_WAIT", "s FIN_WAIT_2", "c LAST_ACK", "s TIME_WAIT", "c CLOSED"]
    );
    let sm = summaries(&ev);
    assert_eq!(sm.len(), 1);
    assert_eq!(sm[0].outcome, Outcome::Fin { first: Who::B, simultaneous: false });
    assert_eq!(sm[0].bytes, [Some(10), Some(25)]);
    assert!(lines(&ev).last().unwrap().contains("fin, server closed first"));
}

#[test]
fn half_close() {
    let mut script = opened();
    script.extend([
        c(FIN | ACK, 1011, 5021, 0, 10),
        s(ACK, 5021, 1012, 0, 11),
        // The server goes on sending for a while; the client acks.
        s(ACK | PSH, 5021, 1012, 100, 500),
        c(ACK, 1012, 5121, 0, 501),
        s(ACK | PSH, 5121, 1012, 100, 900),
        c(ACK, 1012, 5221, 0, 901),
        s(FIN | ACK, 5221, 1012, 0, 1000),
        c(ACK, 1012, 5222, 0, 1001),
    ]);
    let ev = run(&script);
    assert_eq!(
        moves(&ev)[4..],
        ["c FIN_WAIT_1", "s CLOSE_WAIT", "c FIN_WAIT_2", "s LAST_ACK", "c TIME_WAIT", "s CLOSED"]
    );
    let sm = summaries(&ev)[0];
    assert_eq!(sm.bytes, [Some(10), Some(220)]);
    assert_eq!(sm.duration_ns, Some(1001 * MS));
}

#[test]
fn simultaneous_close() {
    let mut script = opened();
    script.extend([
        c(FIN | ACK, 1011, 5021, 0, 10),
        s(FIN | ACK, 5021, 1011, 0, 10), // crossed: does not ack the client's FIN
        c(ACK, 1012, 5022, 0, 11),
        s(ACK, 5022, 1012, 0, 11),
    ]);
    let ev = run(&script);
    assert_eq!(
        moves(&ev)[4..],
        ["c FIN_WAIT_1", "s FIN_WAIT_1", "c CLOSING", "s FIN_WAIT_2", "s TIME_WAIT", "c TIME_WAIT"]
    );
    let sm = summaries(&ev)[0];
    assert_eq!(sm.outcome, Outcome::Fin { first: Who::A, simultaneous: true });
    assert!(lines(&ev).last().unwrap().contains("fin, simultaneous close"));
    // Both TIME_WAITs expire 60 s after they began.
    let ev = run_opts(StateOptions::default(), &script, Some(11 + 60_000));
    let tail: Vec<_> = ev.iter().rev().take(2).collect();
    for e in tail {
        let EventKind::Transition(t) = e.kind else { panic!("{e:?}") };
        assert_eq!((t.from, t.to, t.cause), (TcpState::TimeWait, TcpState::Closed, Cause::TimeWaitExpired));
        assert_eq!(e.ts_ns, (11 + 60_000) * MS);
    }
}

#[test]
fn simultaneous_open() {
    let script = [
        c(SYN, 1000, 0, 0, 0),
        s(SYN, 5000, 0, 0, 1),
        c(SYN | ACK, 1000, 5001, 0, 2),
        s(SYN | ACK, 5000, 1001, 0, 3),
        c(ACK, 1001, 5001, 0, 4),
        s(ACK, 5001, 1001, 0, 4),
    ];
    let ev = run(&script);
    assert_eq!(
        moves(&ev),
        ["c SYN_SENT", "s SYN_SENT", "c SYN_RECEIVED", "s SYN_RECEIVED", "s ESTABLISHED", "c ESTABLISHED"]
    );
    // The client is the first SYN sender.
    let mut script = script.to_vec();
    script.push(s(RST, 5001, 0, 0, 10));
    let sm = summaries(&run(&script))[0];
    assert_eq!((sm.a.port, sm.outcome), (C.1, Outcome::Rst { by: Who::B }));
    assert_eq!(sm.handshake_ns, Some(3 * MS));
}

#[test]
fn refused() {
    let ev = run(&[c(SYN, 1000, 0, 0, 0), s(RST | ACK, 0, 1001, 0, 1)]);
    assert_eq!(moves(&ev), ["c SYN_SENT", "c CLOSED"]);
    assert_eq!(
        lines(&ev)[1..],
        [
            "STATE 10.0.0.1.40000 SYN_SENT -> CLOSED (got RST, peer 10.0.0.2.80)",
            "CONN 10.0.0.1.40000 > 10.0.0.2.80: refused, duration 1.000ms, handshake -, bytes >0 <?",
        ]
    );
}

#[test]
fn rst_in_every_state() {
    let mut closing = opened();
    closing.extend([
        c(FIN | ACK, 1011, 5021, 0, 10), // c FIN_WAIT_1
        s(ACK, 5021, 1012, 0, 11),       // c FIN_WAIT_2, s CLOSE_WAIT
        s(FIN | ACK, 5021, 1012, 0, 12), // s LAST_ACK
    ]);
    let mut simul = opened();
    simul.extend([c(FIN | ACK, 1011, 5021, 0, 10), s(FIN | ACK, 5021, 1011, 0, 10), c(ACK, 1012, 5022, 0, 11)]);
    // (prefix, states before the RST, server-sent RST seq)
    let cases: Vec<(Vec<P>, [TcpState; 2])> = vec![
        (handshake()[..2].to_vec(), [TcpState::SynSent, TcpState::SynReceived]),
        (opened(), [TcpState::Established, TcpState::Established]),
        (closing[..8].to_vec(), [TcpState::FinWait1, TcpState::Established]),
        (closing[..9].to_vec(), [TcpState::FinWait2, TcpState::CloseWait]),
        (closing.clone(), [TcpState::FinWait2, TcpState::LastAck]),
        (simul.clone(), [TcpState::Closing, TcpState::FinWait2]),
    ];
    for (prefix, before) in cases {
        for by_client in [true, false] {
            let mut script = prefix.clone();
            let t = script.last().unwrap().t_ms + 1;
            script.push(if by_client { c(RST, 1012, 0, 0, t) } else { s(RST, 5022, 0, 0, t) });
            let ev = run(&script);
            let n = ev.len();
            let EventKind::Summary(sm) = ev[n - 1].kind else { panic!("{ev:?}") };
            assert_eq!(sm.outcome, Outcome::Rst { by: if by_client { Who::A } else { Who::B } }, "{before:?}");
            assert_eq!(sm.states, [TcpState::Closed, TcpState::Closed]);
            let want: Vec<(TcpState, Cause)> = if by_client {
                vec![(before[0], Cause::SentRst), (before[1], Cause::GotRst)]
            } else {
                vec![(before[1], Cause::SentRst), (before[0], Cause::GotRst)]
            };
            let got: Vec<(TcpState, Cause)> = ev[n - 3..n - 1]
                .iter()
                .map(|e| match e.kind {
                    EventKind::Transition(t) => {
                        assert_eq!(t.to, TcpState::Closed);
                        (t.from, t.cause)
                    }
                    _ => panic!("{e:?}"),
                })
                .collect();
            assert_eq!(got, want, "{before:?} by client {by_client}");
        }
    }
    // RST in TIME_WAIT (after the summary): TIME_WAIT ends, no new summary.
    let mut script = closing.clone();
    script.push(c(ACK, 1012, 5022, 0, 13));
    script.push(s(RST, 5022, 0, 0, 14));
    let ev = run(&script);
    assert_eq!(summaries(&ev).len(), 1);
    assert_eq!(moves(&ev).last().unwrap(), "c CLOSED");
    let EventKind::Transition(t) = ev.last().unwrap().kind else { panic!() };
    assert_eq!((t.from, t.cause), (TcpState::TimeWait, Cause::GotRst));
}

#[test]
fn retransmissions_change_nothing() {
    let script = [
        c(SYN, 1000, 0, 0, 0),
        c(SYN, 1000, 0, 0, 1000),
        c(SYN, 1000, 0, 0, 3000),
        s(SYN | ACK, 5000, 1001, 0, 3001),
        s(SYN | ACK, 5000, 1001, 0, 4001),
        c(ACK, 1001, 5001, 0, 4002),
        c(ACK, 1001, 5001, 0, 4003),
        s(SYN | ACK, 5000, 1001, 0, 4004), // late duplicate
        c(FIN | ACK, 1001, 5001, 0, 5000),
        c(FIN | ACK, 1001, 5001, 0, 5200),
        s(ACK, 5001, 1002, 0, 5201),
        s(ACK, 5001, 1002, 0, 5202),
        s(FIN | ACK, 5001, 1002, 0, 5300),
        c(ACK, 1002, 5002, 0, 5301),
        s(FIN | ACK, 5001, 1002, 0, 5500),
        c(ACK, 1002, 5002, 0, 5501),
    ];
    let ev = run(&script);
    assert_eq!(
        moves(&ev),
        [
            "c SYN_SENT",
            "s SYN_RECEIVED",
            "c ESTABLISHED",
            "s ESTABLISHED",
            "c FIN_WAIT_1",
            "s CLOSE_WAIT",
            "c FIN_WAIT_2",
            "s LAST_ACK",
            "c TIME_WAIT",
            "s CLOSED",
        ]
    );
    let sm = summaries(&ev);
    assert_eq!(sm.len(), 1);
    // Duration from the first SYN, handshake from the last SYN before the SYN-ACK.
    assert_eq!(sm[0].duration_ns, Some(5301 * MS));
    assert_eq!(sm[0].handshake_ns, Some(1002 * MS));
    assert_eq!(sm[0].bytes, [Some(0), Some(0)]);
}

#[test]
fn opened_before_trace() {
    // First segment a FIN: both ESTABLISHED, roles unknown.
    let script = [
        s(FIN | ACK, 7000, 3000, 0, 0),
        c(ACK, 3000, 7001, 0, 1),
        c(FIN | ACK, 3000, 7001, 0, 2),
        s(ACK, 7001, 3001, 0, 3),
    ];
    let ev = run(&script);
    assert_eq!(moves(&ev), ["s FIN_WAIT_1", "c CLOSE_WAIT", "s FIN_WAIT_2", "c LAST_ACK", "s TIME_WAIT", "c CLOSED"]);
    let sm = summaries(&ev)[0];
    assert!(!sm.roles_known && sm.opened_before_trace);
    // A is the sender of the first segment seen.
    assert_eq!(sm.a.port, S.1);
    assert_eq!(
        lines(&ev).last().unwrap(),
        "CONN 10.0.0.2.80 > 10.0.0.1.40000: fin, 10.0.0.2.80 closed first, opened before trace, duration -, handshake -, bytes >? <?"
    );
    // First segment an RST.
    let ev = run(&[c(RST | ACK, 3000, 7000, 0, 0)]);
    assert_eq!(moves(&ev), ["c CLOSED", "s CLOSED"]);
    assert_eq!(
        lines(&ev).last().unwrap(),
        "CONN 10.0.0.1.40000 > 10.0.0.2.80: rst by 10.0.0.1.40000, opened before trace, duration -, handshake -, bytes >? <?"
    );
    // Data and ACKs alone create nothing.
    let ev = run(&[c(ACK | PSH, 1, 2, 100, 0), s(ACK, 2, 101, 0, 1)]);
    assert!(ev.is_empty());
}

#[test]
fn syn_ack_first() {
    let ev = run(&[s(SYN | ACK, 5000, 1001, 0, 0), c(ACK, 1001, 5001, 0, 1)]);
    assert_eq!(moves(&ev), ["c SYN_SENT", "s SYN_RECEIVED", "c ESTABLISHED", "s ESTABLISHED"]);
    assert_eq!(
        lines(&ev)[0],
        "STATE 10.0.0.1.40000 CLOSED -> SYN_SENT (SYN not seen, answered by SYN-ACK, peer 10.0.0.2.80)"
    );
}

#[test]
fn reuse_after_time_wait_and_while_open() {
    let mut script = opened();
    script.extend([
        c(FIN | ACK, 1011, 5021, 0, 10),
        s(FIN | ACK, 5021, 1012, 0, 11),
        c(ACK, 1012, 5022, 0, 12), // c TIME_WAIT, s CLOSED: summary
        c(SYN, 900_000, 0, 0, 20), // new connection during TIME_WAIT
        s(SYN | ACK, 60_000, 900_001, 0, 21),
        c(ACK, 900_001, 60_001, 0, 22),
    ]);
    let ev = run(&script);
    let m = moves(&ev);
    assert_eq!(m[10..], ["c CLOSED", "c SYN_SENT", "s SYN_RECEIVED", "c ESTABLISHED", "s ESTABLISHED"]);
    let EventKind::Transition(t) =
        ev.iter().filter(|e| matches!(e.kind, EventKind::Transition(_))).nth(10).unwrap().kind
    else {
        panic!()
    };
    assert_eq!((t.from, t.cause), (TcpState::TimeWait, Cause::Reused));
    // No TIME_WAIT expiry for the old connection afterwards.
    let ev2 = run_opts(StateOptions::default(), &script, Some(200_000));
    assert_eq!(ev2.len(), ev.len());

    // A new SYN (new ISN) while the old one is open: the old one ends as reused.
    let mut script = opened();
    script.push(c(SYN, 777, 0, 0, 50));
    let ev = run(&script);
    let sm = summaries(&ev);
    assert_eq!(sm.len(), 1);
    assert_eq!(sm[0].outcome, Outcome::Reused);
    assert_eq!(sm[0].states, [TcpState::Established, TcpState::Established]);
    assert_eq!(moves(&ev).last().unwrap(), "c SYN_SENT");
    assert!(lines(&ev).iter().any(|l| l.contains(": reused in ESTABLISHED/ESTABLISHED,")));

    // A new SYN after an RST: a new connection.
    let ev = run(&[c(SYN, 1, 0, 0, 0), s(RST | ACK, 0, 2, 0, 1), c(SYN, 1, 0, 0, 2), c(SYN, 99, 0, 0, 3)]);
    // The late retransmission of the refused SYN is ignored; the new ISN starts over.
    assert_eq!(moves(&ev), ["c SYN_SENT", "c CLOSED", "c SYN_SENT"]);
}

#[test]
fn late_segments_after_rst_are_ignored() {
    let mut script = opened();
    script.extend([
        c(RST, 1011, 0, 0, 10),
        s(ACK | PSH, 5021, 1011, 10, 11),
        c(RST, 1011, 0, 0, 12),
        s(FIN | ACK, 5021, 1011, 0, 13),
    ]);
    let ev = run(&script);
    assert_eq!(summaries(&ev).len(), 1);
    assert_eq!(moves(&ev).len(), 6);
    // After the memory of the RST has gone (60 s), a FIN is a new connection
    // opened before the trace.
    let mut script2 = script.clone();
    script2.push(s(FIN | ACK, 5021, 1011, 0, 70_000));
    let ev = run(&script2);
    assert_eq!(moves(&ev).last().unwrap(), "s FIN_WAIT_1");
}

#[test]
fn time_wait_expiry_by_tick_and_by_later_records() {
    let mut script = opened();
    script.extend([c(FIN | ACK, 1011, 5021, 0, 10), s(FIN | ACK, 5021, 1012, 0, 11), c(ACK, 1012, 5022, 0, 12)]);
    let opts = StateOptions { time_wait_ns: 5_000 * MS, ..StateOptions::default() };
    // Not yet.
    let n = run_opts(opts, &script, Some(5_011)).len();
    let ev = run_opts(opts, &script, Some(5_012));
    assert_eq!(ev.len(), n + 1);
    let last = ev.last().unwrap();
    assert_eq!(last.ts_ns, 5_012 * MS);
    assert_eq!(
        lines(&ev).last().unwrap(),
        "STATE 10.0.0.1.40000 TIME_WAIT -> CLOSED (TIME_WAIT expired, peer 10.0.0.2.80)"
    );
    // A record of another connection later on expires it too, before its own events.
    let mut script2 = script.clone();
    let other = P { from_client: true, flags: SYN, seq: 1, ack: 0, len: 0, t_ms: 9_000 };
    script2.push(other);
    let mut t = ConnTracker::new(opts);
    let mut out = Vec::new();
    for p in &script2[..script2.len() - 1] {
        t.observe(p.t_ms * MS, &record(p), &mut out);
    }
    let mut r = record(&other);
    r.sport = 40001;
    t.observe(other.t_ms * MS, &r, &mut out);
    let l = lines(&out);
    assert!(l[l.len() - 2].contains("TIME_WAIT -> CLOSED"));
    assert!(l[l.len() - 1].contains("40001 CLOSED -> SYN_SENT"));
    // Afterwards the entry is gone.
    assert_eq!(t.len(), 1);
}

#[test]
fn stale_handshake_times_out() {
    let opts = StateOptions { stale_ns: 10_000 * MS, ..StateOptions::default() };
    let ev = run_opts(opts, &[c(SYN, 1, 0, 0, 0), c(SYN, 1, 0, 0, 1000)], Some(11_000));
    let sm = summaries(&ev);
    assert_eq!(sm.len(), 1);
    assert_eq!(sm[0].outcome, Outcome::Timeout);
    assert_eq!(ev.last().unwrap().ts_ns, 11_000 * MS);
    assert!(lines(&ev).last().unwrap().contains(": timeout in SYN_SENT/CLOSED,"));
    // The retransmission moved the deadline from 10 s to 11 s: nothing at
    // 10.5 s, even though the tracker was first told 10 s.
    let ev = run_opts(opts, &[c(SYN, 1, 0, 0, 0), c(SYN, 1, 0, 0, 1000)], Some(10_500));
    assert!(summaries(&ev).is_empty());
    // A deadline that moves earlier (the connection ends: TIME_WAIT's 60 s
    // after 5 s, before the 300 s of staleness) is kept too.
    let opts = StateOptions { stale_ns: 300_000 * MS, time_wait_ns: 60_000 * MS, ..StateOptions::default() };
    let mut script = handshake();
    script.extend([c(FIN | ACK, 1001, 5001, 0, 5000), s(FIN | ACK, 5001, 1002, 0, 5001), c(ACK, 1002, 5002, 0, 5002)]);
    let ev = run_opts(opts, &script, Some(65_002));
    assert_eq!(
        lines(&ev).last().unwrap(),
        "STATE 10.0.0.1.40000 TIME_WAIT -> CLOSED (TIME_WAIT expired, peer 10.0.0.2.80)"
    );
    assert_eq!(ev.last().unwrap().ts_ns, 65_002 * MS);
    // An established connection never times out.
    let ev = run_opts(opts, &opened(), Some(1_000_000));
    assert!(summaries(&ev).is_empty());
}

#[test]
fn eviction_of_the_oldest_idle() {
    let opts = StateOptions { max_conns: 2, ..StateOptions::default() };
    let mut t = ConnTracker::new(opts);
    let mut out = Vec::new();
    let syn = |port: u16, t_ms: i64| {
        let mut r = record(&c(SYN, 1, 0, 0, t_ms));
        r.sport = port;
        r
    };
    t.observe(0, &syn(1, 0), &mut out);
    t.observe(MS, &syn(2, 1), &mut out);
    // Port 1 is active again (retransmission): port 2 is now the oldest idle.
    t.observe(2 * MS, &syn(1, 2), &mut out);
    out.clear();
    t.observe(3 * MS, &syn(3, 3), &mut out);
    assert_eq!(t.evictions(), 1);
    assert_eq!(t.len(), 2);
    let sm = summaries(&out);
    assert_eq!(sm.len(), 1);
    assert_eq!((sm[0].a.port, sm[0].outcome), (2, Outcome::Evicted));
    assert_eq!(
        lines(&out)[0],
        "CONN 10.0.0.1.2 > 10.0.0.2.80: evicted in SYN_SENT/CLOSED, duration 2.000ms, handshake -, bytes >? <?"
    );
}

#[test]
fn ipv6_and_wrapping_sequence_numbers() {
    let mut t = ConnTracker::new(StateOptions::default());
    let mut out = Vec::new();
    let a: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let b: [u8; 16] = "2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let seg = |from_a: bool, flags: u16, seq: u32, ack: u32, len: u32| {
        let mut r = record(&c(flags, seq, ack, len, 0));
        r.family = 6;
        (r.src, r.dst) = if from_a { (a, b) } else { (b, a) };
        (r.sport, r.dport) = if from_a { (5000, 443) } else { (443, 5000) };
        r.l4_off = 40;
        r.ip_total_len = 40 + 32 + len;
        r
    };
    let isn = u32::MAX - 4;
    for r in [
        seg(true, SYN, isn, 0, 0),
        seg(false, SYN | ACK, 7, isn.wrapping_add(1), 0),
        seg(true, ACK, isn.wrapping_add(1), 8, 0),
        seg(true, FIN | ACK | PSH, isn.wrapping_add(1), 8, 10), // FIN at seq 6 after the wrap
        seg(false, ACK, 8, 6, 0),                               // acks data, not the FIN
        seg(false, FIN | ACK, 8, 7, 0),
        seg(true, ACK, 7, 9, 0),
    ] {
        t.observe(0, &r, &mut out);
    }
    let l = lines(&out);
    assert_eq!(
        l.last().unwrap(),
        "CONN 2001:db8::1.5000 > 2001:db8::2.443: fin, client closed first, duration 0.000ms, handshake 0.000ms, bytes >10 <0"
    );
    assert!(
        l.iter()
            .any(|x| x == "STATE 2001:db8::2.443 ESTABLISHED -> CLOSE_WAIT (sent ACK of FIN, peer 2001:db8::1.5000)")
    );
}

#[test]
fn durations() {
    let d = |ns| {
        let mut s = String::new();
        write_duration(&mut s, ns);
        s
    };
    assert_eq!(d(48_123), "0.048ms");
    assert_eq!(d(1_743_000), "1.743ms");
    assert_eq!(d(999_999_999), "999.999ms");
    assert_eq!(d(12_345_678_901), "12.345s");
    assert_eq!(d(-5), "0.000ms");
    assert_eq!(d(4_294_967_296_123_000_000), "4294967296.123s");
    assert_eq!(d(i64::MAX), format!("{}.{:03}s", i64::MAX / 1_000_000_000, i64::MAX / 1_000_000 % 1000));
    assert_eq!(d(5_000_000_007_000_000_000), "5000000007.000s");
}

/// Whether the kernel would send this segment with `--flags SYN,FIN,RST`
/// (tcptrace-common's shared connection logic decides), replayed in order.
fn kernel_filter(script: &[P]) -> Vec<P> {
    use tcptrace_common::conn::{ConnKey, ConnState, Segment, Step, step};
    let mut map: std::collections::HashMap<ConnKey, ConnState> = Default::default();
    let mut kept = Vec::new();
    for p in script {
        let r = record(p);
        let (key, from) = ConnKey::new(4, &r.src, r.sport, &r.dst, r.dport);
        let seg = Segment { flags: p.flags, seq: p.seq, ack: p.ack, payload: p.len };
        let ctl = p.flags & (SYN | FIN | RST) != 0;
        let st = map.entry(key).or_default();
        let res = step(st, from, &seg);
        if res == Step::Closed {
            map.remove(&key);
        }
        if ctl || res != Step::Nothing {
            kept.push(*p);
        }
    }
    kept
}

/// Every script of this file, fed whole and fed only what the kernel sends
/// with a SYN/FIN/RST filter, gives the same events.
#[test]
fn same_events_with_every_packet_or_only_state_relevant_ones() {
    let mut scripts: Vec<Vec<P>> = Vec::new();
    let close = |mut v: Vec<P>, tail: &[P]| {
        v.extend_from_slice(tail);
        v
    };
    scripts.push(close(
        opened(),
        &[
            c(FIN | ACK, 1011, 5021, 0, 10),
            s(ACK, 5021, 1012, 0, 11),
            s(ACK | PSH, 5021, 1012, 100, 500),
            c(ACK, 1012, 5121, 0, 501),
            c(ACK, 1012, 5121, 0, 502),
            s(FIN | ACK, 5121, 1012, 0, 1000),
            c(ACK, 1012, 5122, 0, 1001),
            c(ACK, 1012, 5122, 0, 1002),
        ],
    ));
    scripts.push(close(
        opened(),
        &[
            s(FIN | ACK | PSH, 5021, 1011, 5, 10),
            c(ACK, 1011, 5026, 0, 11),
            c(ACK | PSH, 1011, 5026, 7, 12),
            c(ACK, 1018, 5027, 0, 13),
            s(ACK, 5027, 1018, 0, 14),
            c(FIN | ACK, 1018, 5027, 0, 15),
            s(ACK, 5027, 1019, 0, 16),
        ],
    ));
    scripts.push(close(
        opened(),
        &[
            c(FIN | ACK, 1011, 5021, 0, 10),
            s(FIN | ACK, 5021, 1011, 0, 10),
            c(ACK, 1012, 5022, 0, 11),
            s(ACK, 5022, 1012, 0, 11),
            s(ACK, 5022, 1012, 0, 12),
        ],
    ));
    scripts.push(vec![
        c(SYN, 1000, 0, 0, 0),
        s(SYN, 5000, 0, 0, 1),
        c(SYN | ACK, 1000, 5001, 0, 2),
        s(SYN | ACK, 5000, 1001, 0, 3),
        c(ACK, 1001, 5001, 0, 4),
        s(ACK, 5001, 1001, 0, 4),
        c(ACK | PSH, 1001, 5001, 3, 5),
        s(RST, 5001, 0, 0, 10),
    ]);
    scripts.push(vec![c(SYN, 1000, 0, 0, 0), s(RST | ACK, 0, 1001, 0, 1)]);
    scripts.push(vec![
        c(SYN, 1000, 0, 0, 0),
        c(SYN, 1000, 0, 0, 1000),
        s(SYN | ACK, 5000, 1001, 0, 1001),
        s(SYN | ACK, 5000, 1001, 0, 2001),
        c(ACK | PSH, 1001, 5001, 50, 2002), // the handshake's ACK carries data
        c(ACK, 1051, 5001, 0, 2003),
        s(ACK, 5001, 1051, 0, 2004),
        c(FIN | ACK, 1051, 5001, 0, 3000),
        c(FIN | ACK, 1051, 5001, 0, 3200),
        s(ACK, 5001, 1052, 0, 3201),
        s(ACK, 5001, 1052, 0, 3202),
        s(FIN | ACK, 5001, 1052, 0, 3300),
        c(ACK, 1052, 5002, 0, 3301),
        s(FIN | ACK, 5001, 1052, 0, 3500),
        c(ACK, 1052, 5002, 0, 3501),
        c(SYN, 90_000, 0, 0, 4000),
        s(SYN | ACK, 3, 90_001, 0, 4001),
        c(ACK, 90_001, 4, 0, 4002),
        c(ACK | PSH, 90_001, 4, 9, 4003),
        s(ACK, 4, 90_010, 0, 4004),
        s(RST | ACK, 4, 90_010, 0, 5000),
        c(ACK | PSH, 90_010, 4, 9, 5001),
        s(RST, 4, 0, 0, 5002),
    ]);
    scripts.push(vec![
        s(ACK | PSH, 7000, 3000, 10, 0),
        c(ACK, 3000, 7010, 0, 1),
        s(FIN | ACK, 7010, 3000, 0, 2),
        c(ACK, 3000, 7011, 0, 3),
        c(ACK | PSH, 3000, 7011, 10, 4),
        s(ACK, 7011, 3010, 0, 5),
        c(FIN | ACK, 3010, 7011, 0, 6),
        s(ACK, 7011, 3011, 0, 7),
    ]);
    scripts
        .push(close(opened(), &[c(ACK | PSH, 1011, 5021, 10, 100), s(ACK, 5021, 1021, 0, 101), c(SYN, 1, 0, 0, 200)]));
    let mut filtered = 0;
    for (i, script) in scripts.iter().enumerate() {
        let kept = kernel_filter(script);
        filtered += script.len() - kept.len();
        for opts in [StateOptions::default(), StateOptions { max_conns: 1, time_wait_ns: MS, stale_ns: 100 * MS }] {
            let all = run_opts(opts, script, Some(100_000));
            let some = run_opts(opts, &kept, Some(100_000));
            assert_eq!(lines(&all), lines(&some), "script {i}");
            assert_eq!(all, some, "script {i}");
            assert!(!all.is_empty());
        }
    }
    assert!(filtered >= 15, "{filtered}");
}

/// Random but plausible conversations (retransmissions, lagging and
/// duplicate ACKs, data on FINs, resets anywhere, gaps, 4-tuple reuse), whole
/// and through the kernel's logic: identical events.
#[test]
fn same_events_on_random_conversations() {
    let rng = std::cell::Cell::new(0x2545_f491_4f6c_dd1d_u64);
    let next = |n: u64| {
        let mut r = rng.get();
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        rng.set(r);
        r % n
    };
    let mut total_filtered = 0;
    for _ in 0..3000 {
        let mut script = Vec::new();
        let mut t = 0i64;
        for _conn in 0..1 + next(2) {
            let (ci, si) = (next(1 << 32) as u32, next(1 << 32) as u32);
            // Next sequence number and highest acknowledged, per side.
            let (mut cn, mut sn) = (ci.wrapping_add(1), si.wrapping_add(1));
            // Long gaps (timeouts, TIME_WAIT expiry) only before any FIN: a FIN
            // retransmitted long after the close makes the kernel remember the
            // connection again for good, while the tracker has forgotten it
            // after TIME_WAIT (a known difference; see the report of the
            // states work).
            let gaps = std::cell::Cell::new(true);
            let step = |t: &mut i64| {
                *t += if gaps.get() && next(20) == 0 { 30_000 + next(100_000) as i64 } else { next(5) as i64 };
                *t
            };
            for _ in 0..1 + next(3) {
                let tt = step(&mut t);
                script.push(c(SYN, ci, 0, 0, tt));
            }
            match next(10) {
                0 => {
                    let tt = step(&mut t);
                    script.push(s(RST | ACK, 0, ci.wrapping_add(1), 0, tt));
                    continue;
                }
                1 => continue, // no answer
                _ => {}
            }
            for _ in 0..1 + next(2) {
                let tt = step(&mut t);
                script.push(s(SYN | ACK, si, ci.wrapping_add(1), 0, tt));
            }
            let mut fin = [false, false];
            let mut events = 0;
            while events < 12 {
                events += 1;
                let from_c = next(2) == 0;
                let (mine, peer) = if from_c { (&mut cn, sn) } else { (&mut sn, cn) };
                // Acknowledge the peer's data so far, or lag behind it.
                let ack = if next(4) == 0 { peer.wrapping_sub(next(3) as u32) } else { peer };
                let tt = step(&mut t);
                let p = match next(12) {
                    0 => {
                        // Reset (maybe with a stale sequence number).
                        let p = P {
                            from_client: from_c,
                            flags: RST | (ACK * next(2) as u16),
                            seq: *mine,
                            ack,
                            len: 0,
                            t_ms: tt,
                        };
                        script.push(p);
                        break;
                    }
                    1..=3 if !fin[from_c as usize] => {
                        let len = next(3) as u32 * 10;
                        fin[from_c as usize] = true;
                        gaps.set(false);
                        let p = P { from_client: from_c, flags: FIN | ACK, seq: *mine, ack, len, t_ms: tt };
                        *mine = mine.wrapping_add(len + 1);
                        p
                    }
                    4 if fin[from_c as usize] => {
                        // Retransmitted FIN.
                        let mut p =
                            *script.iter().rev().find(|p: &&P| p.from_client == from_c && p.flags & FIN != 0).unwrap();
                        p.t_ms = tt;
                        p
                    }
                    5..=7 if !fin[from_c as usize] => {
                        let len = 1 + next(100) as u32;
                        let p = P { from_client: from_c, flags: ACK | PSH, seq: *mine, ack, len, t_ms: tt };
                        *mine = mine.wrapping_add(len);
                        p
                    }
                    _ => P { from_client: from_c, flags: ACK, seq: *mine, ack, len: 0, t_ms: tt },
                };
                script.push(p);
                if fin == [true, true] && next(3) == 0 {
                    break;
                }
            }
            // Final ACKs both ways.
            let tt = step(&mut t);
            script.push(c(ACK, cn, sn, 0, tt));
            script.push(s(ACK, sn, cn, 0, tt));
        }
        let kept = kernel_filter(&script);
        total_filtered += script.len() - kept.len();
        for opts in
            [StateOptions::default(), StateOptions { max_conns: 1, time_wait_ns: 20_000 * MS, stale_ns: 50_000 * MS }]
        {
            let all = run_opts(opts, &script, Some(t + 1_000_000));
            let some = run_opts(opts, &kept, Some(t + 1_000_000));
            assert_eq!(lines(&all), lines(&some), "{script:#?}");
            assert_eq!(all, some);
        }
    }
    assert!(total_filtered > 10_000, "{total_filtered}");
}
