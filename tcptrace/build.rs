//! Builds the kernel programs (tcptrace-ebpf) for bpfel-unknown-none with the
//! toolchain `cargo xtask setup` links, so that src/ebpf.rs can embed them.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// rustup toolchain name that `cargo xtask setup` links to Debian's rustc-web.
const EBPF_TOOLCHAIN: &str = "tcptrace-bpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=TCPTRACE_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("TCPTRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.to_string());
    let cargo_metadata::Metadata { packages, .. } =
        cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "tcptrace-ebpf")
        .ok_or_else(|| anyhow!("tcptrace-ebpf package not found"))?;
    let root_dir = ebpf.manifest_path.parent().ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // The eBPF build needs -Z build-std=core on a stable compiler: allow the
    // unstable flag for that child build only (aya-build reads this variable).
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [aya_build::Package { name: ebpf.name.as_str(), root_dir: root_dir.as_str(), ..Default::default() }],
        Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!(
            "building the kernel programs with toolchain {toolchain} failed; \
             run `cargo xtask setup` first"
        )
    })
}
