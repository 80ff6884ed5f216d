//! `cargo xtask`: sets up, builds, runs and tests tcptrace.
//!
//! - `cargo xtask setup [--test-tools]`: install what the eBPF build needs
//! - `cargo xtask build [--release]`
//! - `cargo xtask run [--release] -- ARGS`: build, then run as root (sudo -E)
//! - `cargo xtask test [-- CARGO-TEST-ARGS [-- TEST-BINARY-ARGS]]`: set up
//!   (with the test tools), then `cargo test` of the default members; as
//!   root with `--include-ignored`, so that the root-only tests run too
//! - `cargo xtask bench [-- BENCH-ARGS]`: as root, build release binaries and
//!   measure tcptrace against tcpdump and against nothing (see BENCHMARKS.md)
mod parse;
mod setup;

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use setup::{Machine, TestTools};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Set up, build, run and test tcptrace")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the eBPF build needs (Debian's rustc-web with LLVM 22 and
    /// its library source, the `tcptrace-bpf` rustup toolchain, bpf-linker);
    /// does nothing for what is already there.
    Setup {
        /// Also install the tools the tests run: tcpdump tshark iperf3
        /// bpftool iproute2 procps.
        #[arg(long)]
        test_tools: bool,
    },
    /// Set up, then build target/<profile>/tcptrace with the kernel programs
    /// embedded.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run tcptrace ARGS as root (through `sudo -E` when not root).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for tcptrace (put them after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up (with the test tools), then run the whole test suite; as root,
    /// with the root-only tests too.
    Test {
        /// Arguments for `cargo test` (after `--`); a further `--` starts
        /// those for the test binaries.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// As root: set up (with the test tools), build release binaries, then
    /// measure tcptrace against tcpdump and an empty program and print the
    /// tables of BENCHMARKS.md. Takes several minutes.
    Bench {
        /// Arguments for tcptrace-bench (after `--`): `--only
        /// kernel,offline,churn,bulk,ceiling`, `--runs N`, `--quick`; or
        /// `--ab OBJECT` (the kernel programs against another build's) or
        /// `--churn-ab TCPTRACE` (the churn traced by another build's binary
        /// too).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let m = Machine::detect();
    let r = match cli.cmd {
        Cmd::Setup { test_tools } => {
            setup::setup(&m, if test_tools { TestTools::Required } else { TestTools::No }).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Build { release } => build(&m, release).map(|_| ExitCode::SUCCESS),
        Cmd::Run { release, args } => run(&m, release, &args),
        Cmd::Test { args } => test(&m, &args),
        Cmd::Bench { args } => bench(&m, &args),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace's root folder (xtask/..).
pub fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    }
}

fn build(m: &Machine, release: bool) -> Result<PathBuf> {
    setup::setup(m, TestTools::No)?;
    let mut cmd = m.command(&m.cargo);
    cmd.current_dir(workspace_root()).args(["build", "-p", "tcptrace"]);
    if release {
        cmd.arg("--release");
    }
    setup::step("cargo build -p tcptrace", &mut cmd)?;
    let bin = target_dir().join(if release { "release" } else { "debug" }).join("tcptrace");
    if !bin.exists() {
        bail!("the build succeeded but {} is not there", bin.display());
    }
    println!("xtask: built {}", bin.display());
    Ok(bin)
}

fn run(m: &Machine, release: bool, args: &[String]) -> Result<ExitCode> {
    let bin = build(m, release)?;
    // exec: the child gets the terminal's signals (Ctrl-C) itself, and its
    // exit code is ours.
    let err = if m.root {
        eprintln!("xtask: running {} {}", bin.display(), args.join(" "));
        std::process::Command::new(&bin).args(args).exec()
    } else {
        if setup::which("sudo").is_none() {
            bail!("tcptrace needs root and there is no sudo: run {} as root", bin.display());
        }
        eprintln!("xtask: not root: running through sudo -E {} {}", bin.display(), args.join(" "));
        std::process::Command::new("sudo").arg("-E").arg(&bin).args(args).exec()
    };
    Err(err).with_context(|| format!("cannot run {}", bin.display()))
}

fn test(m: &Machine, args: &[String]) -> Result<ExitCode> {
    setup::setup(m, if m.root { TestTools::Required } else { TestTools::IfPossible })?;
    let (cargo_args, mut bin_args) = parse::split_test_args(args);
    let mut cmd = m.command(&m.cargo);
    // Run in the workspace root without --workspace: that tests the default
    // members (xtask, tcptrace, tcptrace-common), not tcptrace-ebpf, which
    // only builds for the BPF target.
    cmd.current_dir(workspace_root()).args(["test", "--no-fail-fast"]).args(&cargo_args);
    if m.root && !bin_args.iter().any(|a| a == "--include-ignored" || a == "--ignored") {
        bin_args.insert(0, "--include-ignored".to_string());
    }
    if !bin_args.is_empty() {
        cmd.arg("--").args(&bin_args);
    }
    println!(
        "xtask: step: run the test suite{}\nxtask:   $ {}",
        if m.root { " with the root-only tests" } else { " (not root: without the root-only tests)" },
        setup::cmdline(&cmd)
    );
    let t = std::time::Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("cannot start cargo test")?;
    let mut totals = parse::TestTotals::default();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!("xtask: done: cargo test ({:.1}s, {status})", t.elapsed().as_secs_f64());
    if !m.root {
        let other = totals.ignored.saturating_sub(totals.root_ignored);
        println!("{} root-only tests skipped (not root)", totals.root_ignored);
        if other > 0 {
            println!("{other} other tests ignored");
        }
    }
    if totals.results > 0 {
        println!("tests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    }
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        let code = status.code().unwrap_or(1).clamp(1, 255) as u8;
        Ok(ExitCode::from(code))
    }
}

fn bench(m: &Machine, args: &[String]) -> Result<ExitCode> {
    if !m.root {
        bail!("the bench loads kernel programs and makes network namespaces: run it as root");
    }
    setup::setup(m, TestTools::Required)?;
    let mut cmd = m.command(&m.cargo);
    cmd.current_dir(workspace_root()).args(["build", "--release", "-p", "tcptrace", "-p", "tcptrace-bench"]);
    setup::step("cargo build --release -p tcptrace -p tcptrace-bench", &mut cmd)?;
    let dir = target_dir().join("release");
    let status = std::process::Command::new(dir.join("tcptrace-bench"))
        .arg("--tcptrace")
        .arg(dir.join("tcptrace"))
        .args(args)
        .status()
        .context("cannot run tcptrace-bench")?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
