//! Processes with their CPU time, medians, sysctls in a namespace (the
//! namespaces themselves are the tests' `NetPair`, see `main.rs`).

use std::{
    fs::File,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

pub use crate::netns::{NetPair, in_ns};

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// How a child ended and the CPU it used (its own, from wait4).
pub struct Ended {
    pub status: i32,
    pub cpu_s: f64,
    pub wall_s: f64,
}

/// Waits for `child` with wait4, which gives its rusage.
pub fn wait_rusage(child: Child, started: Instant) -> Result<Ended> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc != pid {
        bail!("wait4 {pid}: {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Ended { status, cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime), wall_s: started.elapsed().as_secs_f64() })
}

/// Runs `cmd` to the end with stdout to `stdout` (a path; /dev/null allowed).
pub fn run_timed(cmd: &mut Command, stdout: &Path) -> Result<Ended> {
    let out = File::create(stdout).with_context(|| format!("create {}", stdout.display()))?;
    let t = Instant::now();
    let child = cmd.stdout(out).stdin(Stdio::null()).spawn().with_context(|| format!("start {cmd:?}"))?;
    let e = wait_rusage(child, t)?;
    if e.status != 0 {
        bail!("{cmd:?} failed with wait status {}", e.status);
    }
    Ok(e)
}

pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Waits until `path` contains `needle` (a tracer's "listening on").
pub fn wait_for_text(path: &Path, needle: &str, timeout: Duration) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if std::fs::read_to_string(path).unwrap_or_default().contains(needle) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{} never said {needle:?}: {}", path.display(), std::fs::read_to_string(path).unwrap_or_default())
}

/// The number before `suffix` on a line of `text` ("12 packets dropped by kernel").
pub fn count_before(text: &str, suffix: &str) -> Option<u64> {
    text.lines().find_map(|l| l.trim().strip_suffix(suffix)?.trim().parse().ok())
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for small cpus.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Sets sysctl `key` to `value` in namespace `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let st = NetPair::command(ns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]).status()?;
    if !st.success() {
        bail!("sysctl {key}={value} in {ns} failed");
    }
    Ok(())
}

/// A tracer (tcptrace or tcpdump) running in the background, its standard
/// output and error going to files.
pub struct Tracer {
    pub child: Option<Child>,
    pub started: Instant,
    pub stderr: std::path::PathBuf,
}

impl Tracer {
    pub fn start(mut cmd: Command, stdout: &Path, stderr: &Path) -> Result<Self> {
        let out = File::create(stdout)?;
        let err = File::create(stderr)?;
        let started = Instant::now();
        let child = cmd.stdout(out).stderr(err).spawn().with_context(|| format!("start {cmd:?}"))?;
        let t = Self { child: Some(child), started, stderr: stderr.to_path_buf() };
        wait_for_text(stderr, "listening on", Duration::from_secs(20))?;
        Ok(t)
    }

    /// CPU seconds (user + system, all threads) it has used so far, from
    /// /proc/PID/stat (clock-tick resolution).
    pub fn cpu_s(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Some(ticks as f64 / hz.max(1) as f64)
    }

    /// SIGINT, then wait: CPU seconds and its standard error.
    pub fn stop(mut self) -> Result<(Ended, String)> {
        let child = self.child.take().expect("running");
        signal(&child, libc::SIGINT);
        let e = wait_rusage(child, self.started)?;
        Ok((e, std::fs::read_to_string(&self.stderr).unwrap_or_default()))
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}
