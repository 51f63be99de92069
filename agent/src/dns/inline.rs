//! The cold path's first query, sent inline: with a single server, the
//! IPSECKEY query leaves from a fresh marked UDP socket before the caller's
//! next step ([`KeyResolver::send_query`]), and its answer is read there
//! ([`KeyResolver::answer`]); anything but a whole answer in time falls back
//! to hickory's pool ([`KeyResolver::lookup_name`]).

use std::io;
use std::net::SocketAddr;

use hickory_resolver::proto::op::{Message, MessageType};
use hickory_resolver::proto::rr::Name;
use socket2::{Protocol, Type};

use super::{
    IPSECKEY, KeyLookup, KeyResolver, MAX_UDP_ANSWER, classify_validated, marked_socket,
    query_message,
};

/// A query already sent over UDP to the first server; its answer is read by
/// [`KeyResolver::answer`].
#[derive(Debug)]
pub struct SentQuery {
    socket: tokio::net::UdpSocket,
    id: u16,
    name: Name,
    owner: String,
}

impl KeyResolver {
    /// Sends the IPSECKEY query for `owner` to the first server now, from a
    /// fresh socket (a random port, RFC 5452 §9.2) connected to it, so that
    /// only that server's datagrams reach it; the ID is random too. No task,
    /// no pool: the query leaves before the caller's next step. Must be
    /// called inside the tokio runtime. Only with a single server: with
    /// several, the pool's server selection and failover are worth its cost.
    pub fn send_query(&self, owner: &str) -> io::Result<SentQuery> {
        let [server] = self.servers[..] else {
            return Err(io::Error::other("several DNS servers"));
        };
        let name = Name::from_ascii(owner)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if self
            .validator
            .as_ref()
            .is_some_and(|v| !v.known_without_chain(&name))
        {
            return Err(io::Error::other("validating DNSSEC"));
        }
        let mut message = query_message(name.clone());
        let mut id = [0u8; 2];
        getrandom::fill(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
        message.metadata.id = u16::from_ne_bytes(id);
        let bytes = message
            .to_vec()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = marked_socket(&server, Type::DGRAM, Protocol::UDP, self.mark)?;
        s.bind(&local.into())?;
        s.connect(&server.into())?;
        s.send(&bytes)?;
        Ok(SentQuery {
            socket: tokio::net::UdpSocket::from_std(s.into())?,
            id: message.metadata.id,
            name,
            owner: owner.to_owned(),
        })
    }

    /// The answer to a [`SentQuery`]. A truncated answer, no answer within
    /// half the timeout, or a socket error: the lookup is made again through
    /// the pool (other servers, TCP).
    pub async fn answer(&self, q: SentQuery) -> KeyLookup {
        let direct = async {
            let mut buf = vec![0u8; MAX_UDP_ANSWER.max(4096)];
            loop {
                let len = q.socket.recv(&mut buf).await.ok()?;
                let Ok(response) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let same_question = response
                    .queries
                    .first()
                    .is_some_and(|x| x.name() == &q.name && u16::from(x.query_type()) == IPSECKEY);
                if response.metadata.id != q.id
                    || response.metadata.message_type != MessageType::Response
                    || !same_question
                {
                    continue; // not the answer to this query
                }
                if response.metadata.truncation {
                    return None;
                }
                // With a validator, only names without a chain come this way.
                let state = if self.validator.is_some() {
                    oemesh_core::oe::Dnssec::Indeterminate
                } else {
                    self.ad_state(response.metadata.authentic_data)
                };
                return Some(classify_validated(&response, &q.owner, state));
            }
        };
        match tokio::time::timeout(self.timeout / 2, direct).await {
            Ok(Some(answer)) => answer,
            _ => self.lookup_name(&q.owner).await,
        }
    }
}
