//! NAT detection (RFC 7296 §2.23): the NAT_DETECTION_SOURCE_IP and
//! NAT_DETECTION_DESTINATION_IP notifications of IKE_SA_INIT.
//!
//! Each carries `SHA-1(SPIi | SPIr | IP address | port)` of the sender's
//! source or destination as the sender sees it (SPIr is zero in the request).
//! With `force_udp_encap` this host sends a source hash that cannot match, so
//! the peer believes this host is behind a NAT and puts ESP in UDP 4500
//! (what strongSwan's `encap = yes` does). Both sides move to UDP 4500 after
//! IKE_SA_INIT whenever the peer sent NAT detection notifies.

use std::net::{IpAddr, SocketAddr};

use sha1::{Digest, Sha1};

use crate::ike::message::{Notify, NotifyType};

/// `SHA-1(SPIi | SPIr | IP | port)` (§2.23).
pub fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().into()
}

/// The two NAT detection notifies for a message from `local` to `remote`.
/// `force` replaces the source hash by one of an address no packet comes from.
pub(crate) fn notifies(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr, force: bool) -> [Notify; 2] {
    let source = if force { SocketAddr::new(IpAddr::from([0u8; 4]), 0) } else { local };
    [
        Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, nat_hash(spi_i, spi_r, source).to_vec()),
        Notify::new(NotifyType::NAT_DETECTION_DESTINATION_IP, nat_hash(spi_i, spi_r, remote).to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_of_spis_address_and_port() {
        let addr: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let mut input = Vec::new();
        input.extend_from_slice(&1u64.to_be_bytes());
        input.extend_from_slice(&0u64.to_be_bytes());
        input.extend_from_slice(&[192, 0, 2, 1, 0x01, 0xf4]);
        let expected: [u8; 20] = Sha1::digest(&input).into();
        assert_eq!(nat_hash(1, 0, addr), expected);
        let [src, dst] = notifies(1, 0, addr, "192.0.2.2:500".parse().unwrap(), true);
        assert_ne!(src.data, expected.to_vec());
        assert_eq!(dst.ty, NotifyType::NAT_DETECTION_DESTINATION_IP);
    }
}
