//! What arrives on UDP port 4500 (RFC 3948 §2, RFC 7296 §2.23): IKE behind a
//! four-octet non-ESP marker, ESP starting with its non-zero SPI, or a one-octet
//! NAT-keepalive.

/// The non-ESP marker that precedes IKE messages on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// The NAT-keepalive payload (RFC 3948 §2.3).
pub const NAT_KEEPALIVE: u8 = 0xff;

/// Smallest ESP packet worth handing on: SPI and Sequence Number (RFC 4303 §2).
const ESP_HEADER_LEN: usize = 8;

/// A UDP 4500 datagram, classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// An IKE message, marker removed.
    Ike(&'a [u8]),
    /// An ESP packet, from the SPI on.
    Esp(&'a [u8]),
    /// A NAT-keepalive: ignore it.
    Keepalive,
    /// None of the above (too short for ESP, or an empty datagram): drop it.
    Invalid,
}

/// Classifies a datagram received on UDP port 4500 (RFC 3948 §2.2: a zero SPI
/// field is the non-ESP marker; §2.3: a single 0xFF octet is a keepalive).
pub fn classify(datagram: &[u8]) -> Datagram<'_> {
    match datagram {
        [NAT_KEEPALIVE] => Datagram::Keepalive,
        [0, 0, 0, 0, ike @ ..] => Datagram::Ike(ike),
        esp if esp.len() >= ESP_HEADER_LEN => Datagram::Esp(esp),
        _ => Datagram::Invalid,
    }
}

/// Appends the non-ESP marker; then emit the IKE message into the same buffer.
pub fn push_non_esp_marker(out: &mut Vec<u8>) {
    out.extend_from_slice(&NON_ESP_MARKER);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(&[0xff]), Datagram::Keepalive);
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Datagram::Ike(&[1, 2]));
        assert_eq!(classify(&[0, 0, 0, 0]), Datagram::Ike(&[]));
        let esp = [0xc0, 0, 0, 1, 0, 0, 0, 1, 0xaa];
        assert_eq!(classify(&esp), Datagram::Esp(&esp));
        assert_eq!(classify(&[0xc0, 0, 0, 1]), Datagram::Invalid);
        assert_eq!(classify(&[]), Datagram::Invalid);
        assert_eq!(classify(&[0xfe]), Datagram::Invalid);
        assert_eq!(classify(&[0, 0, 0]), Datagram::Invalid);
        let mut out = Vec::new();
        push_non_esp_marker(&mut out);
        assert_eq!(out, [0, 0, 0, 0]);
    }
}
