//! `--metrics ADDR`: Prometheus metrics over HTTP (`GET /metrics`).
//!
//! The counters that the pipeline sees (packets by flag, state transitions,
//! connection outcomes, handshake times) are [`EventMetrics`], updated as
//! records go through. The kernel's counters and the sizes of the connection
//! tables are read when a scrape comes in: the HTTP server (a small hyper
//! server on the tokio runtime) asks the tracing loop, which owns the kernel
//! maps, for the text through a channel, so nothing is shared or locked and
//! nothing is read from the kernel between scrapes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tcptrace_common::{PacketRecord, record::MALFORMED_KINDS};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{
    states::{EventKind, StateEvent},
    stats::Snapshot,
};

type Label1 = [(&'static str, &'static str); 1];
type Label2 = [(&'static str, &'static str); 2];

/// The OpenMetrics text, for clients that ask for it (Prometheus does).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' classic text format, for everyone else (curl, promtool).
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus' classic text format from OpenMetrics text: a counter's
/// `HELP` and `TYPE` name its `_total` sample, and there is no `# EOF`.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(meta.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Counters fed by the pipeline, record by record. Cloning shares them.
#[derive(Clone, Debug)]
pub struct EventMetrics {
    packets: Counter,
    packets_by_flag: Family<Label1, Counter>,
    transitions: Family<Label2, Counter>,
    closed: Family<Label1, Counter>,
    handshake: Histogram,
}

/// tcpdump's flag names, in the order of the record's flag bits.
const FLAG_NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

impl EventMetrics {
    fn new() -> Self {
        Self {
            packets: Counter::default(),
            packets_by_flag: Family::default(),
            transitions: Family::default(),
            closed: Family::default(),
            // 50 µs to about 6.5 s.
            handshake: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
        }
    }

    /// A packet that was printed (or written with `-w`).
    pub fn packet(&self, rec: &PacketRecord) {
        self.packets.inc();
        for (bit, name) in FLAG_NAMES.iter().enumerate() {
            if rec.tcp_flags & (1 << bit) != 0 {
                self.packets_by_flag.get_or_create(&[("flag", name)]).inc();
            }
        }
    }

    /// State transitions and connection summaries.
    pub fn events(&self, events: &[StateEvent]) {
        for ev in events {
            match &ev.kind {
                EventKind::Transition(t) => {
                    self.transitions.get_or_create(&[("from", t.from.name()), ("to", t.to.name())]).inc();
                }
                EventKind::Summary(s) => {
                    self.closed.get_or_create(&[("outcome", s.outcome.name())]).inc();
                    if let Some(h) = s.handshake_ns {
                        self.handshake.observe(h.max(0) as f64 / 1e9);
                    }
                }
            }
        }
    }
}

/// Every metric, registered, and the kernel values of the last scrape (the
/// kernel's counters only grow; the metrics go up by the difference).
pub struct Metrics {
    registry: Registry,
    events: EventMetrics,
    kernel: Family<Label1, Counter>,
    ringbuf_dropped: Counter,
    malformed: Family<Label1, Counter>,
    kernel_conns: Gauge,
    kernel_conn_table_size: Gauge,
    kernel_conn_entered: Counter,
    kernel_conn_closed: Counter,
    kernel_conn_evictions: Counter,
    tracked: Gauge,
    max_tracked: Gauge,
    user_evictions: Counter,
    last: Snapshot,
    last_kernel_evictions: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("tcptrace"),
            events: EventMetrics::new(),
            kernel: Family::default(),
            ringbuf_dropped: Counter::default(),
            malformed: Family::default(),
            kernel_conns: Gauge::default(),
            kernel_conn_table_size: Gauge::default(),
            kernel_conn_entered: Counter::default(),
            kernel_conn_closed: Counter::default(),
            kernel_conn_evictions: Counter::default(),
            tracked: Gauge::default(),
            max_tracked: Gauge::default(),
            user_evictions: Counter::default(),
            last: Snapshot::default(),
            last_kernel_evictions: 0,
        };
        let r = &mut m.registry;
        let e = &m.events;
        r.register(
            "packets_captured",
            "Packets printed (or written with -w): tcpdump's \"packets captured\"",
            e.packets.clone(),
        );
        r.register("packets_by_flag", "Captured packets carrying each TCP flag", e.packets_by_flag.clone());
        r.register("state_transitions", "Endpoint state transitions, by old and new state", e.transitions.clone());
        r.register(
            "connections_closed",
            "Connection summaries by outcome (fin, rst, refused, timeout, evicted, reused)",
            e.closed.clone(),
        );
        r.register(
            "handshake_seconds",
            "Handshake time (last SYN to the ACK completing it) as seen on the traced interfaces, observed at each connection summary",
            e.handshake.clone(),
        );
        r.register(
            "kernel_packets",
            "Kernel program counters by stage: frames seen, tcp segments, matched by the filter (\"received by filter\"), emitted to the ring buffer, state-only records, later IP fragments",
            m.kernel.clone(),
        );
        r.register(
            "ringbuf_dropped",
            "Records lost because the ring buffer was full (\"dropped by kernel\")",
            m.ringbuf_dropped.clone(),
        );
        r.register("malformed_packets", "Packets the kernel found malformed, by reason", m.malformed.clone());
        r.register("kernel_connections", "Entries in the kernel connection map", m.kernel_conns.clone());
        r.register(
            "kernel_connection_table_size",
            "Capacity of the kernel connection map (--conn-table-size)",
            m.kernel_conn_table_size.clone(),
        );
        r.register(
            "kernel_connections_entered",
            "Connections entered into the kernel connection map",
            m.kernel_conn_entered.clone(),
        );
        r.register(
            "kernel_connections_closed",
            "Connections removed from the kernel connection map when they ended",
            m.kernel_conn_closed.clone(),
        );
        r.register(
            "kernel_connection_evictions",
            "Connections the kernel connection map dropped to make room (entered - closed - entries)",
            m.kernel_conn_evictions.clone(),
        );
        r.register("connections_tracked", "Connections the userspace state tracker follows", m.tracked.clone());
        r.register(
            "max_connections",
            "Capacity of the userspace state tracker (--max-connections)",
            m.max_tracked.clone(),
        );
        r.register(
            "connection_evictions",
            "Connections the userspace state tracker dropped to make room",
            m.user_evictions.clone(),
        );
        m
    }

    /// The handles the pipeline updates.
    pub fn events(&self) -> EventMetrics {
        self.events.clone()
    }

    /// Brings the kernel and table metrics up to `s`.
    pub fn update(&mut self, s: &Snapshot) {
        let (k, old) = (&s.kernel, &self.last.kernel);
        let inc = |c: &Counter, new: u64, old: u64| {
            c.inc_by(new.saturating_sub(old));
        };
        for (stage, new, old) in [
            ("frames", k.frames, old.frames),
            ("tcp", k.tcp, old.tcp),
            ("matched", k.matched, old.matched),
            ("emitted", k.emitted, old.emitted),
            ("state_only", k.state_only, old.state_only),
            ("later_fragments", k.later_fragments, old.later_fragments),
        ] {
            inc(&self.kernel.get_or_create(&[("stage", stage)]), new, old);
        }
        inc(&self.ringbuf_dropped, k.ringbuf_full, old.ringbuf_full);
        for i in 1..MALFORMED_KINDS {
            if let Some(reason) = crate::json::malformed_reason(i as u8) {
                // Every reason is listed, so a dashboard sees zeros.
                inc(&self.malformed.get_or_create(&[("reason", reason)]), k.malformed[i], old.malformed[i]);
            }
        }
        inc(&self.kernel_conn_entered, k.conn_new, old.conn_new);
        inc(&self.kernel_conn_closed, k.conn_closed, old.conn_closed);
        if let Some(n) = s.kernel_conns {
            self.kernel_conns.set(n as i64);
        }
        if let Some(e) = s.kernel_evictions() {
            // Entries entered or closed during the walk can make the
            // difference dip: the counter never goes back.
            inc(&self.kernel_conn_evictions, e, self.last_kernel_evictions);
            self.last_kernel_evictions = self.last_kernel_evictions.max(e);
        }
        self.kernel_conn_table_size.set(i64::from(s.kernel_conn_table_size));
        self.tracked.set(s.tracked as i64);
        self.max_tracked.set(s.max_tracked as i64);
        inc(&self.user_evictions, s.user_evictions, self.last.user_evictions);
        self.last = *s;
    }

    /// The OpenMetrics text of every metric after [`Metrics::update`].
    pub fn render(&mut self, s: &Snapshot) -> String {
        self.update(s);
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A scrape waiting for the text: the tracing loop answers it.
pub type Scrape = oneshot::Sender<String>;

/// Scrapes served at once; more wait for the listener.
const MAX_CLIENTS: usize = 16;

/// Binds `addr` (before anything is loaded, so a bad address attaches
/// nothing).
pub fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("--metrics {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(l)?)
}

/// Serves `GET /metrics` on `listener` until the returned receiver is
/// dropped; each scrape is a [`Scrape`] on the receiver.
pub fn serve(listener: tokio::net::TcpListener) -> mpsc::Receiver<Scrape> {
    let (tx, rx) = mpsc::channel::<Scrape>(MAX_CLIENTS);
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| respond(req, tx.clone()));
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    log::debug!("metrics: {peer}: {e}");
                }
                drop(permit);
            });
        }
    });
    rx
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    tx: mpsc::Sender<Scrape>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
        Ok(r)
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET /metrics\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
            let (otx, orx) = oneshot::channel();
            if tx.send(otx).await.is_err() {
                return reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "tcptrace is stopping\n".into());
            }
            match orx.await {
                Ok(text) if openmetrics => reply(StatusCode::OK, OPENMETRICS, text),
                Ok(text) => reply(StatusCode::OK, TEXT_FORMAT, to_text_format(&text)),
                Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "tcptrace is stopping\n".into()),
            }
        }
        "/" => reply(StatusCode::OK, "text/plain", "tcptrace: metrics at /metrics\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: metrics are at /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{Cause, Endpoint, Outcome, Summary, TcpState, Transition, Who};

    fn ep(port: u16) -> Endpoint {
        Endpoint { family: 4, addr: [0; 16], port }
    }

    #[test]
    fn text_has_every_metric_and_counts_deltas() {
        let mut m = Metrics::new();
        let ev = m.events();
        let mut rec = PacketRecord::zeroed();
        rec.tcp_flags = 0x12;
        ev.packet(&rec);
        ev.events(&[
            StateEvent {
                ts_ns: 0,
                kind: EventKind::Transition(Transition {
                    endpoint: ep(1),
                    peer: ep(2),
                    from: TcpState::Closed,
                    to: TcpState::SynSent,
                    cause: Cause::SentSyn,
                }),
            },
            StateEvent {
                ts_ns: 0,
                kind: EventKind::Summary(Summary {
                    a: ep(1),
                    b: ep(2),
                    roles_known: true,
                    opened_before_trace: false,
                    outcome: Outcome::Fin { first: Who::A, simultaneous: false },
                    duration_ns: Some(5_000_000),
                    handshake_ns: Some(120_000),
                    bytes: [Some(1), Some(2)],
                    states: [TcpState::Closed, TcpState::TimeWait],
                }),
            },
        ]);
        let mut s = Snapshot {
            kernel_conns: Some(3),
            kernel_conn_table_size: 64,
            tracked: 2,
            max_tracked: 10,
            ..Default::default()
        };
        s.kernel.matched = 10;
        s.kernel.conn_new = 9;
        s.kernel.conn_closed = 4;
        s.kernel.ringbuf_full = 1;
        m.render(&s);
        s.kernel.matched = 15;
        let text = m.render(&s);
        for want in [
            "tcptrace_packets_captured_total 1\n",
            "tcptrace_packets_by_flag_total{flag=\"SYN\"} 1\n",
            "tcptrace_packets_by_flag_total{flag=\"ACK\"} 1\n",
            "tcptrace_state_transitions_total{from=\"CLOSED\",to=\"SYN_SENT\"} 1\n",
            "tcptrace_connections_closed_total{outcome=\"fin\"} 1\n",
            "tcptrace_handshake_seconds_count 1\n",
            "tcptrace_kernel_packets_total{stage=\"matched\"} 15\n",
            "tcptrace_ringbuf_dropped_total 1\n",
            "tcptrace_malformed_packets_total{reason=\"tcp-hdr-too-short\"} 0\n",
            "tcptrace_kernel_connections 3\n",
            "tcptrace_kernel_connection_table_size 64\n",
            "tcptrace_kernel_connection_evictions_total 2\n",
            "tcptrace_connections_tracked 2\n",
            "# EOF\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
        assert!(!text.contains("flag=\"RST\""), "{text}");
        let classic = to_text_format(&text);
        assert!(classic.contains("# TYPE tcptrace_packets_captured_total counter\n"), "{classic}");
        assert!(classic.contains("# HELP tcptrace_packets_captured_total Packets"), "{classic}");
        assert!(classic.contains("# TYPE tcptrace_handshake_seconds histogram\n"), "{classic}");
        assert!(classic.contains("# TYPE tcptrace_kernel_connections gauge\n"), "{classic}");
        assert!(!classic.contains("# EOF"), "{classic}");
    }
}
