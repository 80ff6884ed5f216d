//! Lets LLVM read and write memory at any alignment (bpf-linker's
//! `allows-misaligned-mem-access`, LLVM 22): a header field becomes one
//! load instead of a byte at a time and a shift-or per byte. The verifier
//! checks the alignment of packet and map-value accesses only where the
//! architecture has no efficient unaligned access (or a program asks for
//! strict alignment), and LLVM keeps stack accesses aligned as the verifier
//! wants. It cut an emitted record by 7–13 ns and a state-tracked one by
//! 5–8 ns (kernel bench `--ab`, BENCHMARKS.md 1).
fn main() {
    println!("cargo::rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
}
