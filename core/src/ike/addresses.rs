//! Where a peer is, and which address it uses inside its SAs: a NAT
//! rebinding seen in authenticated ESP (RFC 7296 §2.23, RFC 3948 §2.2), and
//! the pool of addresses given to initiators behind a NAT (§3.15).
//!
//! Who vouches for a new port: the ESP packet's ICV, checked by the data path
//! with the CHILD SA's key, and its sequence number, inside the replay window
//! and not seen before. The address itself never changes (it is fixed at
//! IKE_SA_INIT, [`crate::trust`]); the port only for a peer whose NAT
//! detection said it is behind a NAT.

use std::net::{IpAddr, SocketAddr};

use crate::ike::endpoint::{Endpoint, SaHandle};
use crate::ike::event::Event;
use crate::ike::state::State;

impl Endpoint {
    /// Authenticated ESP of one of `sa`'s CHILD SAs came from `from`, not from
    /// where the SA sends: the peer's NAT gave it a new port. Moves the IKE SA
    /// there (and, through [`Event::PeerMoved`], its CHILD SAs) when the peer
    /// is behind a NAT and only the port differs; returns whether it moved.
    pub fn esp_moved(&mut self, sa: SaHandle, from: SocketAddr) -> bool {
        let Some(ike) = self.handles.get(&sa).and_then(|id| self.sas.get_mut(id)) else {
            return false;
        };
        let movable = ike.peer_behind_nat
            && matches!(ike.state, State::Established)
            && from.ip().to_canonical() == ike.remote.ip().to_canonical()
            && from.port() != ike.remote.port();
        if !movable {
            return false;
        }
        ike.remote = from;
        if ike.announced {
            self.out
                .events
                .push_back(Event::PeerMoved { sa, remote: from });
        }
        true
    }

    /// The address and port of this host that the IKE SA `sa` speaks from
    /// (fixed at IKE_SA_INIT, RFC 7296 §2.23), if it exists.
    pub fn local_of(&self, sa: SaHandle) -> Option<SocketAddr> {
        let id = self.handles.get(&sa)?;
        self.sas.get(id).map(|ike| ike.local)
    }

    /// Whether `a` is in this host's pool of addresses for initiators behind
    /// a NAT: only an SA may carry packets to it, never a decision of its own.
    pub fn is_pool_address(&self, a: IpAddr) -> bool {
        self.pool.contains(a.to_canonical())
    }
}
