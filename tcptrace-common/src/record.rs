//! The record that leaves the kernel through the ring buffer, and the small
//! tagged values inside it.
//!
//! Every field is an integer or a byte array; padding is explicit and the size
//! is checked at compile time, so both sides agree on the layout byte for byte.
//! Userspace never transmutes bytes into the enums below: it decodes them with
//! [`TryFrom`].

/// Size of [`PacketRecord`] in bytes (also stated in the README).
pub const RECORD_SIZE: usize = 144;

/// Most TCP option bytes a header can carry (60 - 20).
pub const MAX_OPTIONS: usize = 40;

/// Most IPv6 extension headers recorded before the TCP header.
pub const MAX_EXT: usize = 4;

/// TCP flag bits as they sit in the record's `tcp_flags` (the 13th byte of the
/// TCP header, plus AE, the former NS bit, from the 12th).
pub mod flags {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
    pub const ECE: u16 = 0x40;
    pub const CWR: u16 = 0x80;
    pub const AE: u16 = 0x100;
}

/// One TCP segment as seen at an attach point (or read from a capture file).
///
/// Addresses are in network byte order; an IPv4 address sits in the first four
/// bytes of `src`/`dst`. Every other integer is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRecord {
    /// Kernel: `CLOCK_BOOTTIME` nanoseconds. Capture files: 0 (the reader keeps
    /// the file's own timestamp beside the record).
    pub ts_ns: u64,
    /// Interface index the frame was seen on (0 for capture files).
    pub ifindex: u32,
    /// Length of the frame on the wire, link header included.
    pub wire_len: u32,
    pub seq: u32,
    pub ack: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub window: u16,
    pub urg_ptr: u16,
    /// IPv4 total length, or 40 + the IPv6 payload length, from the header.
    pub ip_total_len: u32,
    /// Bytes on the wire from the start of the IP header to the end of the frame.
    pub l3_wire_len: u32,
    /// Bytes captured from the start of the IP header (equal to `l3_wire_len`
    /// for live frames; smaller for a capture cut by its snapshot length).
    pub l3_cap_len: u32,
    /// Offset of the TCP header from the start of the IP header.
    pub l4_off: u16,
    /// See [`flags`].
    pub tcp_flags: u16,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// IPv4 flags and fragment offset as in the header; for IPv6 the fragment
    /// header's offset and M bit, when one was walked.
    pub ip_frag: u16,
    /// IPv6 flow label (0 for IPv4).
    pub ip6_flow: u32,
    /// [`RecordKind`].
    pub kind: u8,
    /// [`Direction`].
    pub direction: u8,
    /// 4 or 6.
    pub family: u8,
    /// TCP data offset in bytes (the 4-bit field times 4), as in the header.
    pub data_off: u8,
    /// IPv4 TOS or IPv6 traffic class.
    pub tos: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// [`Malformed`].
    pub malformed: u8,
    /// Option bytes copied into `options` (at most 40; fewer when the header
    /// says so or the capture ran out).
    pub opt_len: u8,
    /// IPv6 extension headers walked before TCP (at most [`MAX_EXT`] listed).
    pub ext_count: u8,
    /// Their next-header numbers, in order (0 hop-by-hop, 43 routing,
    /// 44 fragment, 60 destination options).
    pub ext: [u8; MAX_EXT],
    pub _pad: [u8; 3],
    pub options: [u8; MAX_OPTIONS],
}

const _: () = assert!(core::mem::size_of::<PacketRecord>() == RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<PacketRecord>() == 8);

/// Most bytes of IPv6 extension headers carried after a record: the
/// longest single header, (255 + 1) * 8.
pub const MAX_EXT_BYTES: usize = 2048;

/// Bytes of [`ExtTail`] before its `bytes`.
pub const EXT_TAIL_HEAD: usize = 8;

/// The bytes of an IPv6 frame's extension headers, from the end of the
/// IPv6 header to the TCP header, as far as they were captured (and at most
/// [`MAX_EXT_BYTES`]). A record whose frame has extension headers is
/// followed by its tail in the same ring-buffer entry, cut after `len`
/// bytes: the entry is `RECORD_SIZE + EXT_TAIL_HEAD + len` bytes long (see
/// [`ExtRecord`]). Other records are [`RECORD_SIZE`] bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtTail {
    /// Bytes of `bytes` that hold the headers (at most [`MAX_EXT_BYTES`]).
    pub len: u16,
    pub _pad: [u8; 6],
    /// The headers, from the first one's next-header byte on.
    pub bytes: [u8; MAX_EXT_BYTES],
}

const _: () = assert!(core::mem::size_of::<ExtTail>() == EXT_TAIL_HEAD + MAX_EXT_BYTES);

impl ExtTail {
    pub const fn empty() -> Self {
        Self { len: 0, _pad: [0; 6], bytes: [0; MAX_EXT_BYTES] }
    }

    /// The headers' bytes that were captured (empty when there are none).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(MAX_EXT_BYTES)]
    }
}

/// A record and its extension headers, as built before being sent (the
/// kernel builds it in per-CPU memory and sends its first bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtRecord {
    pub rec: PacketRecord,
    pub tail: ExtTail,
}

const _: () = assert!(core::mem::size_of::<ExtRecord>() == RECORD_SIZE + EXT_TAIL_HEAD + MAX_EXT_BYTES);
const _: () = assert!(core::mem::align_of::<ExtRecord>() == 8);

impl PacketRecord {
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            ifindex: 0,
            wire_len: 0,
            seq: 0,
            ack: 0,
            src: [0; 16],
            dst: [0; 16],
            sport: 0,
            dport: 0,
            window: 0,
            urg_ptr: 0,
            ip_total_len: 0,
            l3_wire_len: 0,
            l3_cap_len: 0,
            l4_off: 0,
            tcp_flags: 0,
            ip_id: 0,
            ip_frag: 0,
            ip6_flow: 0,
            kind: 0,
            direction: 0,
            family: 0,
            data_off: 0,
            tos: 0,
            ttl: 0,
            malformed: 0,
            opt_len: 0,
            ext_count: 0,
            ext: [0; MAX_EXT],
            _pad: [0; 3],
            options: [0; MAX_OPTIONS],
        }
    }

    /// Bytes of the TCP header and payload that were captured.
    pub fn tcp_cap_len(&self) -> u32 {
        self.l3_cap_len.saturating_sub(self.l4_off as u32)
    }

    /// The TCP segment length (header and payload) the IP header claims.
    pub fn tcp_seg_len(&self) -> u32 {
        self.ip_total_len.saturating_sub(self.l4_off as u32)
    }

    /// Option bytes the header claims (data offset - 20), when the offset is sane.
    pub fn header_opt_len(&self) -> u32 {
        (self.data_off as u32).saturating_sub(20)
    }

    pub fn options(&self) -> &[u8] {
        let n = (self.opt_len as usize).min(MAX_OPTIONS);
        &self.options[..n]
    }
}

impl Default for PacketRecord {
    fn default() -> Self {
        Self::zeroed()
    }
}

macro_rules! u8_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr),+ $(,)? }) => {
        $(#[$m])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v = $n),+ }

        impl TryFrom<u8> for $name {
            type Error = u8;
            fn try_from(v: u8) -> Result<Self, u8> {
                match v { $($n => Ok(Self::$v),)+ other => Err(other) }
            }
        }
    };
}

u8_enum!(
    /// What a record is for.
    RecordKind {
        /// A packet that passed the filter: printed as a packet line.
        Packet = 1,
        /// Sent only because it changes a connection's state (the flag filter
        /// hides it); never printed as a packet line.
        StateOnly = 2,
    }
);

u8_enum!(
    /// Where the frame was seen.
    Direction {
        /// Capture files do not say.
        Unknown = 0,
        Ingress = 1,
        Egress = 2,
    }
);

u8_enum!(
    /// Why a frame is malformed. Index into the per-CPU malformed counters.
    Malformed {
        None = 0,
        /// Shorter than its link-layer header (not emitted).
        LinkTruncated = 1,
        /// IP header cut short (not emitted).
        IpTruncated = 2,
        /// IPv4 header length below 20, or a version that does not match the
        /// ethertype (not emitted).
        IpBadHeader = 3,
        /// IPv6 extension-header chain too long or cut short (not emitted).
        Ip6ExtChain = 4,
        /// TCP header cut before the end of its fixed 20 bytes (emitted).
        TcpTruncated = 5,
        /// TCP data offset below 5 words (emitted).
        TcpHdrTooShort = 6,
        /// TCP data offset beyond the segment the IP header describes (emitted).
        TcpHdrTooLong = 7,
        /// IP total length beyond the end of the frame (emitted).
        IpLenBeyondFrame = 8,
        /// TCP options cut by the end of the captured data (emitted).
        TcpOptionsTruncated = 9,
    }
);

/// Number of [`Malformed`] values (size of the malformed-counter array).
pub const MALFORMED_KINDS: usize = 10;

/// Indexes of the per-CPU event counters.
pub mod counter {
    /// Frames the program ran on.
    pub const FRAMES: u32 = 0;
    /// Frames with a TCP header (matched or not).
    pub const TCP: u32 = 1;
    /// TCP frames that passed the filter.
    pub const MATCHED: u32 = 2;
    /// Records written to the ring buffer.
    pub const EMITTED: u32 = 3;
    /// Records lost because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 4;
    /// IPv4 or IPv6 fragments other than the first (skipped).
    pub const LATER_FRAGMENTS: u32 = 5;
    /// Segments the flag filter hid but that change a connection's state, to
    /// be sent as state-only records. Every matched or state-only segment is
    /// either emitted or lost: `EMITTED + RINGBUF_FULL == MATCHED + STATE_ONLY`.
    pub const STATE_ONLY: u32 = 6;
    /// Connections entered in the connection map.
    pub const CONN_NEW: u32 = 7;
    /// Connections removed from it because they ended (RST, both FINs acked).
    pub const CONN_CLOSED: u32 = 8;
    /// Number of counters.
    pub const COUNT: u32 = 9;
}

/// All of one CPU's counters: the single entry of the kernel's per-CPU
/// `STATS` map, so that a frame costs one map lookup however many counters it
/// bumps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Indexed by [`counter`].
    pub counters: [u64; counter::COUNT as usize],
    /// Indexed by [`Malformed`].
    pub malformed: [u64; MALFORMED_KINDS],
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Stats {}
