//! Userspace decoding of ring-buffer bytes into records.

use crate::record::{PacketRecord, RECORD_SIZE};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {RECORD_SIZE}")]
    Length(usize),
}

impl PacketRecord {
    /// Decodes a record from ring-buffer bytes, checking the length. The tag
    /// fields stay plain integers; convert them with `TryFrom`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != RECORD_SIZE {
            return Err(DecodeError::Length(bytes.len()));
        }
        // SAFETY: the length is checked, PacketRecord is repr(C) made only of
        // integers and byte arrays (every bit pattern is valid), and
        // read_unaligned does not need the ring buffer's alignment.
        Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<PacketRecord>()) })
    }

    /// The record's bytes, as the kernel writes them.
    pub fn as_bytes(&self) -> &[u8; RECORD_SIZE] {
        // SAFETY: same layout argument as above; the explicit padding fields
        // mean there are no uninitialised padding bytes.
        unsafe { &*(self as *const Self).cast::<[u8; RECORD_SIZE]>() }
    }
}

unsafe impl aya::Pod for PacketRecord {}
