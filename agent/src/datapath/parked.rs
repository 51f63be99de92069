//! ESP datagrams that arrived before their SA: the few that a peer sends
//! right after its IKE_AUTH response, which overtake this host's handling of
//! that response (a responder's held packets, a crossing flow, or a reply to a
//! packet that went out in clear under `negotiation = "passthrough"`). They
//! wait here, a bounded handful, and the control plane opens them as soon as
//! it installs the SA they name; anything else falls out, oldest first.
//!
//! Parking trusts nothing: a parked datagram is only ever opened by the SA
//! whose SPI it carries, which authenticates it, so garbage sent to fill the
//! slots costs at most the real datagrams it pushes out (which were lost
//! before this existed).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Datagrams kept at most.
const SLOTS: usize = 32;
/// Longer datagrams are not kept (one ESP packet of a 1500-byte path fits).
const MAX_LEN: usize = 2048;

/// One parked datagram.
#[derive(Debug)]
pub struct ParkedEsp {
    /// The SPI it names.
    pub spi: u32,
    /// Who sent it.
    pub from: SocketAddr,
    /// The whole ESP datagram.
    pub data: Vec<u8>,
}

/// What [`Parked::park`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parking {
    /// Kept, with room to spare.
    Kept,
    /// Kept; the oldest parked datagram was dropped for it.
    KeptDroppingOldest,
    /// Too long to keep: dropped.
    TooLong,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Parked {
    slots: Mutex<VecDeque<ParkedEsp>>,
}

impl Parked {
    /// Keeps a copy of `data` (an ESP datagram naming `spi`, unknown now).
    /// Once full, the oldest one's buffer is reused: no allocation then.
    pub fn park(&self, spi: u32, from: SocketAddr, data: &[u8]) -> Parking {
        if data.len() > MAX_LEN {
            return Parking::TooLong;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = if slots.len() >= SLOTS {
            slots.pop_front()
        } else {
            None
        };
        let (mut buf, how) = match oldest {
            Some(old) => (old.data, Parking::KeptDroppingOldest),
            None => (Vec::with_capacity(MAX_LEN), Parking::Kept),
        };
        buf.clear();
        buf.extend_from_slice(data);
        slots.push_back(ParkedEsp {
            spi,
            from,
            data: buf,
        });
        how
    }

    /// Takes the datagrams naming `spi`, oldest first.
    pub fn take(&self, spi: u32) -> Vec<ParkedEsp> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !slots.iter().any(|p| p.spi == spi) {
            return Vec::new();
        }
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *slots)
            .into_iter()
            .partition(|p| p.spi == spi);
        *slots = kept.into();
        taken
    }
}

/// Opens the datagrams parked for `spi` (just installed) into `tun`, in the
/// order they came; returns how many there were (flush `tun` if any).
pub fn open_into(dp: &super::DataPath, spi: u32, tun: &mut crate::net::tun::TunWriter) -> usize {
    let mut parked = dp.parked.take(spi);
    for p in parked.iter_mut() {
        crate::driver::inbound_esp(dp, p.from, &mut p.data, tun);
    }
    parked.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_handful_and_gives_back_by_spi_in_order() {
        let p = Parked::default();
        let from: SocketAddr = "192.0.2.1:4500".parse().unwrap();
        assert_eq!(p.park(7, from, b"a"), Parking::Kept);
        assert_eq!(p.park(8, from, b"b"), Parking::Kept);
        assert_eq!(p.park(7, from, b"c"), Parking::Kept);
        assert_eq!(p.park(7, from, &[0; MAX_LEN + 1]), Parking::TooLong);
        let got: Vec<Vec<u8>> = p.take(7).into_iter().map(|e| e.data).collect();
        assert_eq!(got, vec![b"a".to_vec(), b"c".to_vec()]);
        assert!(p.take(7).is_empty());
        for i in 0..SLOTS as u32 {
            p.park(100 + i, from, b"x");
        }
        // 8's datagram was the oldest: it made room for the last one.
        assert!(p.take(8).is_empty());
        assert_eq!(p.take(100 + SLOTS as u32 - 1).len(), 1);
    }
}
