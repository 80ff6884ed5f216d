//! Standard output as tcpdump handles it: buffered, line-buffered with `-l`
//! or on a terminal, and a closed pipe (`| head`) is a normal end.

use std::io::{self, BufWriter, IsTerminal, Write};

pub struct Output<W: Write> {
    inner: BufWriter<W>,
    line_buffered: bool,
    closed: bool,
}

impl Output<io::Stdout> {
    pub fn stdout(line_buffered: bool) -> Self {
        let out = io::stdout();
        let line_buffered = line_buffered || out.is_terminal();
        Self::new(out, line_buffered)
    }
}

impl<W: Write> Output<W> {
    pub fn new(inner: W, line_buffered: bool) -> Self {
        Self { inner: BufWriter::with_capacity(64 * 1024, inner), line_buffered, closed: false }
    }

    /// Writes one line. `Ok(false)` once the reader has gone away.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let res =
            self.inner.write_all(line).and_then(|()| if self.line_buffered { self.inner.flush() } else { Ok(()) });
        self.check(res)
    }

    /// Ends a batch of lines read together: pushes them out, so that a live
    /// trace is never held back in the buffer while traffic is idle.
    pub fn end_batch(&mut self) -> io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let res = self.inner.flush();
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
