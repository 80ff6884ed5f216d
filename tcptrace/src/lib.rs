//! tcptrace: loader, formatter and capture-file reader.

pub mod cli;
pub mod ebpf;
pub mod loader;
