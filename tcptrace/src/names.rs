//! Address-to-name lookups for output without `-n`, as tcpdump does them
//! (the system resolver: /etc/hosts, then DNS), done on worker threads so a
//! slow DNS server never blocks the event loop, and cached for the run.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex, mpsc},
    thread,
};

use tokio::sync::mpsc as amc;

/// Names found so far. `None` means "looked up, no name": print the number.
#[derive(Debug, Default, Clone)]
pub struct HostCache {
    names: HashMap<IpAddr, Option<Arc<str>>>,
}

impl HostCache {
    /// `Some(name or None)` once `ip` has been looked up.
    pub fn get(&self, ip: &IpAddr) -> Option<Option<&str>> {
        self.names.get(ip).map(|n| n.as_deref())
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.names.contains_key(ip)
    }

    pub fn insert(&mut self, ip: IpAddr, name: Option<String>) {
        self.names.insert(ip, name.map(Arc::from));
    }

    /// Addresses cached.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Forgets every name (they are looked up again when needed).
    pub fn clear(&mut self) {
        self.names = HashMap::new();
    }
}

/// The system resolver's name for `ip` (like tcpdump's gethostbyaddr), or
/// `None`.
pub fn lookup(ip: IpAddr) -> Option<String> {
    dns_lookup::lookup_addr(&ip).ok().filter(|n| !n.is_empty() && n.parse::<IpAddr>().is_err())
}

/// A pool of threads running [`lookup`]. Each address is asked for once.
pub struct Resolver {
    requests: mpsc::Sender<IpAddr>,
    results: amc::UnboundedReceiver<(IpAddr, Option<String>)>,
    asked: HashSet<IpAddr>,
    outstanding: usize,
}

impl Resolver {
    /// Starts `threads` workers (they end when the resolver is dropped).
    pub fn new(threads: usize) -> Self {
        Self::with_lookup(threads, lookup)
    }

    /// Same, with another lookup function (tests).
    pub fn with_lookup(threads: usize, f: fn(IpAddr) -> Option<String>) -> Self {
        let (req_tx, req_rx) = mpsc::channel::<IpAddr>();
        let req_rx = Arc::new(Mutex::new(req_rx));
        let (res_tx, res_rx) = amc::unbounded_channel();
        for i in 0..threads.max(1) {
            let req_rx = Arc::clone(&req_rx);
            let res_tx = res_tx.clone();
            let spawned = thread::Builder::new().name(format!("resolver-{i}")).spawn(move || {
                loop {
                    // Hold the lock only while taking a request.
                    let next = req_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(ip)) = next else { return };
                    if res_tx.send((ip, f(ip))).is_err() {
                        return;
                    }
                }
            });
            if let Err(e) = spawned {
                log::warn!("starting resolver thread: {e}");
            }
        }
        Self { requests: req_tx, results: res_rx, asked: HashSet::new(), outstanding: 0 }
    }

    /// Asks for `ip` unless it was asked for before.
    pub fn request(&mut self, ip: IpAddr) {
        if self.asked.insert(ip) && self.requests.send(ip).is_ok() {
            self.outstanding += 1;
        }
    }

    /// Forgets which addresses were asked for, so that they are asked again
    /// (with [`HostCache::clear`], when the cache is full).
    pub fn forget(&mut self) {
        self.asked = HashSet::new();
    }

    /// Lookups asked for and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The next answer (async).
    pub async fn recv(&mut self) -> Option<(IpAddr, Option<String>)> {
        let r = self.results.recv().await;
        self.outstanding -= r.is_some() as usize;
        r
    }

    /// The next answer, blocking the thread (capture files).
    pub fn recv_blocking(&mut self) -> Option<(IpAddr, Option<String>)> {
        let r = self.results.blocking_recv();
        self.outstanding -= r.is_some() as usize;
        r
    }

    /// An answer if one is ready.
    pub fn try_recv(&mut self) -> Option<(IpAddr, Option<String>)> {
        let r = self.results.try_recv().ok();
        self.outstanding -= r.is_some() as usize;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(ip: IpAddr) -> Option<String> {
        match ip {
            IpAddr::V4(v) if v.octets()[3] == 1 => Some(format!("host{}", v.octets()[2])),
            _ => None,
        }
    }

    #[test]
    fn asks_once_and_answers_each() {
        let mut r = Resolver::with_lookup(2, fake);
        let a: IpAddr = "10.0.5.1".parse().unwrap();
        let b: IpAddr = "10.0.5.2".parse().unwrap();
        r.request(a);
        r.request(a);
        r.request(b);
        assert_eq!(r.outstanding(), 2);
        let mut cache = HostCache::default();
        for _ in 0..2 {
            let (ip, name) = r.recv_blocking().unwrap();
            cache.insert(ip, name);
        }
        assert_eq!(r.outstanding(), 0);
        assert_eq!(cache.get(&a), Some(Some("host5")));
        assert_eq!(cache.get(&b), Some(None));
        assert!(r.try_recv().is_none());
    }

    #[test]
    fn loopback_has_a_name_from_etc_hosts() {
        // /etc/hosts maps 127.0.0.1 to localhost on any Debian system.
        assert_eq!(lookup("127.0.0.1".parse().unwrap()).as_deref(), Some("localhost"));
    }
}
