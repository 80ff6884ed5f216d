//! The event pipeline's ceiling: the highest rate of records the real
//! tcptrace process (pinned to one CPU) prints without loss.
//!
//! tcptrace runs as usual (`-i IFACE -n --no-states`, default 4 MiB ring
//! buffer, lines to /dev/null) on an idle veth in a namespace. The bench takes
//! its TC program by id and runs it with BPF_PROG_TEST_RUN on a SYN, in
//! batches paced to a target rate, from another CPU: every run writes one
//! record into tcptrace's own ring buffer, exactly as traffic would.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    bpf, frames,
    util::{NetPair, Tracer, count_before, pin_to},
};

pub struct Trial {
    pub rate: f64,
    pub sent: u64,
    pub captured: u64,
    pub dropped: u64,
}

/// Sends `rate` records per second for `secs` into a fresh tcptrace.
pub fn trial(p: &NetPair, tcptrace: &Path, dir: &Path, rate: f64, secs: f64) -> Result<Trial> {
    let out = Path::new("/dev/null");
    let err = dir.join("ceiling.err");
    let mut c = std::process::Command::new("taskset");
    c.args(["-c", "1", "ip", "netns", "exec", &p.a]).arg(tcptrace).args(["-i", &p.if_a, "-n", "--no-states"]);
    let t = Tracer::start(c, out, &err)?;
    let pid = t.child.as_ref().expect("running").id();
    let ids = bpf::prog_ids_of(pid, bpf::BPF_PROG_TYPE_SCHED_CLS);
    let Some(&id) = ids.first() else { bail!("no TC program in tcptrace ({pid})") };
    let prog = bpf::prog_fd_by_id(id).context("tcptrace's TC program")?;
    let frame = frames::tcp4(&frames::Tcp { options: frames::syn_options(), ..Default::default() });
    let sent = std::thread::scope(|s| {
        s.spawn(|| -> Result<u64> {
            use std::os::fd::AsFd;
            pin_to(0);
            let batch: u32 = 256;
            let start = Instant::now();
            let end = Duration::from_secs_f64(secs);
            let mut sent = 0u64;
            loop {
                let el = start.elapsed();
                if el >= end {
                    break;
                }
                let due = (el.as_secs_f64() * rate) as u64;
                if sent >= due {
                    std::thread::sleep(Duration::from_micros(20));
                    continue;
                }
                bpf::test_run(prog.as_fd(), &frame, batch)?;
                sent += batch as u64;
            }
            Ok(sent)
        })
        .join()
        .expect("producer")
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = t.stop()?;
    let captured = count_before(&stderr, "packets captured").context("no 'packets captured'")?;
    let dropped = count_before(&stderr, "packets dropped by kernel").context("no 'dropped by kernel'")?;
    Ok(Trial { rate: sent as f64 / secs, sent, captured, dropped })
}
