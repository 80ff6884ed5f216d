//! Timestamps as tcpdump 4.99.3 prints them (`ts_print` in util-print.c).

use crate::cli::TimestampMode;

/// A packet timestamp as the capture source gives it.
///
/// `frac` is the raw fraction field, in microseconds or (when `nanos`)
/// nanoseconds. It is kept as it is: a pcap record header may hold a value of
/// a second or more (tcpdump prints `.1000000`), and pcap's fields are signed
/// 32-bit numbers, so a reader should store `field as i32 as i64 as u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timestamp {
    pub sec: i64,
    pub frac: u64,
    pub nanos: bool,
}

impl Timestamp {
    pub fn micros(sec: i64, usec: u64) -> Self {
        Self { sec, frac: usec, nanos: false }
    }

    pub fn nanos(sec: i64, nsec: u64) -> Self {
        Self { sec, frac: nsec, nanos: true }
    }
}

/// A timeval in the precision tcpdump prints (libpcap scales the file's
/// timestamps to the precision asked for, as `tv_usec * 1000` or
/// `tv_usec / 1000` on a signed `long`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tv {
    sec: i64,
    frac: i64,
}

impl Tv {
    pub(crate) fn new(ts: Timestamp, nano: bool) -> Self {
        let raw = ts.frac as i64;
        let frac = match (ts.nanos, nano) {
            (false, true) => raw.wrapping_mul(1000),
            (true, false) => raw / 1000,
            _ => raw,
        };
        Self { sec: ts.sec, frac }
    }

    fn is_set(&self) -> bool {
        self.sec != 0 || self.frac != 0
    }

    fn lt(&self, o: &Tv) -> bool {
        if self.sec == o.sec { self.frac < o.frac } else { self.sec < o.sec }
    }

    fn sub(&self, o: &Tv, nano: bool) -> Tv {
        let mut r = Tv { sec: self.sec.wrapping_sub(o.sec), frac: self.frac.wrapping_sub(o.frac) };
        if r.frac < 0 {
            r.sec = r.sec.wrapping_sub(1);
            r.frac += if nano { 1_000_000_000 } else { 1_000_000 };
        }
        r
    }
}

thread_local! {
    /// The last second converted: packets come many to a second, and
    /// `localtime_r` showed up in profiles of `-r`. Emptied by [`init_tz`].
    static LAST_TM: std::cell::Cell<Option<(i64, bool, libc::tm)>> = const { std::cell::Cell::new(None) };
}

/// Broken-down time from the C library (local time or UTC).
fn broken_down(sec: i64, local: bool) -> Option<libc::tm> {
    if let Some((s, l, tm)) = LAST_TM.get()
        && s == sec
        && l == local
    {
        return Some(tm);
    }
    let tm = broken_down_uncached(sec, local)?;
    LAST_TM.set(Some((sec, local, tm)));
    Some(tm)
}

fn broken_down_uncached(sec: i64, local: bool) -> Option<libc::tm> {
    let t: libc::time_t = sec as libc::time_t;
    // SAFETY: `tm` is plain old data; localtime_r/gmtime_r fill it or return NULL.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let r = if local { libc::localtime_r(&t, &mut tm) } else { libc::gmtime_r(&t, &mut tm) };
        if r.is_null() { None } else { Some(tm) }
    }
}

/// Reads TZ again, as tcpdump's first `localtime` call does.
pub(crate) fn init_tz() {
    unsafe extern "C" {
        fn tzset();
    }
    LAST_TM.set(None);
    // SAFETY: tzset has no preconditions.
    unsafe { tzset() }
}

/// `v` in decimal, zero-padded to at least `width` digits.
fn push_padded(out: &mut Vec<u8>, v: u32, width: usize) {
    super::push_decimal(out, v, width);
}

fn frac_print(out: &mut Vec<u8>, frac: i64, nano: bool) {
    let v = frac as u32; // tcpdump prints `(unsigned)usec`
    out.push(b'.');
    push_padded(out, v, if nano { 9 } else { 6 });
}

fn hmsfrac_print(out: &mut Vec<u8>, tv: Tv, date: bool, local: bool, nano: bool) {
    use std::io::Write;
    if (tv.sec as u32) & 0x8000_0000 != 0 {
        out.extend_from_slice(b"[Error converting time]");
        return;
    }
    let Some(tm) = broken_down(tv.sec, local) else {
        out.extend_from_slice(b"[Error converting time]");
        return;
    };
    if date {
        let _ = write!(out, "{}-{:02}-{:02} ", tm.tm_year as i64 + 1900, tm.tm_mon + 1, tm.tm_mday);
    }
    // `HH:MM:SS`, two digits each (a delta of 100 hours or more has more).
    if (0..100).contains(&tm.tm_hour) {
        let two = |v: i32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
        let (h, m, s) = (two(tm.tm_hour), two(tm.tm_min), two(tm.tm_sec));
        out.extend_from_slice(&[h[0], h[1], b':', m[0], m[1], b':', s[0], s[1]]);
    } else {
        push_padded(out, tm.tm_hour as u32, 2);
        out.push(b':');
        push_padded(out, tm.tm_min as u32, 2);
        out.push(b':');
        push_padded(out, tm.tm_sec as u32, 2);
    }
    frac_print(out, tv.frac, nano);
}

/// Timestamp state across packets (tcpdump's static `tv_ref`).
#[derive(Debug, Default)]
pub(crate) struct TsState {
    tv_ref: Tv,
}

impl TsState {
    /// Like [`TsState::print`], but never sets or moves the `-ttt`/`-ttttt`
    /// reference (before the first packet line, the delta is zero).
    pub(crate) fn print_aside(&self, out: &mut Vec<u8>, mode: TimestampMode, nano: bool, ts: Timestamp) {
        let mut copy = TsState { tv_ref: self.tv_ref };
        copy.print(out, mode, nano, ts);
    }

    /// Appends the timestamp and the space after it (nothing for `-t`).
    pub(crate) fn print(&mut self, out: &mut Vec<u8>, mode: TimestampMode, nano: bool, ts: Timestamp) {
        use std::io::Write;
        let tv = Tv::new(ts, nano);
        match mode {
            TimestampMode::Default => {
                hmsfrac_print(out, tv, false, true, nano);
                out.push(b' ');
            }
            TimestampMode::None => {}
            TimestampMode::Epoch => {
                if (tv.sec as u32) & 0x8000_0000 != 0 {
                    out.extend_from_slice(b"[Error converting time]");
                } else {
                    let _ = write!(out, "{}", tv.sec as u32);
                    frac_print(out, tv.frac, nano);
                }
                out.push(b' ');
            }
            TimestampMode::DeltaPrev | TimestampMode::DeltaFirst => {
                if !self.tv_ref.is_set() {
                    self.tv_ref = tv;
                }
                let neg = tv.lt(&self.tv_ref);
                let d = if neg { self.tv_ref.sub(&tv, nano) } else { tv.sub(&self.tv_ref, nano) };
                out.push(if neg { b'-' } else { b' ' });
                hmsfrac_print(out, d, false, false, nano);
                out.push(b' ');
                if mode == TimestampMode::DeltaPrev {
                    self.tv_ref = tv;
                }
            }
            TimestampMode::Date => {
                hmsfrac_print(out, tv, true, true, nano);
                out.push(b' ');
            }
        }
    }
}
