//! Command line, in tcpdump's spelling wherever tcpdump has the option.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

/// Trace TCP with eBPF and print what tcpdump prints, plus connection states.
#[derive(Debug, Clone, Parser)]
#[command(name = "tcptrace", version, about)]
pub struct Args {
    /// Interface to trace (repeatable); `any`: every interface that is up.
    #[arg(short = 'i', long = "iface", value_name = "IFACE")]
    pub iface: Vec<String>,

    /// Trace only segments with this source or destination port (repeatable).
    #[arg(long = "port", value_name = "PORT", value_parser = parse_port)]
    pub port: Vec<u16>,

    /// Trace only segments from or to this address (repeatable; tcpdump's
    /// `host`). With --net, at most 16 in all.
    #[arg(long = "host", value_name = "ADDR", value_parser = parse_host)]
    pub host: Vec<(std::net::IpAddr, u8)>,

    /// Trace only segments from or to this network, ADDR/LEN (repeatable;
    /// tcpdump's `net`; the address's host bits must be zero).
    #[arg(long = "net", value_name = "ADDR/LEN", value_parser = parse_net)]
    pub net: Vec<(std::net::IpAddr, u8)>,

    /// Trace only this address family: 4 (IPv4) or 6 (IPv6). Default: both.
    #[arg(long = "family", value_name = "4|6", value_parser = parse_family)]
    pub family: Option<u8>,

    /// Show a packet when it carries any of these flags: names (SYN,FIN,RST,
    /// PSH,ACK,URG,ECE,CWR) or tcpdump's letters (S,F,R,P,.,U,E,W),
    /// comma-separated. Default: every TCP packet.
    #[arg(long = "flags", value_name = "LIST", value_parser = parse_flags)]
    pub flags: Option<u16>,

    /// Don't convert addresses or ports to names.
    #[arg(short = 'n', action = ArgAction::Count)]
    pub numeric: u8,

    /// Print absolute, rather than relative, TCP sequence numbers.
    #[arg(short = 'S', long = "absolute-tcp-sequence-numbers")]
    pub absolute: bool,

    /// Timestamp format: -t none, -tt epoch, -ttt delta to previous,
    /// -tttt date and time, -ttttt delta to first.
    #[arg(short = 't', action = ArgAction::Count)]
    pub timestamp: u8,

    /// Print timestamps with nanosecond precision.
    #[arg(long = "nano")]
    pub nano: bool,

    /// Exit after this many packets.
    #[arg(short = 'c', value_name = "COUNT")]
    pub count: Option<u64>,

    /// Line-buffered output.
    #[arg(short = 'l')]
    pub line_buffered: bool,

    /// Read packets from a pcap or pcapng file ('-' for standard input)
    /// instead of tracing an interface. Conflicts with the options of live
    /// tracing (-i, --attach, --buffer-size, --conn-table-size, --metrics,
    /// --stats-interval).
    #[arg(short = 'r', value_name = "FILE", conflicts_with_all = LIVE_ONLY)]
    pub read: Option<PathBuf>,

    /// Write the headers of each traced packet to a pcap file.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// Print packet lines only (no state transitions or summaries).
    #[arg(long = "no-states")]
    pub no_states: bool,

    /// Newline-delimited JSON instead of text.
    #[arg(long = "json")]
    pub json: bool,

    /// Where to attach the kernel programs.
    #[arg(long = "attach", value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,

    /// Ring buffer size in bytes (a power of two, at least one page).
    #[arg(long = "buffer-size", value_name = "BYTES", default_value_t = 4 << 20, value_parser = parse_buffer_size)]
    pub buffer_size: u32,

    /// Connections the kernel remembers for state tracking (least recently
    /// used ones make room for new ones).
    #[arg(long = "conn-table-size", value_name = "N", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub conn_table_size: u32,

    /// Connections the userspace state tracker follows at most (the one idle
    /// the longest makes room; its summary says `evicted`).
    #[arg(long = "max-connections", value_name = "N", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub max_connections: u32,

    /// Serve Prometheus metrics at http://ADDR/metrics (bind it to loopback
    /// or a management address, e.g. 127.0.0.1:9464).
    #[arg(long = "metrics", value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Every SECS seconds, a statistics line on standard error (with --json,
    /// a "stats" object on standard output).
    #[arg(long = "stats-interval", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stats_interval: Option<u64>,

    /// Log level for tcptrace's own messages: error, warn, info, debug,
    /// trace or off (default: RUST_LOG when set, else warn).
    #[arg(long = "log-level", value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<log::LevelFilter>,

    /// When a traced interface goes away, wait for it to come back and
    /// trace it again (without it, tcptrace exits with status 1); an
    /// interface given with -i that is not there yet is waited for too.
    #[arg(long = "wait")]
    pub wait: bool,
}

/// Options that only mean something when tracing live (`-r` rejects them;
/// their defaults do not count).
const LIVE_ONLY: [&str; 7] = ["iface", "attach", "buffer_size", "conn_table_size", "metrics", "stats_interval", "wait"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttachMode {
    /// TC on virtual devices (veth, bridges, loopback, ...), where XDP costs
    /// throughput; TC as well on every other device for egress.
    Auto,
    /// XDP for ingress, TC for egress.
    Xdp,
    /// TC for ingress and egress.
    Tc,
}

/// How timestamps are printed (tcpdump's `-t` count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampMode {
    /// Local time of day (default).
    Default,
    /// `-t`: none.
    None,
    /// `-tt`: seconds since the epoch.
    Epoch,
    /// `-ttt`: delta from the previous printed packet.
    DeltaPrev,
    /// `-tttt`: date and time of day.
    Date,
    /// `-ttttt`: delta from the first printed packet.
    DeltaFirst,
}

impl Args {
    pub fn timestamp_mode(&self) -> TimestampMode {
        match self.timestamp {
            0 => TimestampMode::Default,
            1 => TimestampMode::None,
            2 => TimestampMode::Epoch,
            3 => TimestampMode::DeltaPrev,
            4 => TimestampMode::Date,
            _ => TimestampMode::DeltaFirst,
        }
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is out of range 1-65535")),
        Err(_) => Err(format!("'{s}' is not a port number")),
    }
}

/// Parses a flag list into a mask of `tcptrace_common::record::flags`.
pub fn parse_flags(s: &str) -> Result<u16, String> {
    use tcptrace_common::record::flags::*;
    let mut mask = 0;
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        mask |= match item.to_ascii_uppercase().as_str() {
            "F" | "FIN" => FIN,
            "S" | "SYN" => SYN,
            "R" | "RST" => RST,
            "P" | "PSH" | "PUSH" => PSH,
            "." | "A" | "ACK" => ACK,
            "U" | "URG" => URG,
            "E" | "ECE" => ECE,
            "W" | "CWR" => CWR,
            _ => {
                return Err(format!(
                    "unknown TCP flag '{item}' (use SYN,FIN,RST,PSH,ACK,URG,ECE,CWR or S,F,R,P,.,U,E,W)"
                ));
            }
        };
    }
    if mask == 0 {
        return Err("empty flag list".into());
    }
    Ok(mask)
}

fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse().map_err(|_| format!("'{s}' is not a log level (error, warn, info, debug, trace, off)"))
}

fn parse_host(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let a: std::net::IpAddr = s.parse().map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))?;
    Ok((a, if a.is_ipv4() { 32 } else { 128 }))
}

fn parse_net(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (a, len) = s.split_once('/').ok_or_else(|| format!("'{s}' is not a network (ADDR/LEN)"))?;
    let (a, bits) = parse_host(a)?;
    let len: u8 = len.parse().ok().filter(|&l| l <= bits).ok_or_else(|| format!("'{s}': bad prefix length"))?;
    // As tcpdump: the address must be the network's.
    let host_bits = match a {
        std::net::IpAddr::V4(v) => u32::from(v).checked_shl(u32::from(len)).unwrap_or(0) != 0,
        std::net::IpAddr::V6(v) => u128::from(v).checked_shl(u32::from(len)).unwrap_or(0) != 0,
    };
    if host_bits {
        return Err(format!("non-network bits set in '{s}'"));
    }
    Ok((a, len))
}

fn parse_family(s: &str) -> Result<u8, String> {
    match s {
        "4" | "ipv4" | "ip" => Ok(4),
        "6" | "ipv6" | "ip6" => Ok(6),
        _ => Err(format!("'{s}' is not an address family (4 or 6)")),
    }
}

fn parse_buffer_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a size in bytes"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_accept_names_and_letters() {
        use tcptrace_common::record::flags::*;
        assert_eq!(parse_flags("SYN,FIN,RST"), Ok(SYN | FIN | RST));
        assert_eq!(parse_flags("S,F,R,P,.,U,E,W"), Ok(0xff));
        assert!(parse_flags("X").is_err());
        assert!(parse_flags("").is_err());
    }

    #[test]
    fn timestamp_count() {
        let a = Args::try_parse_from(["tcptrace", "-ttt", "-nn", "-r", "x"]).unwrap();
        assert_eq!(a.timestamp_mode(), TimestampMode::DeltaPrev);
        assert_eq!(a.numeric, 2);
    }

    #[test]
    fn family() {
        assert_eq!(Args::try_parse_from(["tcptrace", "--family", "6"]).unwrap().family, Some(6));
        assert_eq!(Args::try_parse_from(["tcptrace", "--family", "ip"]).unwrap().family, Some(4));
        assert!(Args::try_parse_from(["tcptrace", "--family", "5"]).is_err());
    }

    #[test]
    fn service_options() {
        let a = Args::try_parse_from([
            "tcptrace",
            "--metrics",
            "127.0.0.1:9464",
            "--stats-interval",
            "10",
            "--max-connections",
            "100",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(a.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(a.stats_interval, Some(10));
        assert_eq!(a.max_connections, 100);
        assert_eq!(a.log_level, Some(log::LevelFilter::Debug));
        assert!(Args::try_parse_from(["tcptrace", "--metrics", "localhost"]).is_err());
        assert!(Args::try_parse_from(["tcptrace", "--stats-interval", "0"]).is_err());
        assert!(Args::try_parse_from(["tcptrace", "--log-level", "loud"]).is_err());
        let d = Args::try_parse_from(["tcptrace"]).unwrap();
        assert_eq!((d.metrics, d.stats_interval, d.max_connections), (None, None, 65536));
    }

    #[test]
    fn read_conflicts_with_live_options() {
        for extra in [
            &["-i", "eth0"][..],
            &["--attach", "tc"],
            &["--buffer-size", "8192"],
            &["--conn-table-size", "10"],
            &["--metrics", "127.0.0.1:9464"],
            &["--stats-interval", "5"],
        ] {
            let e = Args::try_parse_from(["tcptrace", "-r", "x"].iter().chain(extra)).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{extra:?}");
        }
        // Defaults do not conflict; -w, filters and formats go with -r.
        Args::try_parse_from(["tcptrace", "-r", "x", "-w", "y", "--port", "80", "--flags", "S", "-c", "3", "--json"])
            .unwrap();
    }

    #[test]
    fn ports_are_checked() {
        assert!(Args::try_parse_from(["tcptrace", "--port", "0"]).is_err());
        assert!(Args::try_parse_from(["tcptrace", "--port", "65536"]).is_err());
        let a = Args::try_parse_from(["tcptrace", "--port", "80", "--port", "443"]).unwrap();
        assert_eq!(a.port, vec![80, 443]);
    }
}
