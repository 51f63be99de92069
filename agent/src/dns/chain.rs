//! [`ChainCache`]: the chain of trust's DNSKEY and DS answers, kept for their
//! TTL under the validator, bounded.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, Stream, StreamExt};
use hickory_resolver::net::{DnsError, DnsHandle, NetError, NoRecords};
use hickory_resolver::proto::op::{DnsRequest, DnsResponse};
use hickory_resolver::proto::rr::{Name, RecordType};

/// DNSKEY and DS answers kept at most.
pub const CHAIN_CACHE: usize = 1024;
/// A chain answer is kept at most this long, whatever its TTL.
const CHAIN_TTL_MAX: Duration = Duration::from_secs(3600);
/// A negative chain answer without an SOA is kept this long.
const CHAIN_TTL_NEGATIVE: Duration = Duration::from_secs(60);

/// A [`DnsHandle`] that keeps DNSKEY and DS answers for their TTL (at most
/// [`CHAIN_CACHE`] of them): the chain of trust is fetched once per TTL, not
/// once per lookup.
#[derive(Clone)]
pub(super) struct ChainCache<H> {
    inner: H,
    kept: Arc<Mutex<HashMap<(Name, RecordType), Kept>>>,
}

#[derive(Clone)]
struct Kept {
    until: Instant,
    result: Result<DnsResponse, NetError>,
}

impl<H> ChainCache<H> {
    /// Forgets every kept answer.
    pub(super) fn forget(&self) {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    pub(super) fn new(inner: H) -> Self {
        ChainCache {
            inner,
            kept: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// How long to keep a chain answer: its smallest TTL (the SOA minimum for a
/// denial), at most [`CHAIN_TTL_MAX`].
fn keep_for(result: &Result<DnsResponse, NetError>) -> Option<Duration> {
    let secs = match result {
        Ok(r) => r
            .answers
            .iter()
            .chain(r.authorities.iter())
            .map(|r| r.ttl)
            .min()?,
        Err(NetError::Dns(DnsError::NoRecordsFound(NoRecords { negative_ttl, .. }))) => {
            return Some(
                negative_ttl
                    .map(|t| Duration::from_secs(t.into()))
                    .unwrap_or(CHAIN_TTL_NEGATIVE)
                    .min(CHAIN_TTL_MAX),
            );
        }
        Err(_) => return None,
    };
    Some(Duration::from_secs(secs.into()).min(CHAIN_TTL_MAX))
}

impl<H: DnsHandle> DnsHandle for ChainCache<H> {
    type Response = Pin<Box<dyn Stream<Item = Result<DnsResponse, NetError>> + Send>>;
    type Runtime = H::Runtime;

    fn send(&self, request: DnsRequest) -> Self::Response {
        let chain = request.queries.first().and_then(|q| {
            matches!(q.query_type(), RecordType::DNSKEY | RecordType::DS)
                .then(|| (q.name().to_lowercase(), q.query_type()))
        });
        let Some(key) = chain else {
            return Box::pin(self.inner.send(request));
        };
        let now = Instant::now();
        {
            let kept = self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(k) = kept.get(&key)
                && k.until > now
            {
                return Box::pin(stream::once(futures_util::future::ready(k.result.clone())));
            }
        }
        let kept = self.kept.clone();
        Box::pin(self.inner.send(request).map(move |result| {
            if let Some(ttl) = keep_for(&result) {
                let mut kept = kept
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.len() >= CHAIN_CACHE {
                    let now = Instant::now();
                    kept.retain(|_, k| k.until > now);
                    if kept.len() >= CHAIN_CACHE {
                        kept.clear();
                    }
                }
                kept.insert(
                    key.clone(),
                    Kept {
                        until: Instant::now() + ttl,
                        result: result.clone(),
                    },
                );
            }
            result
        }))
    }
}
