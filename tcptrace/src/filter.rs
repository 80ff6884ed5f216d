//! The packet filter the command line asks for, in the form the kernel
//! programs (and the capture-file path) apply it.

use tcptrace_common::filter::{
    FilterConfig, HostSet, MAX_HOSTS, PortSet, WAKE_EVERY_BATCH_NS, WAKE_EVERY_INTERACTIVE_NS,
};

use crate::cli::Args;

/// `--port`, `--flags` and `--family` as a [`FilterConfig`] and [`PortSet`].
pub fn filter_from_args(args: &Args) -> (FilterConfig, PortSet) {
    let mut ports = PortSet::empty();
    for &p in &args.port {
        ports.insert(p);
    }
    let cfg = FilterConfig {
        flag_mask: args.flags.unwrap_or(0),
        family: args.family.unwrap_or(0),
        use_ports: u8::from(!args.port.is_empty()),
        track_states: (!args.no_states && args.flags.is_some()) as u8,
        use_hosts: u8::from(!args.host.is_empty() || !args.net.is_empty()),
        _pad: [0; 2],
        wake_every_ns: WAKE_EVERY_INTERACTIVE_NS,
        wake_bytes: 0,
    };
    (cfg, ports)
}

/// `--host` and `--net` as a [`HostSet`]; more than [`MAX_HOSTS`] is a
/// usage error.
pub fn hosts_from_args(args: &Args) -> Result<HostSet, crate::UsageError> {
    let mut set = HostSet::empty();
    for &(addr, prefix) in args.host.iter().chain(&args.net) {
        let (family, bytes) = match addr {
            std::net::IpAddr::V4(v) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v.octets());
                (4, b)
            }
            std::net::IpAddr::V6(v) => (6, v.octets()),
        };
        if !set.push(family, &bytes, prefix) {
            return Err(crate::UsageError(format!("at most {MAX_HOSTS} --host and --net in all")));
        }
    }
    Ok(set)
}

/// Sets how the kernel wakes the reader: with `batch` (output to a file or
/// pipe, block buffered) at most every [`WAKE_EVERY_BATCH_NS`] per CPU, or
/// when a quarter of the `ring_bytes` ring buffer waits; otherwise within
/// about a millisecond ([`WAKE_EVERY_INTERACTIVE_NS`]).
pub fn set_delivery(cfg: &mut FilterConfig, batch: bool, ring_bytes: u32) {
    (cfg.wake_every_ns, cfg.wake_bytes) =
        if batch { (WAKE_EVERY_BATCH_NS, u64::from(ring_bytes / 4)) } else { (WAKE_EVERY_INTERACTIVE_NS, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn from_args() {
        let a = Args::try_parse_from(["tcptrace", "--port", "80", "--port", "443", "--flags", "SYN,RST"]).unwrap();
        let (cfg, ports) = filter_from_args(&a);
        assert_eq!(cfg.use_ports, 1);
        assert_eq!(cfg.flag_mask, tcptrace_common::record::flags::SYN | tcptrace_common::record::flags::RST);
        assert!(ports.contains(80) && ports.contains(443) && !ports.contains(8080));
        let (cfg, _) = filter_from_args(&Args::try_parse_from(["tcptrace"]).unwrap());
        assert_eq!((cfg.use_ports, cfg.flag_mask, cfg.family), (0, 0, 0));
    }
}
