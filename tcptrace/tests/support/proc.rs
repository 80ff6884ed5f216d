//! A traced-program process (tcptrace or tcpdump) whose output lines the
//! test reads as they come; killed if the test ends early.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub struct Proc {
    name: String,
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    out_seen: Vec<String>,
    err_seen: Vec<String>,
}

fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits on `rx` for a line containing `what`, keeping every line in `seen`.
fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    timeout: Duration,
) -> Result<String, String> {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.contains(what) {
                    return Ok(l);
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Self { name: name.to_string(), child, out, err, out_seen: Vec::new(), err_seen: Vec::new() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `what` and returns it.
    pub fn wait_err(&mut self, what: &str, timeout: Duration) -> String {
        wait_line(&self.err, &mut self.err_seen, what, timeout).unwrap_or_else(|e| {
            panic!("{}: no '{what}' on stderr ({e}); stderr so far:\n{}", self.name, self.err_seen.join("\n"))
        })
    }

    /// Waits (up to two minutes: loading the kernel programs takes a few
    /// seconds on a busy machine) for a stderr line containing `what`.
    pub fn wait_for(&mut self, what: &str) {
        self.wait_err(what, Duration::from_secs(120));
    }

    /// Waits for a stdout line containing `what` and returns it.
    pub fn wait_out(&mut self, what: &str, timeout: Duration) -> String {
        wait_line(&self.out, &mut self.out_seen, what, timeout).unwrap_or_else(|e| {
            panic!("{}: no '{what}' on stdout ({e}); stderr so far:\n{}", self.name, self.err_seen.join("\n"))
        })
    }

    /// SIGINT, then what [`Proc::finish`] returns.
    pub fn stop(self) -> (String, String, i32) {
        self.signal(libc::SIGINT)
    }

    /// Sends `sig`, then what [`Proc::finish`] returns.
    pub fn signal(self, sig: i32) -> (String, String, i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        self.finish()
    }

    /// Waits for the exit: all of stdout (each line with its `\n`), all of
    /// stderr (lines joined by `\n`), and the exit status (-1 for a signal).
    pub fn finish(mut self) -> (String, String, i32) {
        let status = self.child.wait().unwrap();
        // The reader threads end at end of file.
        self.out_seen.extend(self.out.iter());
        self.err_seen.extend(self.err.iter());
        let mut out = String::new();
        for l in &self.out_seen {
            out.push_str(l);
            out.push('\n');
        }
        (out, self.err_seen.join("\n"), status.code().unwrap_or(-1))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
