//! Loading the kernel programs, configuring their filter, attaching them to
//! interfaces, and reading their counters.

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, links::LinkError},
};
use tcptrace_common::{
    FilterConfig, PortSet,
    filter::HostSet,
    record::{MALFORMED_KINDS, Stats, counter},
};

use crate::cli::AttachMode;

pub const XDP_PROG: &str = "tcptrace_xdp";
pub const TC_INGRESS_PROG: &str = "tcptrace_tc_ingress";
pub const TC_EGRESS_PROG: &str = "tcptrace_tc_egress";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("kernel program {name}: {source}")]
    Program { name: &'static str, source: ProgramError },
    #[error("map {0} missing from the kernel object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("no such interface: {0}")]
    NoInterface(String),
    #[error("attaching to {iface} ({what}): {source}")]
    Attach { iface: String, what: &'static str, source: ProgramError },
    #[error("detaching: {0}")]
    Detach(#[from] LinkError),
}

/// Where the ingress program of an interface runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressHook {
    Xdp,
    Tc,
}

/// The hook used for `mode`. `auto` picks TC: on virtual devices (veth,
/// bridges, loopback, tunnels) XDP runs in generic mode and cut bulk TCP
/// throughput about fourfold in our measurements while TC stayed within
/// noise; on physical devices TC costs little as well and attaching it cannot
/// reset the NIC, which attaching native XDP can.
pub fn ingress_hook(mode: AttachMode) -> IngressHook {
    match mode {
        AttachMode::Xdp => IngressHook::Xdp,
        AttachMode::Tc | AttachMode::Auto => IngressHook::Tc,
    }
}

/// Counter totals summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames: u64,
    pub tcp: u64,
    pub matched: u64,
    pub emitted: u64,
    pub ringbuf_full: u64,
    pub later_fragments: u64,
    pub state_only: u64,
    pub conn_new: u64,
    pub conn_closed: u64,
    pub malformed: [u64; MALFORMED_KINDS],
}

impl std::fmt::Display for Counters {
    /// One line: every counter, and the malformed reasons that occurred.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frames {}, tcp {}, matched {}, state-only {}, emitted {}, ring buffer full {}, \
             later fragments {}, connections entered {} closed {}",
            self.frames,
            self.tcp,
            self.matched,
            self.state_only,
            self.emitted,
            self.ringbuf_full,
            self.later_fragments,
            self.conn_new,
            self.conn_closed
        )?;
        for (i, n) in self.malformed.iter().enumerate().filter(|(i, n)| *i != 0 && **n != 0) {
            match tcptrace_common::Malformed::try_from(i as u8) {
                Ok(m) => write!(f, ", malformed {m:?} {n}")?,
                Err(_) => write!(f, ", malformed #{i} {n}")?,
            }
        }
        Ok(())
    }
}

/// Sizes of the kernel maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Ring buffer bytes (a power of two, at least a page).
    pub ring_buffer: u32,
    /// Connections the kernel remembers for state tracking.
    pub conn_table: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Self { ring_buffer: 4 << 20, conn_table: 65536 }
    }
}

/// The loaded kernel programs and their maps.
pub struct Tracer {
    ebpf: Ebpf,
    stats: PerCpuArray<MapData, Stats>,
    sizes: Sizes,
    /// Interfaces attached to, with their index.
    attached: Vec<(String, u32)>,
    /// The links made on each interface (to detach them when it goes).
    links: Vec<(String, IngressLink, aya::programs::tc::SchedClassifierLinkId)>,
}

/// The ingress link of an interface.
enum IngressLink {
    Xdp(aya::programs::xdp::XdpLinkId),
    Tc(aya::programs::tc::SchedClassifierLinkId),
}

impl Tracer {
    /// Creates the maps from `object` (normally [`crate::ebpf::OBJECT`]) with
    /// the given filter and sizes; the filter goes into the object's
    /// read-only data, so the verifier knows it. Programs are loaded
    /// (verified) when first used: the verifier takes about a tenth of a
    /// second per program, so the XDP program is only loaded when XDP is
    /// attached.
    /// Nothing is attached yet.
    pub fn load(object: &[u8], filter: &FilterConfig, ports: &PortSet, sizes: Sizes) -> Result<Self, LoadError> {
        Self::load_with_hosts(object, filter, ports, &HostSet::empty(), sizes)
    }

    /// [`Tracer::load`] with the addresses and networks of `--host`/`--net`
    /// (used when `filter.use_hosts` is set).
    pub fn load_with_hosts(
        object: &[u8],
        filter: &FilterConfig,
        ports: &PortSet,
        hosts: &HostSet,
        sizes: Sizes,
    ) -> Result<Self, LoadError> {
        // The filter goes into the object's read-only data (FILTER,
        // PORT_SET, HOST_SET): the verifier then knows it and drops what it
        // rules out.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", sizes.ring_buffer)
            .map_max_entries("CONNS", sizes.conn_table)
            .override_global("FILTER", filter, true)
            .override_global("PORT_SET", ports, true)
            .override_global("HOST_SET", hosts, true)
            .load(object)?;
        let stats = take_map(&mut ebpf, "STATS")?;
        Ok(Self { ebpf, stats, sizes, attached: Vec::new(), links: Vec::new() })
    }

    /// Attaches ingress (XDP or TC, see [`ingress_hook`]) and egress (TC) to
    /// `iface`. Links are owned by the programs and go away when the tracer is
    /// dropped or the process exits (tcx and XDP links are file descriptors).
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<IngressHook, LoadError> {
        let index = nix_ifindex(iface);
        if index == 0 {
            return Err(LoadError::NoInterface(iface.to_string()));
        }
        let hook = ingress_hook(mode);
        // Below 6.6 there is no tcx: TC programs go on a clsact qdisc. Adding
        // it fails when it is already there; a real problem shows up in the
        // attach below.
        use aya::util::KernelVersion;
        if KernelVersion::current().is_ok_and(|v| v < KernelVersion::new(6, 6, 0)) {
            let _ = aya::programs::tc::qdisc_add_clsact(iface);
        }
        let attach_err = |what| {
            let iface = iface.to_string();
            move |source| LoadError::Attach { iface, what, source }
        };
        let ingress = match hook {
            IngressHook::Xdp => {
                let p: &mut Xdp = self.program(XDP_PROG)?;
                IngressLink::Xdp(p.attach(iface, XdpMode::Default).map_err(attach_err("XDP ingress"))?)
            }
            IngressHook::Tc => {
                let p: &mut SchedClassifier = self.program(TC_INGRESS_PROG)?;
                IngressLink::Tc(p.attach(iface, TcAttachType::Ingress).map_err(attach_err("TC ingress"))?)
            }
        };
        let p: &mut SchedClassifier = self.program(TC_EGRESS_PROG)?;
        let egress = p.attach(iface, TcAttachType::Egress).map_err(attach_err("TC egress"))?;
        self.attached.push((iface.to_string(), index));
        self.links.push((iface.to_string(), ingress, egress));
        Ok(hook)
    }

    /// Whether `iface` is attached to.
    pub fn is_attached(&self, iface: &str) -> bool {
        self.attached.iter().any(|(name, _)| name == iface)
    }

    /// The first interface attached to whose index no longer exists (it was
    /// deleted, or moved to another network namespace: its links are gone
    /// and it sends nothing more).
    pub fn gone_interface(&self) -> Option<&str> {
        self.attached.iter().find(|(_, index)| !interface_exists(*index)).map(|(name, _)| name.as_str())
    }

    /// Forgets interface `iface` after it went away: its links are released
    /// (the kernel already cut them), so that attaching again when it comes
    /// back (`--wait`) starts afresh.
    pub fn forget(&mut self, iface: &str) {
        self.attached.retain(|(name, _)| name != iface);
        let (gone, kept) = std::mem::take(&mut self.links).into_iter().partition(|(name, _, _)| name == iface);
        self.links = kept;
        for (_, ingress, egress) in gone {
            // Errors only say the link is already gone with its device.
            let _ = match ingress {
                IngressLink::Xdp(id) => self.program::<Xdp>(XDP_PROG).map(|p| p.detach(id).is_ok()),
                IngressLink::Tc(id) => self.program::<SchedClassifier>(TC_INGRESS_PROG).map(|p| p.detach(id).is_ok()),
            };
            let _ = self.program::<SchedClassifier>(TC_EGRESS_PROG).map(|p| p.detach(egress).is_ok());
        }
    }

    /// A program, by name, as its concrete type; loaded into the kernel on
    /// first use.
    pub fn program<'a, P>(&'a mut self, name: &'static str) -> Result<&'a mut P, LoadError>
    where
        &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let prog = self.ebpf.program_mut(name).ok_or(LoadError::Program { name, source: ProgramError::NotLoaded })?;
        if prog.fd().is_err() {
            let res = match &mut *prog {
                aya::programs::Program::Xdp(p) => p.load(),
                aya::programs::Program::SchedClassifier(p) => p.load(),
                _ => Err(ProgramError::UnexpectedProgramType),
            };
            res.map_err(|source| LoadError::Program { name, source })?;
        }
        prog.try_into().map_err(|source| LoadError::Program { name, source })
    }

    /// The sizes the maps were made with.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// Takes the ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        take_map(&mut self.ebpf, "EVENTS")
    }

    /// Reads the counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, LoadError> {
        let per_cpu = self.stats.get(&0, 0).map_err(|source| LoadError::Map { name: "STATS", source })?;
        let mut total = Stats::default();
        for s in per_cpu.iter() {
            for (t, v) in total.counters.iter_mut().zip(s.counters) {
                *t += v;
            }
            for (t, v) in total.malformed.iter_mut().zip(s.malformed) {
                *t += v;
            }
        }
        let n = |i: u32| total.counters[i as usize];
        Ok(Counters {
            frames: n(counter::FRAMES),
            tcp: n(counter::TCP),
            matched: n(counter::MATCHED),
            emitted: n(counter::EMITTED),
            ringbuf_full: n(counter::RINGBUF_FULL),
            later_fragments: n(counter::LATER_FRAGMENTS),
            state_only: n(counter::STATE_ONLY),
            conn_new: n(counter::CONN_NEW),
            conn_closed: n(counter::CONN_CLOSED),
            malformed: total.malformed,
        })
    }
}

impl Tracer {
    /// Entries in the kernel connection map now, counted by walking its keys
    /// (one system call per entry, so only on a scrape or a statistics
    /// interval, never per packet). Entries that come and go during the walk
    /// make the count approximate.
    pub fn conn_entries(&self) -> Result<u64, LoadError> {
        let name = "CONNS";
        let map = self.ebpf.map(name).ok_or(LoadError::MissingMap(name))?;
        let conns: aya::maps::HashMap<&MapData, tcptrace_common::conn::ConnKey, tcptrace_common::conn::ConnState> =
            aya::maps::HashMap::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        // A key deleted under the walk restarts it from the first key: stop
        // at the map's size.
        Ok((conns.keys().take_while(Result::is_ok).count() as u64).min(u64::from(self.sizes.conn_table)))
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

fn interface_exists(index: u32) -> bool {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has room for IF_NAMESIZE bytes, as if_indextoname needs.
    !unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) }.is_null()
}

/// The interface index of `iface`, or 0 when there is none.
pub fn nix_ifindex(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else { return 0 };
    // SAFETY: c is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_line_names_malformed_reasons_that_occurred() {
        let mut c = Counters { frames: 10, tcp: 9, matched: 5, emitted: 5, ..Counters::default() };
        c.malformed[tcptrace_common::Malformed::TcpHdrTooShort as usize] = 2;
        let line = c.to_string();
        assert!(line.starts_with("frames 10, tcp 9, matched 5, state-only 0, emitted 5, ring buffer full 0"), "{line}");
        assert!(line.ends_with(", malformed TcpHdrTooShort 2"), "{line}");
        assert!(!line.contains("IpTruncated"), "{line}");
    }
}
