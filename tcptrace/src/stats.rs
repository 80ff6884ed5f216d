//! Running statistics of a live trace: the kernel's counters, the connection
//! tables and what was printed, as one snapshot. `--stats-interval` prints it
//! (a line on standard error, or a `stats` object with `--json`), and
//! `--metrics` serves it to Prometheus.

use std::fmt::Write as _;

use crate::loader::Counters;

/// Everything the periodic statistics and the metrics endpoint report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The kernel's counters, summed over CPUs.
    pub kernel: Counters,
    /// Entries in the kernel connection map (walked from userspace), when
    /// counted.
    pub kernel_conns: Option<u64>,
    /// Capacity of the kernel connection map (`--conn-table-size`).
    pub kernel_conn_table_size: u32,
    /// Packet lines (or `-w` records) written: "packets captured".
    pub captured: u64,
    /// Connections the userspace tracker follows now.
    pub tracked: u64,
    /// Capacity of the userspace tracker (`--max-connections`).
    pub max_tracked: u64,
    /// Connections the userspace tracker dropped to make room.
    pub user_evictions: u64,
}

impl Snapshot {
    /// Connections the kernel map dropped to make room (least recently used
    /// first): entered, minus closed, minus those still there.
    pub fn kernel_evictions(&self) -> Option<u64> {
        let live = self.kernel_conns?;
        Some(self.kernel.conn_new.saturating_sub(self.kernel.conn_closed).saturating_sub(live))
    }

    /// The `--stats-interval` line of text mode, in tcpdump's words
    /// (without the newline).
    pub fn text_line(&self) -> String {
        let mut s = format!(
            "tcptrace: {} packets captured, {} packets received by filter, {} packets dropped by kernel, {} connections tracked",
            self.captured, self.kernel.matched, self.kernel.ringbuf_full, self.tracked
        );
        if self.user_evictions != 0 {
            let _ = write!(s, ", {} evicted", self.user_evictions);
        }
        if let Some(k) = self.kernel_conns {
            let _ = write!(s, ", {k} in kernel map");
            if let Some(e) = self.kernel_evictions().filter(|&e| e != 0) {
                let _ = write!(s, " ({e} evicted)");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_line_reads_like_tcpdump() {
        let mut s = Snapshot { captured: 12, tracked: 3, ..Snapshot::default() };
        s.kernel.matched = 20;
        s.kernel.ringbuf_full = 1;
        assert_eq!(
            s.text_line(),
            "tcptrace: 12 packets captured, 20 packets received by filter, 1 packets dropped by kernel, 3 connections tracked"
        );
        s.kernel.conn_new = 10;
        s.kernel.conn_closed = 4;
        s.kernel_conns = Some(5);
        s.user_evictions = 2;
        assert_eq!(s.kernel_evictions(), Some(1));
        assert!(
            s.text_line().ends_with(", 3 connections tracked, 2 evicted, 5 in kernel map (1 evicted)"),
            "{}",
            s.text_line()
        );
    }
}
