//! The capabilities live tracing needs, checked before anything is loaded so
//! that a missing one is named instead of surfacing as a verifier log.
//!
//! Loading the programs and maps needs `CAP_BPF`; loading networking
//! programs and attaching them to interfaces needs `CAP_NET_ADMIN`; the
//! programs' pointer arithmetic and helpers need `CAP_PERFMON`. `CAP_SYS_ADMIN`
//! stands in for `CAP_BPF` and `CAP_PERFMON`, as in the kernel. BPF memory is
//! charged to the memory cgroup (Linux 5.11 and later), so `CAP_SYS_RESOURCE`
//! is not needed for the locked-memory limit.

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The capabilities of `effective` (a `CapEff` mask) that tracing lacks, by
/// name.
pub fn missing(effective: u64) -> Vec<&'static str> {
    let has = |c: u32| effective & (1u64 << c) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut out = Vec::new();
    if !has(CAP_BPF) && !admin {
        out.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        out.push("CAP_NET_ADMIN");
    }
    if !has(CAP_PERFMON) && !admin {
        out.push("CAP_PERFMON");
    }
    out
}

/// This process's effective capabilities, from `/proc/self/status`.
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// An error naming the capabilities that are missing, if any are (nothing
/// when they cannot be read: the kernel will say).
pub fn check() -> anyhow::Result<()> {
    let Some(eff) = effective() else { return Ok(()) };
    let missing = missing(eff);
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "missing capabilit{} {}: tracing needs root or the capabilities CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON",
        if missing.len() == 1 { "y" } else { "ies" },
        missing.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        let all = 1u64 << CAP_BPF | 1 << CAP_NET_ADMIN | 1 << CAP_PERFMON;
        assert!(missing(all).is_empty());
        assert_eq!(missing(all & !(1 << CAP_PERFMON)), ["CAP_PERFMON"]);
        assert_eq!(missing(0), ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
        // CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON, not CAP_NET_ADMIN.
        assert_eq!(missing(1 << CAP_SYS_ADMIN), ["CAP_NET_ADMIN"]);
        assert!(missing(u64::MAX >> 23).is_empty());
    }
}
