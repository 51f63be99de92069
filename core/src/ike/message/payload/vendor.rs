//! The Vendor ID payload (RFC 7296 §3.12): an opaque identifier.

/// Vendor ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorId(pub Vec<u8>);

impl VendorId {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        // strongSwan's vendor ID is the MD5 of "strongSwan"; any bytes do here.
        let v = VendorId::parse(b"oemesh");
        let mut out = Vec::new();
        v.emit(&mut out);
        assert_eq!(out, b"oemesh");
        assert_eq!(v.buffer_len(), 6);
    }
}
