//! `tcptrace -r FILE`: capture-file frames through the shared parser and the
//! same pipeline as live records, so that file and live output agree.

use std::io::{Read, Write};

use anyhow::Context;
use tcptrace_common::{
    ExtTail, FilterConfig, PacketRecord, SliceFrame, fill_ext, fill_record,
    filter::{matches_endpoints, matches_flags, matches_hosts},
    parse_headers,
};

use crate::{
    capture::{self, CaptureReader, Packet},
    cli::Args,
    filter::filter_from_args,
    format::LinkInfo,
    names::Resolver,
    pipeline::{Flow, Pipeline, TimeBase},
    states,
};

/// Reads `args.read` and writes one line per matching TCP frame to `out`
/// (with `-w`, one pcap record to the file instead; see [`crate::pcap::outputs`]).
/// Frames the parser rejects (not TCP, later fragments, broken before TCP)
/// print nothing. Unless `--no-states`, every frame on the traced ports
/// (whatever `--flags` says) also goes through the connection-state tracker,
/// and its lines follow the packet line that caused them. Without `-n`,
/// addresses are looked up (blocking, once each) as tcpdump does. A broken
/// pipe ends the run without an error. A capture file cut short prints the
/// frames before the cut, then fails.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let path = args.read.as_deref().context("no capture file given (-r)")?;
    let name = if path.as_os_str() == "-" { "standard input".to_string() } else { path.display().to_string() };
    let reader = capture::open(path).map_err(|e| anyhow::Error::new(e).context(format!("reading {name}")))?;
    run_reader(args, reader, &name, out)
}

/// [`run`] on an opened capture; `name` names it in errors.
pub fn run_reader<R: Read>(
    args: &Args,
    mut reader: CaptureReader<R>,
    name: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (cfg, ports): (FilterConfig, _) = filter_from_args(args);
    let hosts = crate::filter::hosts_from_args(args)?;
    let ports = (cfg.use_ports != 0).then_some(&ports);
    let (text, pcap) = crate::pcap::outputs(args, Box::new(out), args.line_buffered)?;
    let mut pipe = Pipeline::new(args, text, pcap, TimeBase::Realtime);
    let mut resolver = pipe.resolves_names().then(|| Resolver::new(1));
    let tracks_states = pipe.tracks_states();
    // The record of a frame that leaves one, and whether its line is shown;
    // its IPv6 extension headers' bytes go to `tail`.
    let mut tail = Box::new(ExtTail::empty());
    let to_record = |pkt: &Packet, tail: &mut ExtTail| -> Option<(bool, PacketRecord)> {
        let frame = SliceFrame { data: &pkt.data, wire_len: pkt.wire_len };
        let h = parse_headers(&frame, pkt.link).ok()?;
        if !matches_endpoints(&h, &cfg, ports) || (!hosts.is_empty() && !matches_hosts(&frame, &h, &hosts)) {
            return None;
        }
        let show = matches_flags(&h, &cfg);
        if !show && !tracks_states {
            return None;
        }
        let mut rec = PacketRecord::zeroed();
        fill_record(&frame, &h, &mut rec);
        fill_ext(&frame, &h, tail);
        Some((show, rec))
    };
    let mut result = Ok(());
    loop {
        let pkt = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                result = Err(anyhow::Error::new(e).context(format!("reading {name}")));
                break;
            }
        };
        let rec = to_record(&pkt, &mut tail);
        let link = LinkInfo::from_frame(pkt.link, &pkt.data);
        reader.recycle(pkt.data);
        let Some((show, rec)) = rec else { continue };
        let ext = tail.bytes();
        let mut flow =
            pipe.push(pkt.ts, states::timestamp_ns(pkt.ts), link, &rec, ext, show).context("writing output")?;
        if let Some(r) = resolver.as_mut() {
            for ip in pipe.take_requests() {
                r.request(ip);
            }
            while flow == Flow::Go && pipe.waiting() && r.outstanding() > 0 {
                let Some((ip, name)) = r.recv_blocking() else { break };
                flow = pipe.set_name(ip, name).context("writing output")?;
            }
        }
        if flow == Flow::Stop {
            break;
        }
    }
    pipe.finish(None, false).context("writing output")?;
    result
}
