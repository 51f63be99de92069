//! The Internet checksum (RFC 1071) of IPv4 headers, TCP, UDP and ICMP:
//! the ones' complement of the ones' complement sum of 16-bit big-endian
//! words, an odd last byte padded with zero.
//!
//! [`Checksum`] is the running sum, so a checksum can cover several slices
//! (a pseudo-header, a header, a payload elsewhere) in any split, odd lengths
//! included. [`Checksum::fold`] is the folded sum (what a virtio "checksum
//! partial" header field holds); [`Checksum::finish`] its complement, the value
//! for a checksum field. Over data that holds a correct checksum, `finish` is 0.

/// A running RFC 1071 sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Native-order 16-bit words, not yet folded. The ones' complement sum of
    /// byte-swapped words is the byte swap of the sum (RFC 1071 §2(B)), so
    /// the byte order is fixed once, in [`Self::fold`].
    sum: u64,
    /// Whether an odd number of bytes has been added: the next slice's first
    /// byte is the low half of a word.
    odd: bool,
}

impl Checksum {
    /// The empty sum.
    pub const fn new() -> Self {
        Checksum { sum: 0, odd: false }
    }

    /// Adds `data` as if it followed everything added so far.
    #[inline]
    #[must_use]
    pub fn add_bytes(self, data: &[u8]) -> Self {
        let words = sum_native(data);
        // A slice that starts at an odd offset has its words' bytes swapped
        // relative to the whole (the same property).
        let sum = if self.odd {
            self.sum + u64::from(fold64(words).swap_bytes())
        } else {
            self.sum + words
        };
        Checksum {
            sum,
            odd: self.odd != (data.len() % 2 == 1),
        }
    }

    /// The folded sum of the big-endian words (0 only if every byte added was zero).
    #[inline]
    pub fn fold(self) -> u16 {
        let native = fold64(self.sum);
        if cfg!(target_endian = "little") {
            native.swap_bytes()
        } else {
            native
        }
    }

    /// The checksum field's value: the complement of [`Self::fold`].
    #[inline]
    pub fn finish(self) -> u16 {
        !self.fold()
    }
}

/// The checksum of one buffer: `Checksum::new().add_bytes(data).finish()`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

/// The sum of the TCP/UDP pseudo-header: IPv4 (RFC 793 §3.1, RFC 768) or IPv6
/// (RFC 8200 §8.1) addresses, by their length, the protocol (next header) and
/// the upper-layer length. Both forms sum to the same for lengths below 64 KiB.
#[inline]
pub fn pseudo_header(src: &[u8], dst: &[u8], protocol: u8, len: u32) -> Checksum {
    Checksum::new()
        .add_bytes(src)
        .add_bytes(dst)
        .add_bytes(&len.to_be_bytes())
        .add_bytes(&[0, 0, 0, protocol])
}

/// Native-order 32-bit words summed in 64 bits (no carry is lost below 16 GiB);
/// a tail of 1–3 bytes padded with zeros. Written so that the compiler
/// vectorises it (SSE2, measured here: 35–50 ns for 1,420 bytes, against
/// ~73 ns for big-endian words and ~74 ns for four 64-bit accumulators that
/// count their carries).
#[inline]
fn sum_native(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    let mut sum: u64 = words
        .by_ref()
        .map(|w| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .sum();
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 4];
        last[..tail.len()].copy_from_slice(tail);
        sum += u64::from(u32::from_ne_bytes(last));
    }
    sum
}

/// Folds with end-around carries to 16 bits.
#[inline]
fn fold64(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 word by word, as the test kit used to write it.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u64 = data
            .chunks(2)
            .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Checksum::new().add_bytes(&data).fold(), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
        assert_eq!(checksum(&[0xff]), !0xff00, "odd length pads with zero");
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(Checksum::new().fold(), 0);
    }

    #[test]
    fn known_headers() {
        // An IPv4 header (Wikipedia's example, checksum b861 in place): 0.
        let ip = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&ip), 0);
        let mut zeroed = ip;
        zeroed[10..12].fill(0);
        assert_eq!(checksum(&zeroed), 0xb861);
        // An ICMP echo request, type 8, id 0x0001, seq 0x0001: !0x0802.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), !0x0802);
    }

    #[test]
    fn split_buffers_and_pseudo_header() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = checksum(&data);
        for (a, b) in [(0, 1), (1, 2), (3, 7), (500, 501), (1000, 1001), (7, 1000)] {
            let sum = Checksum::new()
                .add_bytes(&data[..a])
                .add_bytes(&data[a..b])
                .add_bytes(&data[b..]);
            assert_eq!(sum.finish(), whole, "split at {a} and {b}");
        }
        let v4 = pseudo_header(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, 290);
        let flat = [10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0x01, 0x22];
        assert_eq!(v4.finish(), checksum(&flat));
    }

    proptest! {
        #[test]
        fn agrees_with_the_word_by_word_sum(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cut in any::<proptest::sample::Index>(),
        ) {
            prop_assert_eq!(checksum(&data), reference(&data));
            let cut = cut.index(data.len() + 1);
            let split = Checksum::new().add_bytes(&data[..cut]).add_bytes(&data[cut..]);
            prop_assert_eq!(split.finish(), reference(&data));
        }
    }
}
