#![no_std]
// The programs live in the binary target (src/main.rs); this library target
// exists so that tcptrace can name this crate as a build dependency.
