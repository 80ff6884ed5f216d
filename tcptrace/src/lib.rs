//! tcptrace: loader, formatter and capture-file reader.

pub mod capture;
pub mod cli;
pub mod ebpf;
pub mod filter;
pub mod format;
pub mod loader;
pub mod offline;
