//! `tcptrace -r FILE`: capture-file frames through the shared parser and the
//! tcpdump formatter, so that file and live output agree.

use std::io::{self, Write};

use anyhow::Context;
use tcptrace_common::{PacketRecord, SliceFrame, fill_record, filter::matches, parse_headers};

use crate::capture;
use crate::cli::Args;
use crate::filter::filter_from_args;
use crate::format::{FormatOptions, Formatter, LinkInfo};
use crate::states::{self, StateLines, StateOptions};

/// Whether an error is a closed pipe on the output (ends the run quietly).
fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Reads `args.read` and writes one line per matching TCP frame to `out`.
/// Frames the parser rejects (not TCP, later fragments, broken before TCP)
/// print nothing. Unless `--no-states`, every frame on the traced ports
/// (whatever `--flags` says) also goes through the connection-state tracker,
/// and its lines follow the packet line that caused them. A broken pipe ends the run without an error. A capture file
/// cut short prints the frames before the cut, then fails.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let path = args.read.as_deref().context("no capture file given (-r)")?;
    let mut reader = capture::open(path)?;
    let (cfg, ports) = filter_from_args(args);
    let ports = (cfg.use_ports != 0).then_some(&ports);
    // The port part of the filter: what the state tracker sees.
    let port_cfg = tcptrace_common::FilterConfig { flag_mask: 0, ..cfg };
    let mut tracker = (!args.no_states).then(|| StateLines::new(StateOptions::default()));
    let mut last_ns = None;
    let mut fmt = Formatter::new(FormatOptions::from_args(args));
    let limit = args.count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut line = Vec::with_capacity(256);
    let mut result = Ok(());
    while printed < limit {
        let pkt = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                result = Err(anyhow::Error::new(e).context(format!("reading {}", path.display())));
                break;
            }
        };
        let frame = SliceFrame { data: &pkt.data, wire_len: pkt.wire_len };
        let Ok(h) = parse_headers(&frame, pkt.link) else { continue };
        let show = matches(&h, &cfg, ports);
        if !show && (tracker.is_none() || !matches(&h, &port_cfg, ports)) {
            continue;
        }
        let mut rec = PacketRecord::zeroed();
        fill_record(&frame, &h, &mut rec);
        line.clear();
        if show {
            fmt.write_packet_link(pkt.ts, LinkInfo::from_frame(pkt.link, &pkt.data), &rec, &mut line);
        }
        if let Some(t) = tracker.as_mut() {
            let ns = states::timestamp_ns(pkt.ts);
            last_ns = Some(ns);
            t.observe(ns, &rec, &fmt, states::ns_timestamp, &mut line);
        }
        if line.is_empty() {
            continue;
        }
        let w = out.write_all(&line).and_then(|()| if args.line_buffered { out.flush() } else { Ok(()) });
        match w {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            Err(e) => return Err(e).context("writing output"),
        }
        printed += u64::from(show);
    }
    if let (Some(t), Some(now)) = (tracker.as_mut(), last_ns) {
        line.clear();
        t.finish(now, &fmt, states::ns_timestamp, &mut line);
        match out.write_all(&line) {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            Err(e) => return Err(e).context("writing output"),
        }
    }
    match out.flush() {
        Ok(()) => {}
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        Err(e) => return Err(e).context("writing output"),
    }
    result
}
