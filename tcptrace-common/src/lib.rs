//! Types and parsing shared by the tcptrace kernel programs and userspace.
#![no_std]

pub mod conn;
pub mod filter;
pub mod parse;
pub mod record;

#[cfg(feature = "user")]
pub mod decode;

pub use filter::{FilterConfig, PortSet};
pub use parse::{
    Frame, Headers, LinkType, Skip, SliceFrame, fill_ext, fill_record, parse_frame, parse_frame_ext, parse_headers,
    routed_destination,
};
pub use record::{Direction, ExtRecord, ExtTail, Malformed, PacketRecord, RecordKind};
