//! The Nonce payload (RFC 7296 §3.9): Nonce Data, 16 to 256 octets.
//!
//! The size rule is the state machine's to enforce (it knows whether to answer
//! INVALID_SYNTAX); the codec takes any length.

use std::fmt;

/// Nonce Data.
#[derive(Clone, PartialEq, Eq)]
pub struct Nonce(pub Vec<u8>);

impl Nonce {
    /// Takes the whole body.
    pub fn parse(body: &[u8]) -> Self {
        Self(body.to_vec())
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        let n = Nonce::parse(&[1, 2, 3]);
        assert_eq!(n, Nonce(vec![1, 2, 3]));
        let mut out = Vec::new();
        n.emit(&mut out);
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(n.buffer_len(), 3);
    }
}
