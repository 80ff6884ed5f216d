//! Pure parsing of the output of the tools that `setup` and `test` run, kept
//! apart so that unit tests cover it without touching the machine.
use std::collections::{BTreeMap, BTreeSet};

/// The LLVM major version from `rustc -vV` (`LLVM version: 22.1.8`).
pub fn llvm_major_from_rustc_vv(out: &str) -> Option<u32> {
    out.lines().find_map(|l| l.trim().strip_prefix("LLVM version:")).and_then(|v| leading_number(v.trim()))
}

/// The LLVM major version that `ldd` shows a binary linked against:
/// `libLLVM.so.22.1 => ...` (Debian/LLVM ≥ 18) or `libLLVM-17.so => ...`.
pub fn llvm_major_from_ldd(out: &str) -> Option<u32> {
    out.lines().find_map(|l| {
        let name = l.split_whitespace().next()?;
        if let Some(rest) = name.strip_prefix("libLLVM.so.") {
            leading_number(rest)
        } else if let Some(rest) = name.strip_prefix("libLLVM-") {
            leading_number(rest)
        } else {
            None
        }
    })
}

/// The version `bpf-linker --version` prints (`bpf-linker 0.13.0`).
pub fn bpf_linker_version(out: &str) -> Option<String> {
    out.lines().find_map(|l| l.trim().strip_prefix("bpf-linker ")).map(|v| v.trim().to_string())
}

/// Whether `rustup toolchain list` lists `name` (lines look like
/// `stable-x86_64-unknown-linux-gnu (active, default)` or `tcptrace-bpf`).
pub fn toolchain_listed(out: &str, name: &str) -> bool {
    out.lines().any(|l| l.split_whitespace().next() == Some(name))
}

/// Installed packages and their versions from
/// `dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Version}\n' PKG...`
/// (status `ii ` means installed; `un`/`rc` are not).
pub fn dpkg_installed(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, status, version) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            status.starts_with("ii").then(|| (name.trim().to_string(), version.trim().to_string()))
        })
        .collect()
}

/// The packages that `apt-cache policy PKG...` gives an install candidate for.
/// Unknown packages print nothing; known ones without a version print
/// `Candidate: (none)`.
pub fn apt_candidates(out: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if !line.starts_with(' ') && line.trim_end().ends_with(':') {
            current = Some(line.trim_end().trim_end_matches(':').to_string());
        } else if let Some(c) = line.trim().strip_prefix("Candidate:")
            && let Some(name) = current.take()
            && c.trim() != "(none)"
        {
            found.insert(name);
        }
    }
    found
}

/// The effective uid from /proc/self/status (`Uid:\treal\teffective\t...`).
pub fn euid_from_proc_status(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Totals over all the `test result:` lines of `cargo test`'s output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Tests listed as `test NAME ... ignored, needs root`.
    pub root_ignored: u64,
    /// How many `test result:` lines there were (one per test binary).
    pub results: u64,
}

impl TestTotals {
    /// Adds what one line of output says.
    pub fn add_line(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("test result:") {
            self.results += 1;
            // `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s`
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        } else if line.starts_with("test ") && line.ends_with("... ignored, needs root") {
            self.root_ignored += 1;
        }
    }

    #[cfg(test)]
    pub fn from_output(out: &str) -> Self {
        let mut t = Self::default();
        for l in out.lines() {
            t.add_line(l);
        }
        t
    }
}

/// Splits the arguments given after `cargo xtask test --` into those for
/// cargo and those for the test binaries (after a second `--`).
pub fn split_test_args(args: &[String]) -> (Vec<String>, Vec<String>) {
    match args.iter().position(|a| a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (args.to_vec(), Vec::new()),
    }
}

fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUSTC_VV: &str = "rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)
binary: rustc
commit-hash: ac68faa20c58cbccd01ee7208bf3b6e93a7d7f96
commit-date: 2026-05-25
host: x86_64-unknown-linux-gnu
release: 1.96.0
LLVM version: 22.1.8
";

    #[test]
    fn rustc_llvm_major() {
        assert_eq!(llvm_major_from_rustc_vv(RUSTC_VV), Some(22));
        assert_eq!(llvm_major_from_rustc_vv("LLVM version: 19.1.7\n"), Some(19));
        assert_eq!(llvm_major_from_rustc_vv("rustc 1.0\nrelease: 1.0\n"), None);
        assert_eq!(llvm_major_from_rustc_vv(""), None);
    }

    #[test]
    fn ldd_llvm_major() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd2a1f5000)
\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007fc4a6000000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007fc4a5fe0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fc4a5dff000)
";
        assert_eq!(llvm_major_from_ldd(ldd), Some(22));
        assert_eq!(llvm_major_from_ldd("\tlibLLVM-17.so => /usr/lib/llvm-17/lib/libLLVM-17.so (0x1)\n"), Some(17));
        // Statically linked, or not found.
        assert_eq!(llvm_major_from_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"), None);
        assert_eq!(
            llvm_major_from_ldd("\tlibLLVM.so.21.1 => not found\n"),
            Some(21),
            "a missing library still tells the major it wants"
        );
    }

    #[test]
    fn linker_version() {
        assert_eq!(bpf_linker_version("bpf-linker 0.13.0\n").as_deref(), Some("0.13.0"));
        assert_eq!(bpf_linker_version("something else\n"), None);
    }

    #[test]
    fn toolchains() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)
nightly-x86_64-unknown-linux-gnu
tcptrace-bpf
";
        assert!(toolchain_listed(list, "tcptrace-bpf"));
        assert!(toolchain_listed(list, "stable-x86_64-unknown-linux-gnu"));
        assert!(!toolchain_listed(list, "tcptrace"));
        assert!(!toolchain_listed(list, "stable"));
        assert!(toolchain_listed("tcptrace-bpf (active)\n", "tcptrace-bpf"));
    }

    #[test]
    fn dpkg_status() {
        let out = "rustc-web\tii \t1.96.0+dfsg1-1~deb12u2
cargo-web\tun \t
llvm-22-dev\trc \t1:22.1.8-1~deb12u1
tshark\tii \t4.0.17-0+deb12u3
";
        let got = dpkg_installed(out);
        assert_eq!(got.len(), 2);
        assert_eq!(got["rustc-web"], "1.96.0+dfsg1-1~deb12u2");
        assert!(got.contains_key("tshark"));
        assert!(!got.contains_key("cargo-web"));
        assert!(!got.contains_key("llvm-22-dev"));
        assert!(dpkg_installed("").is_empty());
    }

    #[test]
    fn apt_policy() {
        let out = "llvm-22-dev:
  Installed: 1:22.1.8-1~deb12u1
  Candidate: 1:22.1.8-1~deb12u1
  Version table:
 *** 1:22.1.8-1~deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
rustc-web:
  Installed: (none)
  Candidate: (none)
  Version table:
iperf3:
  Installed: (none)
  Candidate: 3.12-1+deb12u2
";
        let got = apt_candidates(out);
        assert!(got.contains("llvm-22-dev"));
        assert!(got.contains("iperf3"));
        assert!(!got.contains("rustc-web"));
        assert!(!got.contains("no-such-package"));
    }

    #[test]
    fn euid() {
        let status = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(euid_from_proc_status(status), Some(0));
        assert_eq!(euid_from_proc_status("Uid:\t1000\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(euid_from_proc_status("Name:\tx\n"), None);
    }

    #[test]
    fn test_totals() {
        let out = "
running 3 tests
test a ... ok
test b ... ignored, needs root
test c ... ignored
test result: ok. 1 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 2 tests
test d ... ok
test e ... FAILED
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

running 0 tests
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
        let t = TestTotals::from_output(out);
        assert_eq!(t, TestTotals { passed: 2, failed: 1, ignored: 2, root_ignored: 1, results: 3 });
        assert_eq!(TestTotals::from_output("error: could not compile"), TestTotals::default());
    }

    #[test]
    fn test_args() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(split_test_args(&s(&[])), (s(&[]), s(&[])));
        assert_eq!(split_test_args(&s(&["-p", "tcptrace"])), (s(&["-p", "tcptrace"]), s(&[])));
        assert_eq!(split_test_args(&s(&["filter", "--", "--nocapture"])), (s(&["filter"]), s(&["--nocapture"])));
        assert_eq!(split_test_args(&s(&["--", "--exact"])), (s(&[]), s(&["--exact"])));
    }
}
