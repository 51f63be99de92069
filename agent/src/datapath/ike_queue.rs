//! IKE messages on their way from the UDP workers to the control plane, and
//! the cookie replies the workers send themselves (RFC 7296 §2.6).
//!
//! Each IKE message a worker reads goes through core's
//! [`Cookies::triage`] (a read of the header and the payload headers, with
//! the secrets the engine shares):
//!
//! - anything but an IKE_SA_INIT request (IKE_AUTH, the exchanges of
//!   established SAs, responses), and a request that returns a valid cookie,
//!   goes to the **priority** queue;
//! - a cookie-less request while the engine does not ask for cookies goes to
//!   the **other** queue;
//! - while it does, a cookie-less request is answered here, with no copy and
//!   no state: the replies of one receive batch leave together
//!   (`sendmmsg`), each source (an address, an IPv6 /64) at most
//!   `ike.cookie_rate` a second ([`ReplyLimiter`]), none larger than its
//!   request.
//!
//! The control plane always takes the priority queue first, so a flood of
//! cookie-less requests can fill only the other one: requests that carry a
//! cookie and IKE_AUTH are never shed while cookie-less ones are.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use oemesh_core::ike::cookie::{CookieReply, Cookies, ReplyLimiter, Triage};
use oemesh_core::ike::udp_encap::NON_ESP_MARKER;
use tokio::sync::mpsc;

use crate::datapath::IkeDatagram;
use crate::metrics::{Metrics, PacketOutcome};
use crate::net::udp::UdpEndpoint;

/// The workers' side: the two queues, the cookie secrets and the reply limit.
#[derive(Debug)]
pub struct IkeOutbox {
    priority: mpsc::Sender<IkeDatagram>,
    rest: mpsc::Sender<IkeDatagram>,
    cookies: Arc<Cookies>,
    limiter: Mutex<ReplyLimiter>,
}

/// The control plane's side: [`IkeInbox::recv`] takes the priority queue first.
#[derive(Debug)]
pub struct IkeInbox {
    priority: mpsc::Receiver<IkeDatagram>,
    rest: mpsc::Receiver<IkeDatagram>,
}

/// Two queues of `capacity` each, cookies from `cookies` (the engine's), at
/// most `cookie_rate` replies a second to one source.
pub fn queues(capacity: usize, cookies: Arc<Cookies>, cookie_rate: u32) -> (IkeOutbox, IkeInbox) {
    let (priority_tx, priority) = mpsc::channel(capacity);
    let (rest_tx, rest) = mpsc::channel(capacity);
    let outbox = IkeOutbox {
        priority: priority_tx,
        rest: rest_tx,
        cookies,
        limiter: Mutex::new(ReplyLimiter::new(cookie_rate)),
    };
    (outbox, IkeInbox { priority, rest })
}

impl IkeInbox {
    /// The next message, priority first; `None` once the workers are gone.
    pub async fn recv(&mut self) -> Option<IkeDatagram> {
        tokio::select! {
            biased;
            Some(d) = self.priority.recv() => Some(d),
            Some(d) = self.rest.recv() => Some(d),
            else => None,
        }
    }

    /// The next message queued now, priority first.
    pub fn try_recv(&mut self) -> Option<IkeDatagram> {
        self.priority
            .try_recv()
            .or_else(|_| self.rest.try_recv())
            .ok()
    }
}

impl IkeOutbox {
    /// One IKE message (without the non-ESP marker) that arrived at `local`
    /// from `remote`: queued, dropped, or its cookie reply added to `replies`.
    /// Everything dropped is counted.
    pub fn offer(
        &self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        message: &[u8],
        replies: &mut CookieReplies,
        metrics: &Metrics,
    ) {
        let queue = match self.cookies.triage(now, message, remote.ip()) {
            Triage::Priority => &self.priority,
            Triage::Sheddable => &self.rest,
            Triage::Cookie(reply) => return replies.pending.push((local.ip(), remote, reply)),
            Triage::Unanswerable => {
                metrics.cookie_unanswerable();
                return metrics.packet(PacketOutcome::Dropped, message.len());
            }
        };
        let d = IkeDatagram {
            local,
            remote,
            message: message.to_vec(),
        };
        if queue.try_send(d).is_err() {
            tracing::trace!(from = %remote, "IKE dropped: control plane busy");
            metrics.ike_queue_drop();
            metrics.packet(PacketOutcome::Dropped, message.len());
        }
    }
}

/// The cookie replies of one receive batch, waiting to be sent together.
/// Reused from batch to batch (nothing allocated per datagram).
#[derive(Debug, Default)]
pub struct CookieReplies {
    /// (local address the request came to, its source, the reply).
    pending: Vec<(IpAddr, SocketAddr, CookieReply)>,
}

impl CookieReplies {
    /// Sends what is pending from `socket` (with the non-ESP marker when
    /// `natt`), each from the address its request came to, within the
    /// per-source limit; counts what went and what did not.
    pub fn flush(&mut self, outbox: &IkeOutbox, socket: &UdpEndpoint, natt: bool, m: &Metrics) {
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        {
            let mut limiter = outbox
                .limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = limiter.limited;
            self.pending
                .retain(|(_, to, _)| limiter.allow(now, to.ip()));
            let limited = limiter.limited - before;
            if limited > 0 {
                m.cookie_replies_limited_add(limited);
                m.packets(PacketOutcome::Dropped, limited, 0);
            }
        }
        // Replies leave from the address their request came to: one
        // `sendmmsg` run per local address (a host has one or two).
        self.pending.sort_unstable_by_key(|(local, ..)| *local);
        let prefix: &[u8] = if natt { &NON_ESP_MARKER } else { &[] };
        for run in self.pending.chunk_by(|a, b| a.0 == b.0) {
            let local = run[0].0;
            let datagrams: Vec<(SocketAddr, &[u8])> = run
                .iter()
                .map(|(_, to, reply)| (*to, reply.bytes()))
                .collect();
            match socket.try_send_many(Some(local), prefix, &datagrams) {
                Ok(sent) => {
                    m.ike_cookies_sent_add(sent as u64);
                    let lost = (datagrams.len() - sent) as u64;
                    if lost > 0 {
                        m.packets(PacketOutcome::Dropped, lost, 0);
                    }
                }
                Err(e) => {
                    tracing::debug!("UDP {}: cookie replies: {e}", socket.port());
                    m.packets(PacketOutcome::Dropped, datagrams.len() as u64, 0);
                }
            }
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oemesh_core::ike::message::{
        ExchangeType, Flags, Header, Message, Nonce, Notify, NotifyType, Payload,
    };

    fn message(exchange: ExchangeType, spi_r: u64, cookie: Option<&[u8]>) -> Vec<u8> {
        let mut payloads = vec![Payload::Nonce(Nonce(vec![7; 64]))];
        if let Some(c) = cookie {
            payloads.insert(
                0,
                Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec())),
            );
        }
        let header = Header::new(1, spi_r, exchange, Flags::INITIATOR, 0);
        let mut out = Vec::new();
        Message::new(header, payloads).emit(&mut out);
        out
    }

    /// A flood of cookie-less IKE_SA_INIT fills only its own queue: IKE_AUTH
    /// and a request returning a valid cookie still get in, and come out first.
    #[tokio::test]
    async fn cookieless_requests_never_crowd_out_the_rest() {
        let cookies = Arc::new(Cookies::with_seed([3; 32]));
        let (outbox, mut inbox) = queues(4, cookies.clone(), 1000);
        let metrics = Metrics::default();
        let mut replies = CookieReplies::default();
        let (local, remote): (SocketAddr, SocketAddr) = (
            "192.0.2.1:500".parse().unwrap(),
            "192.0.2.2:500".parse().unwrap(),
        );
        let now = Instant::now();
        let init = message(ExchangeType::IKE_SA_INIT, 0, None);
        for _ in 0..10 {
            outbox.offer(now, local, remote, &init, &mut replies, &metrics);
        }
        assert_eq!(
            metrics.ike_queue_drops(),
            6,
            "the flood's own queue is full"
        );
        let auth = message(ExchangeType::IKE_AUTH, 9, None);
        outbox.offer(now, local, remote, &auth, &mut replies, &metrics);
        // Under cookies, a bare request is answered here, not queued…
        cookies.set_required(true);
        outbox.offer(now, local, remote, &init, &mut replies, &metrics);
        assert_eq!(replies.pending.len(), 1);
        let Triage::Cookie(reply) = cookies.triage(now, &init, remote.ip()) else {
            panic!("no cookie");
        };
        // …and its return, carrying the cookie, is queued with priority.
        let cookie = &reply.bytes()[reply.bytes().len() - 33..];
        let back = message(ExchangeType::IKE_SA_INIT, 0, Some(cookie));
        outbox.offer(now, local, remote, &back, &mut replies, &metrics);
        assert_eq!(metrics.ike_queue_drops(), 6, "nothing else was shed");
        let first = inbox.recv().await.unwrap();
        assert_eq!(first.message, auth);
        assert_eq!(inbox.try_recv().unwrap().message, back);
        assert_eq!(inbox.try_recv().unwrap().message, init);
    }
}
