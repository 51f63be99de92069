//! Sending held or stray packets in cleartext *around* the TUN: raw IP sockets
//! (`IPPROTO_RAW`, so the packet's own header is sent as is — IP_HDRINCL for
//! IPv4, and the same for IPv6) carrying the agent's fwmark, so the kernel
//! routes them by the main table like any other host traffic.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::ip;

/// IPPROTO_RAW (255): the caller supplies the IP header.
const IPPROTO_RAW: i32 = 255;

/// Raw sockets for IPv4 and IPv6 (either may be missing, e.g. IPv6 disabled).
#[derive(Debug)]
pub struct ClearSender {
    v4: Option<Socket>,
    v6: Option<Socket>,
}

fn raw(domain: Domain, fwmark: u32) -> io::Result<Socket> {
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))?;
    s.set_mark(fwmark)?;
    if domain == Domain::IPV4 {
        s.set_header_included_v4(true)?;
    } else {
        // Implied by IPPROTO_RAW on Linux; explicit where IPV6_HDRINCL exists.
        let _ = s.set_header_included_v6(true);
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

impl ClearSender {
    /// Opens both sockets with `fwmark`. Fails only if neither family works.
    pub fn new(fwmark: u32) -> io::Result<ClearSender> {
        let v4 = raw(Domain::IPV4, fwmark);
        let v6 = raw(Domain::IPV6, fwmark);
        match (v4, v6) {
            (Err(e), Err(_)) => Err(e),
            (v4, v6) => {
                if let Err(e) = &v6 {
                    tracing::debug!("no raw IPv6 socket for cleartext: {e}");
                }
                Ok(ClearSender {
                    v4: v4.ok(),
                    v6: v6.ok(),
                })
            }
        }
    }

    /// Sends one IP packet (header included) to its destination. Never blocks:
    /// a full socket buffer is an error (the caller counts a drop).
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let dst = ip::destination(packet)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP packet"))?;
        let socket = match dst {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "no raw socket for family"))?;
        socket.send_to(packet, &SocketAddr::new(dst, 0).into())?;
        Ok(())
    }
}
