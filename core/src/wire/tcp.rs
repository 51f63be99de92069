//! The TCP header (RFC 9293 §3.1), as far as receive coalescing reads and
//! writes it: ports, sequence and acknowledgment numbers, flags, options and
//! the checksum.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! |                        Sequence Number                        |
//! |                    Acknowledgment Number                      |
//! |  DOff | Rsrvd |C|E|U|A|P|R|S|F|             Window            |
//! |           Checksum            |         Urgent Pointer        |
//! |                    Options (DOff × 4 − 20 bytes)              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::{Error, be16, be32, put16};

/// The header without options.
pub const HEADER_LEN: usize = 20;

/// FIN.
pub const FIN: u8 = 0x01;
/// SYN.
pub const SYN: u8 = 0x02;
/// RST.
pub const RST: u8 = 0x04;
/// PSH.
pub const PSH: u8 = 0x08;
/// ACK.
pub const ACK: u8 = 0x10;

mod field {
    use std::ops::Range;
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const ACK: usize = 8;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: usize = 14;
    pub(super) const CHECKSUM: Range<usize> = 16..18;
}

/// A view of a TCP segment (the IP payload).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic unless
    /// [`Self::check_len`] passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer that holds a whole TCP header (see [`Self::check_len`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the fixed header and a data offset from 20 bytes up to the
    /// segment's length.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                what: "TCP",
                need: HEADER_LEN,
                have: len,
            });
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::HeaderLen {
                what: "TCP",
                len: header_len,
            });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Both ports' bytes, source first.
    #[inline]
    pub fn port_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SRC_PORT..field::SEQ]
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// The header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags octet (CWR … FIN); compare with [`ACK`], [`PSH`], ….
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Window.
    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The options: after the fixed header, up to the data offset.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<'a> TcpPacket<&'a [u8]> {
    /// The data after the header, borrowed from the buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ..field::SEQ + 4].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: u32) {
        self.buffer.as_mut()[field::ACK..field::ACK + 4].copy_from_slice(&ack.to_be_bytes());
    }

    /// Sets the header length (a multiple of 4 from 20 to 60), keeping the
    /// reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (u8::try_from(len / 4).unwrap_or(0) << 4);
    }

    /// Sets the flags octet.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the window.
    pub fn set_window(&mut self, window: u16) {
        put16(self.buffer.as_mut(), field::WINDOW, window);
    }

    /// Sets the checksum field (a full checksum, or with checksum offload
    /// the folded pseudo-header sum).
    #[inline]
    pub fn set_checksum(&mut self, sum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, sum);
    }

    /// The data after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_lengths() {
        let mut buf = [0u8; 28];
        let mut t = TcpPacket::new_unchecked(&mut buf[..]);
        t.set_src_port(1000);
        t.set_dst_port(2000);
        t.set_seq_number(0x0102_0304);
        t.set_ack_number(7);
        t.set_header_len(24);
        t.set_flags(ACK | PSH);
        t.set_window(500);
        t.set_checksum(0xbeef);
        t.payload_mut().fill(0xaa);
        let t = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (1000, 2000));
        assert_eq!(t.port_bytes(), &[0x03, 0xe8, 0x07, 0xd0]);
        assert_eq!((t.seq_number(), t.ack_number()), (0x0102_0304, 7));
        assert_eq!(
            (t.header_len(), t.flags(), t.window()),
            (24, ACK | PSH, 500)
        );
        assert_eq!(t.checksum(), 0xbeef);
        assert_eq!(t.options(), &[0; 4]);
        assert_eq!(t.payload(), &[0xaa; 4]);
        // Data offset beyond the segment, below the fixed header, or a
        // segment shorter than 20 bytes.
        assert!(matches!(
            TcpPacket::new_checked(&buf[..23]),
            Err(Error::HeaderLen { len: 24, .. })
        ));
        buf[12] = 0x40;
        assert!(matches!(
            TcpPacket::new_checked(&buf[..]),
            Err(Error::HeaderLen { len: 16, .. })
        ));
        assert!(matches!(
            TcpPacket::new_checked(&buf[..19]),
            Err(Error::Truncated { need: 20, .. })
        ));
    }
}
