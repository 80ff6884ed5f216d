//! Lets LLVM read and write memory at any alignment (bpf-linker's
//! `allows-misaligned-mem-access`, LLVM 22): a header field becomes one
//! load instead of a byte at a time and a shift-or per byte. The verifier
//! checks the alignment of packet and map-value accesses only where the
//! architecture has no efficient unaligned access (or a program asks for
//! strict alignment). It cut an emitted record by 7–13 ns and a
//! state-tracked one by 5–8 ns (kernel bench `--ab`, BENCHMARKS.md 1).
//!
//! The verifier does refuse a misaligned access to the stack, and LLVM may
//! now merge reads of a copy on the stack (a frame read with a helper) into
//! one that is misaligned (`misaligned stack access` in the verifier's
//! log). The kernel tests load every program under every filter shape, so
//! such a build fails them: change the read the log points at (a 16-bit
//! test of the IPv4 fragment field once became an 8-byte read at an odd
//! offset).
fn main() {
    println!("cargo::rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
}
