//! The filter userspace sets at load time and the kernel applies per frame.

use crate::parse::Headers;

/// Filter settings (one entry of an eBPF array map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// A packet matches when it carries any of these flags
    /// ([`crate::record::flags`]); 0 matches every packet.
    pub flag_mask: u16,
    /// 0 for both families, else 4 or 6.
    pub family: u8,
    /// 1 when [`PortBitmap`] lists the ports to trace; 0 traces every port.
    pub use_ports: u8,
    /// 1 to send state-only records for state-relevant segments the flag
    /// filter hides (see [`crate::conn`]).
    pub track_states: u8,
    pub _pad: [u8; 3],
    /// A CPU wakes the ring buffer's reader at most once in this many
    /// nanoseconds (0: for every record); the reader looks again on a timer
    /// at least this long after each read that found records, so a record
    /// submitted without a wakeup waits at most about this long.
    pub wake_every_ns: u64,
    /// Also wake the reader when at least this many bytes wait in the ring
    /// buffer (0: never for that), so that a long `wake_every_ns` cannot let
    /// it fill up.
    pub wake_bytes: u64,
}

const _: () = assert!(core::mem::size_of::<FilterConfig>() == 24);

/// [`FilterConfig::wake_every_ns`] when lines go to a terminal or with `-l`:
/// records show up within about a millisecond.
pub const WAKE_EVERY_INTERACTIVE_NS: u64 = 1_000_000;

/// [`FilterConfig::wake_every_ns`] when output goes to a file or pipe (block
/// buffered, as tcpdump's, whose capture timeout is then a second): up to
/// 100 ms of records per wakeup.
pub const WAKE_EVERY_BATCH_NS: u64 = 100_000_000;

/// Words in the port bitmap: one bit for each of the 65536 ports.
pub const PORT_WORDS: usize = 1024;

/// The set of traced ports, as a bitmap (8 KiB; one array-map entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBitmap {
    pub words: [u64; PORT_WORDS],
}

const _: () = assert!(core::mem::size_of::<PortBitmap>() == 8192);

impl PortBitmap {
    pub const fn empty() -> Self {
        Self { words: [0; PORT_WORDS] }
    }

    pub fn insert(&mut self, port: u16) {
        self.words[(port >> 6) as usize] |= 1 << (port & 63);
    }

    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        let i = ((port >> 6) as usize) & (PORT_WORDS - 1);
        self.words[i] & (1 << (port & 63)) != 0
    }
}

impl Default for PortBitmap {
    fn default() -> Self {
        Self::empty()
    }
}

/// Whether a parsed frame passes the filter. `ports` is consulted only when
/// `cfg.use_ports` is set; a frame cut before its ports (or flags) then cannot
/// match.
#[inline(always)]
pub fn matches(h: &Headers, cfg: &FilterConfig, ports: Option<&PortBitmap>) -> bool {
    matches_endpoints(h, cfg, ports) && matches_flags(h, cfg)
}

/// The family and port part of [`matches`].
#[inline(always)]
pub fn matches_endpoints(h: &Headers, cfg: &FilterConfig, ports: Option<&PortBitmap>) -> bool {
    if cfg.family != 0 && cfg.family != h.family {
        return false;
    }
    if cfg.use_ports != 0 {
        if h.tcp_fixed < 4 {
            return false;
        }
        match ports {
            Some(p) if p.contains(h.sport) || p.contains(h.dport) => {}
            _ => return false,
        }
    }
    true
}

/// The flag part of [`matches`].
#[inline(always)]
pub fn matches_flags(h: &Headers, cfg: &FilterConfig) -> bool {
    cfg.flag_mask == 0 || h.tcp_flags & cfg.flag_mask != 0
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterConfig {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortBitmap {}
