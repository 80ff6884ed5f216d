//! Live connection churn: a load generator opens and closes short TCP
//! connections between two namespaces as fast as it can, with nothing
//! attached, with tcptrace, and with tcpdump.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::util::{NetPair, Tracer, count_before, in_ns, sysctl};

pub const PORT: u16 = 8080;

/// Accepts connections in namespace `ns` and closes each once the client has
/// closed (the client closes first, so TIME_WAIT is on its side). Returns a
/// stop flag and the threads.
pub fn server(
    ns: &str,
    addr: SocketAddr,
    threads: usize,
) -> Result<(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let listener = in_ns(ns, move || TcpListener::bind(addr))
        .join()
        .expect("bind thread")
        .with_context(|| format!("bind {addr}"))?;
    // accept() gives up after 100 ms so that the threads see the stop flag.
    let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
    // SAFETY: setting a timeval socket option on a valid socket.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let listener = Arc::new(listener);
    let mut hs = Vec::new();
    for _ in 0..threads {
        let (l, s) = (listener.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s.load(Ordering::Relaxed) {
                if let Ok((mut c, _)) = l.accept() {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                }
            }
        }));
    }
    Ok((stop, hs))
}

/// Opens and closes connections from namespace `ns` to `addr` with `threads`
/// threads for `secs`; returns the connections completed.
pub fn client(ns: &str, addr: SocketAddr, threads: usize, secs: f64) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let d = done.clone();
            in_ns(ns, move || {
                let mut n = 0;
                let mut buf = [0u8; 64];
                while Instant::now() < deadline {
                    if let Ok(mut s) = TcpStream::connect(addr) {
                        // Close first (FIN), then wait for the server's FIN:
                        // at most one connection per thread is in flight, so
                        // the server's accept queue never overflows (an
                        // overflow drops SYNs: a 1 s retransmission stall).
                        let _ = s.shutdown(std::net::Shutdown::Write);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                        drop(s);
                        n += 1;
                    }
                }
                d.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    done.load(Ordering::Relaxed)
}

pub struct Sample {
    pub conns: u64,
    pub secs: f64,
    /// The tracer's CPU seconds from start to exit (wait4).
    pub tracer_cpu: Option<f64>,
    /// Of which: before the traffic (loading and attaching)...
    pub startup_cpu: Option<f64>,
    /// ...and from the traffic's start until the last records were in.
    pub traffic_cpu: Option<f64>,
    pub lost: Option<u64>,
    pub lines: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Who {
    Nothing,
    Tcptrace,
    /// The same with `--no-states`: packet lines only, as tcpdump prints.
    TcptraceNoStates,
    Tcpdump,
}

pub fn setup_pair() -> Result<NetPair> {
    let p = NetPair::new();
    // The client closes first: let it reuse ports in TIME_WAIT (after 1 s,
    // with timestamps) from a wide range.
    sysctl(&p.a, "net.ipv4.ip_local_port_range", "1024 65535")?;
    sysctl(&p.a, "net.ipv4.tcp_tw_reuse", "1")?;
    Ok(p)
}

pub fn sample(p: &NetPair, tcptrace: &Path, dir: &Path, who: Who, secs: f64) -> Result<Sample> {
    let addr: SocketAddr = format!("{}:{PORT}", p.addr_b).parse()?;
    let (stop, servers) = server(&p.b, addr, 2)?;
    let out = dir.join("churn.out");
    let err = dir.join("churn.err");
    let tracer = match who {
        Who::Nothing => None,
        Who::Tcptrace | Who::TcptraceNoStates => {
            let mut c = NetPair::command(&p.a, &tcptrace.to_string_lossy());
            c.args(["-i", &p.if_a, "--flags", "SYN,FIN,RST", "-n"]).env("RUST_LOG", "info");
            if who == Who::TcptraceNoStates {
                c.arg("--no-states");
            }
            Some(Tracer::start(c, &out, &err)?)
        }
        Who::Tcpdump => {
            let mut c = NetPair::command(&p.a, "tcpdump");
            c.args(["-n", "-i", &p.if_a, "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0"]);
            Some(Tracer::start(c, &out, &err)?)
        }
    };
    let before = tracer.as_ref().and_then(|t| t.cpu_s());
    let t = Instant::now();
    let conns = client(&p.a, addr, 2, secs);
    let secs = t.elapsed().as_secs_f64();
    // Let the last closes and their records arrive (a tracer writing to a
    // file reads them within 100 ms).
    std::thread::sleep(Duration::from_millis(500));
    let after = tracer.as_ref().and_then(|t| t.cpu_s());
    let mut s = Sample {
        conns,
        secs,
        tracer_cpu: None,
        startup_cpu: before,
        traffic_cpu: before.zip(after).map(|(b, a)| a - b),
        lost: None,
        lines: None,
    };
    if let Some(t) = tracer {
        let (ended, stderr) = t.stop()?;
        s.tracer_cpu = Some(ended.cpu_s);
        s.lost = count_before(&stderr, "packets dropped by kernel");
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        s.lines = Some(text.lines().filter(|l| l.contains("Flags [")).count() as u64);
    }
    stop.store(true, Ordering::Relaxed);
    for h in servers {
        let _ = h.join();
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&err);
    Ok(s)
}
