//! What parsing one message may allocate (issue 11: "bounded parsing before
//! the cookie").
//!
//! A responder parses every IKE_SA_INIT request before it knows whether the
//! sender is real (RFC 7296 §2.6 cookies come after parsing), and every
//! IKE_AUTH request of a half-open SA, so the memory a parse takes is chosen
//! by whoever sends the datagram. Each parse therefore gets a [`Budget`] of
//! [`parse_allocation_bound`] bytes for its input, and charges it *before*
//! every allocation: exact-capacity vectors of payloads, proposals,
//! transforms, attributes and selectors, and each copy of bytes. A message
//! whose values would need more is refused with [`Error::AllocationLimit`]
//! before the allocation is made. Charges are never given back, so the sum of
//! charges bounds the peak as well as the total.
//!
//! Real messages stay well inside the bound: strongSwan's IKE_SA_INIT and
//! IKE_AUTH messages take 1.1 to 4.2 times their size, opened ones
//! included (`core/tests/ike_bounds.rs`).

use std::mem::size_of;

use super::Error;

/// Bytes of heap a parse may take per byte of input.
pub const PARSE_ALLOC_PER_BYTE: usize = 4;

/// Bytes of heap a parse may take beyond [`PARSE_ALLOC_PER_BYTE`] per byte.
///
/// Parsed values cost more than their bytes: a proposal is a 56-byte value,
/// a transform 32 bytes and its Key Length attribute 32 more, so a real IKE
/// proposal (AES-GCM with its key length, a PRF, a group: 36 bytes) is 184
/// bytes of values, 5.1 times its size. Messages dilute that with KE, Nonce
/// and the header; 4 KiB is what the largest offer this codec takes
/// ([`super::payload::MAX_PROPOSALS`] such proposals) needs beyond 4 × its
/// size, so that no real message is refused for its shape
/// (`core/tests/ike_bounds.rs`, `largest_real_offers_fit`: 64 IKE proposals
/// in an IKE_SA_INIT, 64 ESP proposals in an opened IKE_AUTH).
pub const PARSE_ALLOC_SLACK: usize = 4096;

/// The most heap that [`super::Message::parse`] or
/// [`super::Message::parse_protected`] holds at once for an input of `len`
/// bytes: `4 × len + 4 KiB`, whatever the bytes are.
pub const fn parse_allocation_bound(len: usize) -> usize {
    len.saturating_mul(PARSE_ALLOC_PER_BYTE)
        .saturating_add(PARSE_ALLOC_SLACK)
}

/// The bytes a parse may still allocate.
#[derive(Debug)]
pub(crate) struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    /// The budget for parsing `len` bytes of input.
    pub(crate) fn for_input(len: usize) -> Self {
        let limit = parse_allocation_bound(len);
        Self { left: limit, limit }
    }

    /// A budget of exactly `limit` bytes (tests of the charging itself).
    #[cfg(test)]
    pub(crate) fn with_limit(limit: usize) -> Self {
        Self { left: limit, limit }
    }

    /// Takes `bytes` from the budget, or refuses.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), Error> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(Error::AllocationLimit { limit: self.limit }),
        }
    }

    /// An empty vector with room for exactly `n` values, charged.
    pub(crate) fn vec<T>(&mut self, n: usize) -> Result<Vec<T>, Error> {
        self.charge(n.saturating_mul(size_of::<T>()))?;
        Ok(Vec::with_capacity(n))
    }

    /// A copy of `bytes`, charged.
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        self.charge(bytes.len())?;
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_the_limit() {
        let mut b = Budget::for_input(10);
        assert_eq!(parse_allocation_bound(10), 4136);
        assert_eq!(b.copy(&[1; 64]).unwrap(), [1; 64]);
        let v: Vec<u64> = b.vec(509).unwrap();
        assert!(v.capacity() >= 509);
        assert_eq!(b.left, 0);
        assert_eq!(b.charge(0), Ok(()));
        assert_eq!(b.charge(1), Err(Error::AllocationLimit { limit: 4136 }));
        assert_eq!(
            b.vec::<u64>(usize::MAX).unwrap_err(),
            Error::AllocationLimit { limit: 4136 }
        );
        assert_eq!(parse_allocation_bound(usize::MAX), usize::MAX);
    }
}
