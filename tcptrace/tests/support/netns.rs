//! Two network namespaces joined by a veth pair, made and removed by a test.
#![allow(dead_code)]

use std::{
    fs::File,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Namespaces `a` and `b`; interface `if_a` in `a` is joined to `if_b` in `b`.
pub struct NetPair {
    pub a: String,
    pub b: String,
    pub if_a: String,
    pub if_b: String,
    pub addr_a: String,
    pub addr_b: String,
    pub addr6_a: String,
    pub addr6_b: String,
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl NetPair {
    /// Makes a fresh pair with names unique to this process and call.
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}x{n}", std::process::id());
        // Addresses are private to the two namespaces; a different /24 per
        // pair keeps parallel tests apart.
        let net = (std::process::id() as usize * 7 + n as usize) % 250 + 1;
        let p = Self {
            a: format!("ttA{id}"),
            b: format!("ttB{id}"),
            if_a: format!("tta{id}"),
            if_b: format!("ttb{id}"),
            addr_a: format!("10.77.{net}.1"),
            addr_b: format!("10.77.{net}.2"),
            addr6_a: format!("fd77:{net:x}::1"),
            addr6_b: format!("fd77:{net:x}::2"),
        };
        ip(&["netns", "add", &p.a]);
        ip(&["netns", "add", &p.b]);
        ip(&["link", "add", &p.if_a, "netns", &p.a, "type", "veth", "peer", "name", &p.if_b, "netns", &p.b]);
        for (ns, ifc, v4, v6) in [(&p.a, &p.if_a, &p.addr_a, &p.addr6_a), (&p.b, &p.if_b, &p.addr_b, &p.addr6_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifc]);
            ip(&["-n", ns, "addr", "add", &format!("{v6}/64"), "dev", ifc, "nodad"]);
            ip(&["-n", ns, "link", "set", ifc, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Gives namespace `ns` its own /etc/hosts for commands run through
    /// [`NetPair::command`] (removed with the pair).
    pub fn set_hosts(&self, ns: &str, text: &str) {
        let dir = format!("/etc/netns/{ns}");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/hosts"), text).unwrap();
    }

    /// IPv6 segment routing in both directions: each namespace sends to the
    /// other's address through a segment routing header (the kernel's seg6
    /// "inline" mode) whose first segment is a second, deprecated (never a
    /// source) address of the other side; that side processes the header
    /// and delivers to its own address. Returns those second addresses (a's,
    /// b's): the destination addresses in the IPv6 headers.
    pub fn segment_routing(&self) -> (String, String) {
        let (via_a, via_b) = (format!("{}1", self.addr6_a), format!("{}2", self.addr6_b));
        for (ns, ifc, own, via, to) in
            [(&self.a, &self.if_a, &via_a, &via_b, &self.addr6_b), (&self.b, &self.if_b, &via_b, &via_a, &self.addr6_a)]
        {
            ip(&["-n", ns, "addr", "add", &format!("{own}/64"), "dev", ifc, "nodad", "preferred_lft", "0"]);
            let sysctl = Self::command(ns, "sysctl")
                .args(["-qw", "net.ipv6.conf.all.seg6_enabled=1", &format!("net.ipv6.conf.{ifc}.seg6_enabled=1")])
                .status()
                .expect("run sysctl");
            assert!(sysctl.success(), "sysctl seg6_enabled in {ns}");
            let to = format!("{to}/128");
            ip(&["-n", ns, "-6", "route", "add", &to, "encap", "seg6", "mode", "inline", "segs", via, "dev", ifc]);
        }
        (via_a, via_b)
    }

    /// A command run inside namespace `ns`.
    pub fn command(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c.stdin(Stdio::null());
        c
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

/// Runs `f` on a thread whose network namespace is `ns`: sockets it makes
/// live there.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a valid namespace fd; it changes only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A listener in namespace `b` bound to `addr` (e.g. `10.77.1.2:0`).
pub fn listen(pair: &NetPair, addr: String) -> (TcpListener, SocketAddr) {
    let l = in_ns(&pair.b, move || TcpListener::bind(addr).unwrap()).join().unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A client in namespace a talks to a server in namespace b: request, reply,
/// then the client closes first.
pub fn exchange(pair: &NetPair, listener: TcpListener, to: SocketAddr) {
    exchanges(pair, listener, to, 1);
}

/// [`exchange`] `n` times in a row, each on a connection of its own; then
/// 50 ms for the last close to finish.
pub fn exchanges(pair: &NetPair, listener: TcpListener, to: SocketAddr, n: usize) {
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(b"world!").unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
        }
    });
    in_ns(&pair.a, move || {
        for _ in 0..n {
            let mut c = TcpStream::connect(to).unwrap();
            c.write_all(b"hello").unwrap();
            let mut buf = [0u8; 6];
            c.read_exact(&mut buf).unwrap();
            c.shutdown(Shutdown::Both).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    })
    .join()
    .unwrap();
    server.join().unwrap();
}

/// Sets SO_LINGER {on, 0} so that close() sends an RST.
pub fn linger_zero(s: &TcpStream) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid socket fd and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}
