//! The kernel's per-connection memory, used to decide which packets change a
//! connection's state and must reach userspace even when the flag filter
//! hides them (sent as [`crate::RecordKind::StateOnly`] records).
//!
//! A packet is state-relevant when it is a SYN, FIN or RST, the ACK that
//! completes a handshake (from the SYN sender, acking the SYN-ACK), or the
//! first segment that acknowledges a FIN. Everything else (data, window
//! updates, duplicate ACKs) changes no state and costs nothing beyond the
//! lookup.

use crate::record::flags;

/// Key of the connection map: the two endpoints in a canonical order (the
/// smaller address/port pair first), so both directions find the same entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub addr: [[u8; 16]; 2],
    pub port: [u16; 2],
    pub family: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<ConnKey>() == 40);

impl ConnKey {
    /// The key for a segment from `src:sport` to `dst:dport`, and the index
    /// (0 or 1) of the sending endpoint in it.
    pub fn new(family: u8, src: &[u8; 16], sport: u16, dst: &[u8; 16], dport: u16) -> (Self, usize) {
        let mut key = Self { addr: [*src, *dst], port: [sport, dport], family, _pad: [0; 3] };
        let from = key.canonicalize();
        (key, from)
    }

    /// Puts a key holding (sender, receiver) in canonical order, in place;
    /// returns the sender's index afterwards.
    #[inline(always)]
    pub fn canonicalize(&mut self) -> usize {
        let first = match cmp_addr(&self.addr[0], &self.addr[1]) {
            core::cmp::Ordering::Less => true,
            core::cmp::Ordering::Greater => false,
            core::cmp::Ordering::Equal => self.port[0] <= self.port[1],
        };
        if first {
            0
        } else {
            let [a, b] = &mut self.addr;
            core::mem::swap(a, b);
            self.port.swap(0, 1);
            1
        }
    }
}

/// Compares two addresses as big-endian numbers, without a loop over bytes.
#[inline(always)]
fn cmp_addr(a: &[u8; 16], b: &[u8; 16]) -> core::cmp::Ordering {
    let hi = |x: &[u8; 16]| u64::from_be_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
    let lo = |x: &[u8; 16]| u64::from_be_bytes([x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15]]);
    match hi(a).cmp(&hi(b)) {
        core::cmp::Ordering::Equal => lo(a).cmp(&lo(b)),
        o => o,
    }
}

/// Bits of [`ConnState::bits`].
pub mod bits {
    /// Endpoint 0 / 1 sent a FIN.
    pub const FIN_SENT: [u8; 2] = [0x01, 0x02];
    /// The FIN of endpoint 0 / 1 was acknowledged.
    pub const FIN_ACKED: [u8; 2] = [0x04, 0x08];
    /// A SYN-ACK was seen; `synack_from` says from whom.
    pub const SYNACK: u8 = 0x10;
    /// The SYN-ACK was acknowledged: the handshake is complete.
    pub const ESTABLISHED: u8 = 0x20;
}

/// What the kernel remembers of a connection (value of the connection map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnState {
    /// Sequence number just past each endpoint's FIN (what acknowledges it).
    pub fin_end: [u32; 2],
    /// The acknowledgment number that completes the handshake (SYN-ACK seq + 1).
    pub synack_end: u32,
    /// See [`bits`].
    pub bits: u8,
    /// Endpoint (0 or 1) that sent the SYN-ACK.
    pub synack_from: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<ConnState>() == 16);

impl ConnState {
    /// A state with every field zero, as `default()`, made in `slot`
    /// without a `memset` (see [`ConnState::clear`]; returning it by value
    /// let LLVM make the copy a `memset` again).
    #[inline(always)]
    pub fn zeroed_in(slot: &mut core::mem::MaybeUninit<Self>) -> &mut Self {
        // SAFETY: `clear_raw` writes every field, so the slot is initialised.
        unsafe {
            Self::clear_raw(slot.as_mut_ptr());
            slot.assume_init_mut()
        }
    }

    /// Sets every field to zero. Field by field and volatile: LLVM would
    /// merge plain stores into a `memset`, which in BPF is a call to a byte
    /// loop.
    #[inline(always)]
    pub fn clear(&mut self) {
        // SAFETY: a valid, exclusive pointer.
        unsafe { Self::clear_raw(self) }
    }

    /// # Safety
    /// `p` must be valid for writes of a `ConnState`.
    #[inline(always)]
    unsafe fn clear_raw(p: *mut Self) {
        unsafe {
            core::ptr::addr_of_mut!((*p).fin_end[0]).write_volatile(0);
            core::ptr::addr_of_mut!((*p).fin_end[1]).write_volatile(0);
            core::ptr::addr_of_mut!((*p).synack_end).write_volatile(0);
            core::ptr::addr_of_mut!((*p).bits).write_volatile(0);
            core::ptr::addr_of_mut!((*p).synack_from).write_volatile(0);
            core::ptr::addr_of_mut!((*p)._pad[0]).write_volatile(0);
            core::ptr::addr_of_mut!((*p)._pad[1]).write_volatile(0);
        }
    }
}

/// The parts of a segment the connection logic looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub flags: u16,
    pub seq: u32,
    pub ack: u32,
    /// TCP payload length (from the IP header).
    pub payload: u32,
}

/// What a segment did to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed: not state-relevant.
    Nothing,
    /// State-relevant; keep the entry.
    Relevant,
    /// State-relevant and the connection is over (RST, or both FINs acked):
    /// drop the entry.
    Closed,
}

/// `a >= b` in sequence space (mod 2^32).
#[inline(always)]
pub fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Applies a segment sent by endpoint `from` (0 or 1) to `st`.
#[inline(always)]
pub fn step(st: &mut ConnState, from: usize, seg: &Segment) -> Step {
    let from = from & 1;
    let other = from ^ 1;
    let f = seg.flags;
    if f & flags::RST != 0 {
        st.clear();
        return Step::Closed;
    }
    if f & flags::SYN != 0 {
        if f & flags::ACK == 0 {
            // A new attempt (or a retransmission): forget any older connection
            // on this 4-tuple.
            st.clear();
        } else {
            st.bits = (st.bits | bits::SYNACK) & !bits::ESTABLISHED;
            st.synack_from = from as u8;
            st.synack_end = seg.seq.wrapping_add(1);
        }
        return Step::Relevant;
    }
    let mut relevant = false;
    if f & flags::FIN != 0 {
        if st.bits & bits::FIN_SENT[from] == 0 {
            st.bits |= bits::FIN_SENT[from];
            st.fin_end[from] = seg.seq.wrapping_add(seg.payload).wrapping_add(1);
        }
        relevant = true;
    }
    if f & flags::ACK != 0 {
        if st.bits & bits::SYNACK != 0
            && st.bits & bits::ESTABLISHED == 0
            && st.synack_from as usize != from
            && seg.ack == st.synack_end
        {
            st.bits |= bits::ESTABLISHED;
            relevant = true;
        }
        if st.bits & bits::FIN_SENT[other] != 0
            && st.bits & bits::FIN_ACKED[other] == 0
            && seq_ge(seg.ack, st.fin_end[other])
        {
            st.bits |= bits::FIN_ACKED[other];
            relevant = true;
        }
    }
    let all_closed = bits::FIN_ACKED[0] | bits::FIN_ACKED[1];
    if st.bits & all_closed == all_closed {
        Step::Closed
    } else if relevant {
        Step::Relevant
    } else {
        Step::Nothing
    }
}

// SAFETY: plain `repr(C)` data with explicit padding fields.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ConnKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ConnState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::flags::*;

    fn seg(flags: u16, seq: u32, ack: u32, payload: u32) -> Segment {
        Segment { flags, seq, ack, payload }
    }

    #[test]
    fn key_is_the_same_both_ways() {
        let a = [1u8; 16];
        let mut b = [1u8; 16];
        b[15] = 2;
        let (k1, i1) = ConnKey::new(4, &a, 5000, &b, 80);
        let (k2, i2) = ConnKey::new(4, &b, 80, &a, 5000);
        assert_eq!(k1, k2);
        assert_ne!(i1, i2);
        // Same address: ports decide.
        let (k3, i3) = ConnKey::new(4, &a, 7000, &a, 7001);
        let (k4, i4) = ConnKey::new(4, &a, 7001, &a, 7000);
        assert_eq!((k3, i3 ^ 1), (k4, i4));
    }

    #[test]
    fn handshake_data_and_close() {
        let mut st = ConnState::default();
        // Client is endpoint 0.
        assert_eq!(step(&mut st, 0, &seg(SYN, 100, 0, 0)), Step::Relevant);
        assert_eq!(step(&mut st, 1, &seg(SYN | ACK, 500, 101, 0)), Step::Relevant);
        assert_eq!(step(&mut st, 0, &seg(ACK, 101, 501, 0)), Step::Relevant);
        // Retransmitted third ACK and data: nothing.
        assert_eq!(step(&mut st, 0, &seg(ACK, 101, 501, 0)), Step::Nothing);
        assert_eq!(step(&mut st, 0, &seg(ACK | PSH, 101, 501, 10)), Step::Nothing);
        assert_eq!(step(&mut st, 1, &seg(ACK, 501, 111, 0)), Step::Nothing);
        // Client closes with 5 bytes on its FIN: acked by 117.
        assert_eq!(step(&mut st, 0, &seg(FIN | ACK, 111, 501, 5)), Step::Relevant);
        assert_eq!(step(&mut st, 1, &seg(ACK, 501, 116, 0)), Step::Nothing);
        assert_eq!(step(&mut st, 1, &seg(ACK, 501, 117, 0)), Step::Relevant);
        assert_eq!(step(&mut st, 1, &seg(ACK, 501, 117, 0)), Step::Nothing);
        assert_eq!(step(&mut st, 1, &seg(FIN | ACK, 501, 117, 0)), Step::Relevant);
        assert_eq!(step(&mut st, 0, &seg(ACK, 117, 502, 0)), Step::Closed);
    }

    #[test]
    fn handshake_ack_with_data_is_relevant_and_wraps() {
        let mut st = ConnState::default();
        step(&mut st, 1, &seg(SYN, u32::MAX, 0, 0));
        step(&mut st, 0, &seg(SYN | ACK, u32::MAX - 1, 0, 0));
        assert_eq!(step(&mut st, 1, &seg(ACK | PSH, 0, u32::MAX, 3)), Step::Relevant);
        // FIN at the wrap: seq MAX, ends at 0.
        step(&mut st, 0, &seg(FIN | ACK, u32::MAX, 3, 0));
        assert_eq!(step(&mut st, 1, &seg(ACK, 3, 0, 0)), Step::Relevant);
    }

    #[test]
    fn rst_closes_and_syn_restarts() {
        let mut st = ConnState::default();
        step(&mut st, 0, &seg(SYN, 1, 0, 0));
        assert_eq!(step(&mut st, 1, &seg(RST | ACK, 0, 2, 0)), Step::Closed);
        assert_eq!(st, ConnState::default());
    }

    #[test]
    fn simultaneous_close() {
        let mut st = ConnState::default();
        step(&mut st, 0, &seg(FIN | ACK, 10, 20, 0));
        // Crossing FIN from the other side acks nothing yet (ack 20 < 11? no: acks ours).
        assert_eq!(step(&mut st, 1, &seg(FIN | ACK, 20, 10, 0)), Step::Relevant);
        assert_eq!(step(&mut st, 0, &seg(ACK, 11, 21, 0)), Step::Relevant);
        assert_eq!(step(&mut st, 1, &seg(ACK, 21, 11, 0)), Step::Closed);
    }
}
