//! `cargo xtask setup`: checks, and installs when missing, what the eBPF
//! build (and, with `--test-tools`, the test suite) needs.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::parse;

/// The rustup toolchain name that tcptrace/build.rs builds the kernel
/// programs with (overridable there and here by TCPTRACE_EBPF_TOOLCHAIN).
pub const EBPF_TOOLCHAIN: &str = "tcptrace-bpf";
/// Where Debian's rustc-web lives; linked as EBPF_TOOLCHAIN.
pub const EBPF_TOOLCHAIN_DIR: &str = "/usr";
/// LLVM major of Debian 12's rustc-web; llvm-N-dev must match it.
pub const DEFAULT_LLVM_MAJOR: u32 = 22;
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the eBPF build needs: the compiler (with LLVM 22), its
/// library source for -Z build-std=core, and LLVM for building bpf-linker.
pub const EBPF_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "llvm-22-dev"];
/// Debian packages the end-to-end tests run.
/// (prometheus for promtool, which checks the --metrics text; yamllint for
/// the packaging manifests; libcap2-bin for capsh.)
pub const TEST_PACKAGES: &[&str] =
    &["tcpdump", "tshark", "iperf3", "bpftool", "iproute2", "procps", "prometheus", "yamllint", "libcap2-bin"];
/// Commands the test packages give, checked when there is no dpkg.
const TEST_COMMANDS: &[&str] =
    &["tcpdump", "tshark", "iperf3", "bpftool", "ip", "ss", "ps", "promtool", "yamllint", "capsh"];

/// What this machine and user can do.
pub struct Machine {
    pub root: bool,
    pub has_apt: bool,
    pub has_dpkg: bool,
    /// The cargo that runs xtask (rustup's stable one, not Debian's cargo-web).
    pub cargo: PathBuf,
    pub cargo_home: PathBuf,
    pub toolchain: String,
}

impl Machine {
    pub fn detect() -> Self {
        let euid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| parse::euid_from_proc_status(&s))
            .or_else(|| {
                // No /proc (a bare chroot): ask id(1).
                let out = Command::new("id").arg("-u").output().ok()?;
                String::from_utf8_lossy(&out.stdout).trim().parse().ok()
            });
        let root = euid == Some(0);
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
        Self {
            root,
            has_apt: which("apt-get").is_some(),
            has_dpkg: which("dpkg-query").is_some(),
            cargo: std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo")),
            cargo_home,
            toolchain: std::env::var("TCPTRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.to_string()),
        }
    }

    /// PATH with $CARGO_HOME/bin first, so that the bpf-linker `cargo install`
    /// put there is the one rustc finds, whatever the caller's PATH.
    pub fn path_env(&self) -> std::ffi::OsString {
        let bin = self.cargo_home.join("bin");
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&old).collect();
        if dirs.first() != Some(&bin) {
            dirs.insert(0, bin);
        }
        std::env::join_paths(dirs).unwrap_or(old)
    }

    /// A command with PATH fixed up and stdin closed (CI has none; apt and
    /// debconf must never wait for an answer).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("PATH", self.path_env()).stdin(Stdio::null());
        // `cargo run` (the xtask alias) prepends the stable toolchain's and
        // target/'s library folders to LD_LIBRARY_PATH; keep them from the
        // tools we start (bpf-linker loads Debian's libLLVM).
        if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
            let rustup_home = std::env::var_os("RUSTUP_HOME").map(PathBuf::from);
            let kept: Vec<PathBuf> = std::env::split_paths(&v)
                .filter(|p| {
                    !rustup_home.as_ref().is_some_and(|r| p.starts_with(r))
                        && !p.starts_with(crate::workspace_root().join("target"))
                })
                .collect();
            if kept.is_empty() {
                c.env_remove("LD_LIBRARY_PATH");
            } else if let Ok(j) = std::env::join_paths(kept) {
                c.env("LD_LIBRARY_PATH", j);
            }
        }
        c
    }

    fn find(&self, name: &str) -> Option<PathBuf> {
        which_in(name, &self.path_env())
    }
}

/// Which optional parts to set up beside the eBPF build.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TestTools {
    No,
    /// Install them; failing to is an error.
    Required,
    /// Install them when possible; else warn (a non-root test run skips the
    /// tests that use them).
    IfPossible,
}

pub fn setup(m: &Machine, test_tools: TestTools) -> Result<()> {
    let t0 = Instant::now();
    println!(
        "xtask: setup: checking the eBPF toolchain{} (running as {})",
        if test_tools == TestTools::No { "" } else { " and test tools" },
        if m.root { "root" } else { "non-root" }
    );
    let mut test_pkgs: &[&str] = &[];
    if test_tools != TestTools::No {
        test_pkgs = TEST_PACKAGES;
    }
    ensure_packages(m, EBPF_PACKAGES, test_pkgs, test_tools == TestTools::Required)?;
    let llvm_major = ensure_toolchain(m)?;
    if llvm_major != DEFAULT_LLVM_MAJOR {
        // rustc-web moved to another LLVM: bpf-linker must be built against it.
        let dev = format!("llvm-{llvm_major}-dev");
        println!("xtask: note: {} uses LLVM {llvm_major}, not {DEFAULT_LLVM_MAJOR}", m.toolchain);
        ensure_packages(m, &[dev.as_str()], &[], true)?;
    }
    ensure_bpf_linker(m, llvm_major)?;
    println!("xtask: setup: all there ({:.1}s)", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Installed versions of `pkgs`, or None when this isn't a dpkg system.
fn dpkg_query(m: &Machine, pkgs: &[&str]) -> Result<Option<std::collections::BTreeMap<String, String>>> {
    if !m.has_dpkg {
        return Ok(None);
    }
    // Exits 1 when some package is unknown; its stdout still lists the rest.
    let out = m
        .command("dpkg-query")
        .arg("-W")
        .arg("-f=${Package}\t${db:Status-Abbrev}\t${Version}\n")
        .args(pkgs)
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query")?;
    Ok(Some(parse::dpkg_installed(&String::from_utf8_lossy(&out.stdout))))
}

/// The packages of `pkgs` that dpkg doesn't have installed (all of them are
/// reported as present, with a note, where there is no dpkg).
pub fn missing_packages(m: &Machine, pkgs: &[&str], quiet: bool) -> Result<Vec<String>> {
    let Some(installed) = dpkg_query(m, pkgs)? else {
        return Ok(Vec::new());
    };
    let mut missing = Vec::new();
    for p in pkgs {
        match installed.get(*p) {
            Some(v) if !quiet => println!("xtask: ok: package {p} {v}"),
            Some(_) => {}
            None => missing.push(p.to_string()),
        }
    }
    Ok(missing)
}

fn ensure_packages(m: &Machine, needed: &[&str], optional: &[&str], optional_required: bool) -> Result<()> {
    if !m.has_dpkg {
        println!("xtask: note: no dpkg-query (not Debian?): not checking packages {}", needed.join(" "));
        if !optional.is_empty() {
            let absent: Vec<&str> = TEST_COMMANDS.iter().copied().filter(|c| m.find(c).is_none()).collect();
            if !absent.is_empty() {
                let msg = format!("test tools not found in PATH: {}", absent.join(" "));
                if optional_required {
                    bail!("{msg}; install them with your package manager");
                }
                println!("xtask: warning: {msg}: root-only tests will fail");
            }
        }
        return Ok(());
    }
    let missing_needed = missing_packages(m, needed, false)?;
    let missing_optional = missing_packages(m, optional, false)?;
    if missing_needed.is_empty() && missing_optional.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = missing_needed.iter().chain(&missing_optional).cloned().collect();
    println!("xtask: missing packages: {}", all.join(" "));
    if m.root && m.has_apt {
        return apt_install(m, &all);
    }
    let why = if m.root { "there is no apt-get" } else { "not running as root" };
    if missing_needed.is_empty() && !optional_required {
        println!(
            "xtask: warning: cannot install the test tools ({why}); the root-only tests \
             need them. To install them run:\n    {}",
            apt_commands(&missing_optional, true).join("\n    ")
        );
        return Ok(());
    }
    bail!("{}", manual_instructions(m, &all, why))
}

/// The apt commands that install `pkgs`, for a person to run.
fn apt_commands(pkgs: &[String], sudo: bool) -> Vec<String> {
    let s = if sudo { "sudo " } else { "" };
    vec![
        format!("{s}apt-get update"),
        format!("{s}env DEBIAN_FRONTEND=noninteractive apt-get install -y {}", pkgs.join(" ")),
    ]
}

/// What a person must run when xtask cannot install packages itself.
pub fn manual_instructions(m: &Machine, pkgs: &[String], why: &str) -> String {
    let mut cmds = apt_commands(pkgs, !m.root);
    if m.toolchain == EBPF_TOOLCHAIN {
        cmds.push(format!("rustup toolchain link {EBPF_TOOLCHAIN} {EBPF_TOOLCHAIN_DIR}"));
    }
    cmds.push(bpf_linker_install_cmdline(DEFAULT_LLVM_MAJOR));
    cmds.push("cargo xtask setup    # checks that all is there".to_string());
    format!(
        "cannot install the packages {} ({why}).\nRun these commands, then try again:\n    {}",
        pkgs.join(" "),
        cmds.join("\n    ")
    )
}

fn bpf_linker_install_cmdline(llvm_major: u32) -> String {
    format!(
        "LLVM_PREFIX=/usr/lib/llvm-{llvm_major} cargo install bpf-linker@{BPF_LINKER_VERSION} \
         --locked --no-default-features --features llvm-{llvm_major} --force"
    )
}

fn apt_install(m: &Machine, pkgs: &[String]) -> Result<()> {
    let mut updated = false;
    // On a fresh machine the package lists may be missing or old: update
    // them when apt has no candidate for something we need.
    let no_candidate = packages_without_candidate(m, pkgs)?;
    if !no_candidate.is_empty() {
        println!("xtask: apt has no candidate for {}: updating the package lists", no_candidate.join(" "));
        apt_update(m)?;
        updated = true;
        let still = packages_without_candidate(m, pkgs)?;
        if !still.is_empty() {
            bail!(
                "apt-get cannot find the packages {} even after apt-get update; \
                 are Debian 12's bookworm and bookworm-security sources enabled?",
                still.join(" ")
            );
        }
    }
    if pkgs.iter().any(|p| p == "tshark") {
        preseed_wireshark(m);
    }
    let install = |m: &Machine| {
        step(
            &format!("apt-get install {}", pkgs.join(" ")),
            m.command("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "-o", "Dpkg::Use-Pty=0", "-o", "DPkg::Lock::Timeout=600"])
                .args(["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"])
                .args(pkgs),
        )
    };
    if let Err(e) = install(m) {
        if updated {
            return Err(e);
        }
        // Stale lists give 404s for superseded versions: update and retry.
        println!("xtask: install failed ({e:#}); updating the package lists and retrying");
        apt_update(m)?;
        install(m)?;
    }
    let refs: Vec<&str> = pkgs.iter().map(String::as_str).collect();
    let still = missing_packages(m, &refs, true)?;
    if !still.is_empty() {
        bail!("apt-get install finished but these are still not installed: {}", still.join(" "));
    }
    Ok(())
}

fn apt_update(m: &Machine) -> Result<()> {
    step(
        "apt-get update",
        m.command("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args([
            "update",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=600",
        ]),
    )
}

fn packages_without_candidate(m: &Machine, pkgs: &[String]) -> Result<Vec<String>> {
    let out = m
        .command("apt-cache")
        .arg("policy")
        .args(pkgs)
        .stderr(Stdio::null())
        .output()
        .context("running apt-cache policy")?;
    let found = parse::apt_candidates(&String::from_utf8_lossy(&out.stdout));
    Ok(pkgs.iter().filter(|p| !found.contains(*p)).cloned().collect())
}

/// tshark's wireshark-common asks whether non-root users may capture; answer
/// no beforehand so that nothing ever waits for a person.
fn preseed_wireshark(m: &Machine) {
    if which("debconf-set-selections").is_none() {
        return;
    }
    let answer = "wireshark-common wireshark-common/install-setuid boolean false\n";
    let r = m.command("debconf-set-selections").stdin(Stdio::piped()).spawn().and_then(|mut c| {
        c.stdin.take().expect("piped").write_all(answer.as_bytes())?;
        c.wait()
    });
    match r {
        Ok(s) if s.success() => println!("xtask: preseeded debconf: {}", answer.trim()),
        other => println!("xtask: warning: debconf-set-selections failed ({other:?}); going on"),
    }
}

/// Makes sure the eBPF toolchain exists and works; returns its LLVM major.
fn ensure_toolchain(m: &Machine) -> Result<u32> {
    let tc = &m.toolchain;
    if m.find("rustup").is_none() {
        bail!("rustup not found in PATH: the build needs rustup (https://rustup.rs) for the `{tc}` toolchain");
    }
    let list = capture(m.command("rustup").args(["toolchain", "list"]))?;
    let listed = parse::toolchain_listed(&list, tc);
    let probe = |m: &Machine| {
        m.command("rustup").args(["run", tc.as_str(), "rustc", "-vV"]).env_remove("RUSTUP_TOOLCHAIN").output()
    };
    let vv = match probe(m) {
        Ok(o) if listed && o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ if tc != EBPF_TOOLCHAIN => {
            bail!("the toolchain {tc} (from TCPTRACE_EBPF_TOOLCHAIN) is not installed or doesn't run rustc")
        }
        _ => {
            if listed {
                println!("xtask: toolchain {tc} is listed but its rustc doesn't run: linking it again");
            }
            if !Path::new(EBPF_TOOLCHAIN_DIR).join("bin/rustc").exists() {
                bail!("{EBPF_TOOLCHAIN_DIR}/bin/rustc is missing: is rustc-web installed?");
            }
            step(
                &format!("rustup toolchain link {tc} {EBPF_TOOLCHAIN_DIR}"),
                m.command("rustup").args(["toolchain", "link", tc, EBPF_TOOLCHAIN_DIR]),
            )?;
            let o = probe(m).context("running rustup run")?;
            if !o.status.success() {
                bail!("`rustup run {tc} rustc -vV` fails after linking: {}", String::from_utf8_lossy(&o.stderr));
            }
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
    };
    let release = vv.lines().find_map(|l| l.strip_prefix("release: ")).unwrap_or("?");
    let major = parse::llvm_major_from_rustc_vv(&vv)
        .with_context(|| format!("no `LLVM version:` in `rustup run {tc} rustc -vV`:\n{vv}"))?;
    println!("xtask: ok: toolchain {tc}: rustc {release}, LLVM {major}");
    // -Z build-std=core needs the library source in the toolchain's sysroot.
    let sysroot = capture(
        m.command("rustup").args(["run", tc.as_str(), "rustc", "--print", "sysroot"]).env_remove("RUSTUP_TOOLCHAIN"),
    )?;
    let lib = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if !lib.exists() {
        bail!("{} is missing: the eBPF build needs the library source (Debian package rust-web-src)", lib.display());
    }
    println!("xtask: ok: library source at {}", lib.display());
    Ok(major)
}

/// What's wrong with the bpf-linker at `path`, if anything.
fn bpf_linker_problem(m: &Machine, path: &Path, llvm_major: u32) -> Result<Option<String>> {
    let v = capture(m.command(path).arg("--version")).unwrap_or_default();
    let Some(version) = parse::bpf_linker_version(&v) else {
        return Ok(Some(format!("{} --version doesn't tell its version", path.display())));
    };
    if version != BPF_LINKER_VERSION {
        return Ok(Some(format!("{} is version {version}, not {BPF_LINKER_VERSION}", path.display())));
    }
    let ldd = capture(m.command("ldd").arg(path)).unwrap_or_default();
    match parse::llvm_major_from_ldd(&ldd) {
        None => Ok(Some(format!("cannot tell which LLVM {} uses (ldd shows no libLLVM)", path.display()))),
        Some(l) if l != llvm_major => {
            Ok(Some(format!("{} uses LLVM {l} but {} uses LLVM {llvm_major}", path.display(), m.toolchain)))
        }
        Some(_) if ldd.lines().any(|l| l.contains("libLLVM") && l.contains("not found")) => {
            Ok(Some(format!("{}: its libLLVM is not found (ldd)", path.display())))
        }
        Some(_) => Ok(None),
    }
}

fn ensure_bpf_linker(m: &Machine, llvm_major: u32) -> Result<()> {
    if let Some(path) = m.find("bpf-linker") {
        match bpf_linker_problem(m, &path, llvm_major)? {
            None => {
                println!("xtask: ok: bpf-linker {BPF_LINKER_VERSION} (LLVM {llvm_major}) at {}", path.display());
                return Ok(());
            }
            Some(p) => println!("xtask: {p}: installing bpf-linker again"),
        }
    } else {
        println!("xtask: bpf-linker not found: installing it");
    }
    let prefix = format!("/usr/lib/llvm-{llvm_major}");
    if !Path::new(&prefix).join("bin/llvm-config").exists() {
        bail!("{prefix}/bin/llvm-config is missing: install llvm-{llvm_major}-dev");
    }
    step(
        &format!("cargo install bpf-linker@{BPF_LINKER_VERSION} (LLVM {llvm_major}; about a minute)"),
        m.command(&m.cargo)
            .env("LLVM_PREFIX", &prefix)
            // Build in cargo's own temporary folder, not the project's target.
            .env_remove("CARGO_TARGET_DIR")
            .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked"])
            .args(["--no-default-features", "--features", &format!("llvm-{llvm_major}"), "--force"])
            .arg("--root")
            .arg(&m.cargo_home),
    )?;
    let path = m.find("bpf-linker").context("bpf-linker still not found after cargo install")?;
    if let Some(p) = bpf_linker_problem(m, &path, llvm_major)? {
        bail!(
            "after installing bpf-linker into {}: {p}. Another bpf-linker earlier in PATH \
             may hide it: remove that one",
            m.cargo_home.join("bin").display()
        );
    }
    println!("xtask: ok: bpf-linker {BPF_LINKER_VERSION} (LLVM {llvm_major}) at {}", path.display());
    Ok(())
}

/// Runs a step that changes the machine, printing it and how long it took.
pub fn step(what: &str, cmd: &mut Command) -> Result<()> {
    println!("xtask: step: {what}\nxtask:   $ {}", cmdline(cmd));
    let t = Instant::now();
    let status = cmd.status().with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    let secs = t.elapsed().as_secs_f64();
    if !status.success() {
        bail!("step `{what}` failed ({status}) after {secs:.1}s");
    }
    println!("xtask: done: {what} ({secs:.1}s)");
    Ok(())
}

/// A command's stdout, or an error with its stderr.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", cmdline(cmd), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn cmdline(cmd: &Command) -> String {
    let mut s: Vec<String> = cmd
        .get_envs()
        .filter(|(k, _)| *k == "LLVM_PREFIX" || *k == "DEBIAN_FRONTEND")
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    s.push(cmd.get_program().to_string_lossy().into_owned());
    s.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    s.join(" ")
}

pub fn which(name: &str) -> Option<PathBuf> {
    which_in(name, &std::env::var_os("PATH")?)
}

fn which_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| p.metadata().is_ok_and(|md| md.is_file() && md.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(root: bool) -> Machine {
        let mut m = Machine::detect();
        m.root = root;
        m
    }

    #[test]
    fn unknown_package_is_missing() {
        let m = machine(true);
        if !m.has_dpkg {
            return;
        }
        let missing = missing_packages(&m, &["tcptrace-no-such-package", "dpkg"], true).unwrap();
        assert_eq!(missing, vec!["tcptrace-no-such-package".to_string()]);
    }

    #[test]
    fn non_root_cannot_install_and_says_what_to_run() {
        let m = machine(false);
        if !m.has_dpkg {
            return;
        }
        let err = ensure_packages(&m, &["tcptrace-no-such-package"], &[], true).unwrap_err().to_string();
        assert!(err.contains("not running as root"), "{err}");
        assert!(err.contains("sudo apt-get update"), "{err}");
        assert!(
            err.contains("sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y tcptrace-no-such-package"),
            "{err}"
        );
        assert!(err.contains("rustup toolchain link tcptrace-bpf /usr"), "{err}");
        assert!(err.contains("cargo install bpf-linker@0.13.0"), "{err}");
    }

    #[test]
    fn root_without_apt_says_what_to_run() {
        let mut m = machine(true);
        m.has_apt = false;
        if !m.has_dpkg {
            return;
        }
        let err = ensure_packages(&m, &["tcptrace-no-such-package"], &[], true).unwrap_err().to_string();
        assert!(err.contains("there is no apt-get"), "{err}");
        assert!(err.contains("\n    apt-get update"), "{err}");
    }

    #[test]
    fn missing_optional_tools_only_warn_when_allowed() {
        let m = machine(false);
        if !m.has_dpkg {
            return;
        }
        ensure_packages(&m, &["dpkg"], &["tcptrace-no-such-package"], false).unwrap();
        assert!(ensure_packages(&m, &["dpkg"], &["tcptrace-no-such-package"], true).is_err());
    }

    #[test]
    fn install_command_line() {
        assert_eq!(
            bpf_linker_install_cmdline(22),
            "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0 --locked \
             --no-default-features --features llvm-22 --force"
        );
    }

    #[test]
    fn path_puts_cargo_home_first() {
        let mut m = machine(false);
        m.cargo_home = PathBuf::from("/nonexistent/cargo-home");
        let p = m.path_env();
        let first = std::env::split_paths(&p).next().unwrap();
        assert_eq!(first, PathBuf::from("/nonexistent/cargo-home/bin"));
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("tcptrace-no-such-command").is_none());
    }
}
