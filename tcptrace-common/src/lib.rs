//! Types and parsing shared by the tcptrace kernel programs and userspace.
#![no_std]

pub mod conn;
pub mod filter;
pub mod parse;
pub mod record;

#[cfg(feature = "user")]
pub mod decode;

pub use filter::{FilterConfig, PortBitmap};
pub use parse::{Frame, Headers, LinkType, Skip, SliceFrame, fill_record, parse_frame, parse_headers};
pub use record::{Direction, Malformed, PacketRecord, RecordKind};
