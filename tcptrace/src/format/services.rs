//! TCP port names from /etc/services, as tcpdump's `init_servarray` loads
//! them: the first `tcp` entry for a port names it.

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct PortNames {
    names: HashMap<u16, String>,
}

impl PortNames {
    /// Reads /etc/services; a missing or unreadable file names nothing.
    pub fn load() -> Self {
        match std::fs::read_to_string("/etc/services") {
            Ok(text) => Self::parse(&text),
            Err(_) => Self::default(),
        }
    }

    pub fn parse(text: &str) -> Self {
        let mut names = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut it = line.split_whitespace();
            let (Some(name), Some(pp)) = (it.next(), it.next()) else { continue };
            let Some((port, proto)) = pp.split_once('/') else { continue };
            if proto != "tcp" {
                continue;
            }
            let Ok(port) = port.parse::<u16>() else { continue };
            names.entry(port).or_insert_with(|| name.to_string());
        }
        Self { names }
    }

    pub fn get(&self, port: u16) -> Option<&str> {
        self.names.get(&port).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_tcp_entry_wins() {
        let p = PortNames::parse("# c\nhttp\t80/tcp www # web\nfoo 80/tcp\nhttp-alt 8080/tcp webcache\nbar 53/udp\n");
        assert_eq!(p.get(80), Some("http"));
        assert_eq!(p.get(8080), Some("http-alt"));
        assert_eq!(p.get(53), None);
    }
}
