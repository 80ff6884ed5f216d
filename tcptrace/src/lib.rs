//! tcptrace: loader, formatter and capture-file reader.

pub mod caps;
pub mod capture;
pub mod cli;
pub mod ebpf;
pub mod filter;
pub mod format;
pub mod ifaces;
pub mod json;
pub mod live;
pub mod loader;
pub mod metrics;
pub mod names;
pub mod offline;
pub mod output;
pub mod pcap;
pub mod pipeline;
pub mod recent;
pub mod states;
pub mod stats;

/// An error in how tcptrace was called (exit status 2, like clap's own).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Adds the capabilities to an error caused by missing privileges.
pub fn privilege_hint(e: loader::LoadError) -> anyhow::Error {
    let text = format!("{e:?}");
    // One line: the innermost cause (aya's errors repeat their sources).
    let mut cause: &dyn std::error::Error = &e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    if let loader::LoadError::Attach { iface, what, .. } = &e {
        let busy = text.contains("ResourceBusy") || cause.to_string().contains("os error 16");
        return match (busy, *what) {
            (true, "XDP ingress") => anyhow::anyhow!(
                "attaching to {iface} ({what}): another XDP program is attached to it ({cause}); \
                 --attach tc works alongside it"
            ),
            _ if text.contains("PermissionDenied") || text.contains("Operation not permitted") => anyhow::anyhow!(
                "not permitted: tcptrace needs root or the capabilities CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
                 (attaching to {iface}: {cause})"
            ),
            _ => anyhow::anyhow!("attaching to {iface} ({what}): {cause}"),
        };
    }
    if text.contains("PermissionDenied") || text.contains("Operation not permitted") {
        anyhow::anyhow!(
            "not permitted: tcptrace needs root or the capabilities CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
             (loading the kernel programs: {cause})"
        )
    } else {
        e.into()
    }
}
