//! Userspace decoding of ring-buffer bytes into records.

use crate::record::{EXT_TAIL_HEAD, MAX_EXT_BYTES, PacketRecord, RECORD_SIZE};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {RECORD_SIZE}")]
    Length(usize),
    #[error("record of {0} bytes with {1} bytes of IPv6 extension headers")]
    ExtLength(usize, usize),
}

/// Decodes a ring-buffer entry: a record, and the bytes of its frame's IPv6
/// extension headers (empty when it has none; see [`crate::ExtTail`]). Every length is checked.
pub fn decode_entry(bytes: &[u8]) -> Result<(PacketRecord, &[u8]), DecodeError> {
    if bytes.len() == RECORD_SIZE {
        return Ok((PacketRecord::from_bytes(bytes)?, &[]));
    }
    let Some(tail) = bytes.get(RECORD_SIZE..RECORD_SIZE + EXT_TAIL_HEAD) else {
        return Err(DecodeError::Length(bytes.len()));
    };
    let len = u16::from_ne_bytes([tail[0], tail[1]]) as usize;
    if len == 0 || len > MAX_EXT_BYTES || bytes.len() != RECORD_SIZE + EXT_TAIL_HEAD + len {
        return Err(DecodeError::ExtLength(bytes.len(), len));
    }
    let rec = PacketRecord::from_bytes(&bytes[..RECORD_SIZE])?;
    Ok((rec, &bytes[RECORD_SIZE + EXT_TAIL_HEAD..]))
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

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn entries_with_and_without_extension_headers() {
        let mut rec = PacketRecord::zeroed();
        rec.sport = 7;
        let plain = rec.as_bytes().to_vec();
        assert_eq!(decode_entry(&plain), Ok((rec, &[][..])));
        let mut with_ext: Vec<u8> = plain.clone();
        with_ext.extend_from_slice(&24u16.to_ne_bytes());
        with_ext.extend_from_slice(&[0; 6]);
        with_ext.extend((0..24).map(|i| i as u8));
        let (r, rh) = decode_entry(&with_ext).unwrap();
        assert_eq!((r, rh.len(), rh[23]), (rec, 24, 23));
        // A length that does not match the entry's, zero, too long, or no tail.
        assert_eq!(decode_entry(&with_ext[..with_ext.len() - 1]), Err(DecodeError::ExtLength(175, 24)));
        let mut zero = with_ext.clone();
        zero[RECORD_SIZE..RECORD_SIZE + 2].copy_from_slice(&0u16.to_ne_bytes());
        assert!(decode_entry(&zero).is_err());
        let mut long = plain.clone();
        long.extend_from_slice(&4000u16.to_ne_bytes());
        long.extend(std::iter::repeat_n(0, 4006));
        assert!(decode_entry(&long).is_err());
        assert_eq!(decode_entry(&plain[..100]), Err(DecodeError::Length(100)));
        assert_eq!(decode_entry(&with_ext[..150]), Err(DecodeError::Length(150)));
    }
}
