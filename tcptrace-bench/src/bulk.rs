//! Bulk throughput over veth with iperf3, with and without a tracer on the
//! receiver's interface.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::util::{NetPair, Tracer};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Who {
    Nothing,
    Tcptrace(&'static str),
    Tcpdump,
}

impl Who {
    pub fn name(self) -> String {
        match self {
            Who::Nothing => "nothing attached".into(),
            Who::Tcptrace(a) => format!("tcptrace --attach {a}"),
            Who::Tcpdump => "tcpdump".into(),
        }
    }
}

/// Bits per second received in one iperf3 run of `secs` from a to b.
pub fn sample(p: &NetPair, tcptrace: &Path, dir: &Path, who: Who, secs: u32) -> Result<f64> {
    let out = dir.join("bulk.out");
    let err = dir.join("bulk.err");
    let tracer = match who {
        Who::Nothing => None,
        Who::Tcptrace(attach) => {
            let mut c = NetPair::command(&p.b, &tcptrace.to_string_lossy());
            c.args(["-i", &p.if_b, "--flags", "SYN,FIN,RST", "-n", "--attach", attach]);
            Some(Tracer::start(c, &out, &err)?)
        }
        Who::Tcpdump => {
            let mut c = NetPair::command(&p.b, "tcpdump");
            c.args(["-n", "-i", &p.if_b, "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0"]);
            Some(Tracer::start(c, &out, &err)?)
        }
    };
    let mut server = NetPair::command(&p.b, "iperf3")
        .args(["-s", "-1", "-B", &p.addr_b])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start iperf3 -s")?;
    std::thread::sleep(Duration::from_millis(400));
    let o = NetPair::command(&p.a, "iperf3")
        .args(["-c", &p.addr_b, "-t", &secs.to_string(), "-J"])
        .output()
        .context("run iperf3 -c")?;
    let _ = server.wait();
    if let Some(t) = tracer {
        t.stop()?;
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&err);
    if !o.status.success() {
        bail!("iperf3 -c failed: {}", String::from_utf8_lossy(&o.stdout));
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).context("iperf3 -J output")?;
    v["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3: no end.sum_received.bits_per_second")
}
