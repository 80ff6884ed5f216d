//! Standard output as tcpdump handles it: buffered, line-buffered with `-l`
//! or on a terminal, and a closed pipe (`| head`) is a normal end.

use std::io::{self, Write};

/// Bytes written at a time, and their alignment in the output.
const CHUNK: usize = 64 * 1024;

/// Lines buffered and written in chunks of [`CHUNK`] bytes that end at
/// multiples of [`CHUNK`] from the start of the output (a chunk ends in the
/// middle of a line as often as not). Into a file, such writes let the page
/// cache use 64 KiB folios: writing the same bytes in chunks of whole lines
/// (unaligned) cost the kernel about 1.5 times as much CPU (and writing was
/// a quarter of tcptrace's CPU under connection churn, BENCHMARKS.md 3). The
/// output is taken to start at a multiple of [`CHUNK`] (`> file` does;
/// appending to a file of another size only loses the alignment). Flushes
/// (`-l`, the end of a batch) write what there is; later chunks end at the
/// next multiple again.
pub struct Output<W: Write> {
    inner: W,
    buf: Vec<u8>,
    /// Bytes written to `inner` so far.
    written: u64,
    line_buffered: bool,
    closed: bool,
}

/// Standard output written straight to its file descriptor, without the
/// line buffer of [`io::Stdout`] (which would cut [`Output`]'s chunks at
/// their last newline and write the rest separately). tcptrace writes to
/// standard output only through this. (A program started with it closed,
/// `>&-`, writes to `/dev/null`: Rust's runtime opens that in its place.)
pub struct RawStdout;

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
            let n = unsafe { libc::write(libc::STDOUT_FILENO, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Output<W> {
    pub fn new(inner: W, line_buffered: bool) -> Self {
        Self { inner, buf: Vec::with_capacity(CHUNK + 4096), written: 0, line_buffered, closed: false }
    }

    /// Writes one line. `Ok(false)` once the reader has gone away.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        self.buf.extend_from_slice(line);
        let res = if self.line_buffered { self.write_all_buffered() } else { self.write_chunks() };
        self.check(res)
    }

    /// Writes each whole chunk there is, keeping the rest.
    fn write_chunks(&mut self) -> io::Result<()> {
        let mut done = 0;
        loop {
            let to_boundary = CHUNK - (self.written % CHUNK as u64) as usize;
            if self.buf.len() - done < to_boundary {
                break;
            }
            let r = self.inner.write_all(&self.buf[done..done + to_boundary]);
            if r.is_err() {
                self.buf.clear();
                return r;
            }
            done += to_boundary;
            self.written += to_boundary as u64;
        }
        if done > 0 {
            // Less than a chunk is left.
            self.buf.copy_within(done.., 0);
            self.buf.truncate(self.buf.len() - done);
        }
        Ok(())
    }

    fn write_all_buffered(&mut self) -> io::Result<()> {
        let r = self.inner.write_all(&self.buf).and_then(|()| self.inner.flush());
        self.written += self.buf.len() as u64;
        self.buf.clear();
        r
    }

    /// Ends a batch of lines read together: pushes them out, so that a live
    /// trace is never held back in the buffer while traffic is idle.
    pub fn end_batch(&mut self) -> io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let res = self.write_all_buffered();
        self.check(res)
    }

    pub fn finish(&mut self) -> io::Result<()> {
        self.end_batch().map(|_| ())
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn check(&mut self, res: io::Result<()>) -> io::Result<bool> {
        match res {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl<W: Write> Drop for Output<W> {
    /// What is still buffered goes out (errors cannot be reported here;
    /// [`Output::finish`] reports them).
    fn drop(&mut self) {
        if !self.closed && !self.buf.is_empty() {
            let _ = self.write_all_buffered();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn broken_pipe_ends_quietly() {
        let mut o = Output::new(Closed, true);
        assert!(!o.write_line(b"x\n").unwrap());
        assert!(o.is_closed());
        assert!(!o.write_line(b"y\n").unwrap());
        o.finish().unwrap();
    }

    /// Records where each write ends.
    #[derive(Default)]
    struct Recorder {
        data: Vec<u8>,
        ends: Vec<usize>,
    }
    impl Write for &mut Recorder {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.data.extend_from_slice(b);
            self.ends.push(self.data.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn chunks_end_at_multiples_of_the_chunk_size() {
        let mut rec = Recorder::default();
        let mut want = Vec::new();
        let mut batch_end = 0;
        {
            let mut o = Output::new(&mut rec, false);
            for i in 0..20_000u32 {
                let line = format!("{i} {}\n", "x".repeat((i % 97) as usize));
                want.extend_from_slice(line.as_bytes());
                assert!(o.write_line(line.as_bytes()).unwrap());
                if i == 7_000 {
                    // A batch ends mid-chunk: the next chunk realigns.
                    assert!(o.end_batch().unwrap());
                    batch_end = want.len();
                }
            }
            o.finish().unwrap();
        }
        assert_eq!(rec.data, want);
        assert!(batch_end % CHUNK != 0);
        let mut start = 0;
        for &end in &rec.ends {
            assert!(end - start <= CHUNK, "{:?}", rec.ends);
            assert!(end % CHUNK == 0 || end == batch_end || end == want.len(), "{:?}", rec.ends);
            start = end;
        }
        assert_eq!(rec.ends.len(), want.len() / CHUNK + 2, "{:?}", rec.ends);
    }

    #[test]
    fn line_buffered_writes_each_line() {
        let mut rec = Recorder::default();
        {
            let mut o = Output::new(&mut rec, true);
            o.write_line(b"a\n").unwrap();
            o.write_line(b"bc\n").unwrap();
        }
        assert_eq!(rec.ends, [2, 5]);
    }

    #[test]
    fn dropped_unfinished_still_writes() {
        let mut rec = Recorder::default();
        {
            let mut o = Output::new(&mut rec, false);
            o.write_line(b"a\n").unwrap();
        }
        assert_eq!(rec.data, b"a\n");
    }

    #[test]
    fn buffered_until_batch_end() {
        let mut buf = Vec::new();
        {
            let mut o = Output::new(&mut buf, false);
            assert!(o.write_line(b"a\n").unwrap());
            assert!(o.end_batch().unwrap());
        }
        assert_eq!(buf, b"a\n");
    }
}
