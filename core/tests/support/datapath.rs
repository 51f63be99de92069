//! A toy data path: ESP SAs installed and removed as the engine's events say.

use std::collections::HashMap;
use std::time::Instant;

use oemesh_core::esp::{HEADER_LEN, InboundSa, MAX_TRAILER_LEN, OutboundSa, SaConfig};
use oemesh_core::ike::endpoint::{ChildSa, Event};

pub struct DataPath {
    pub outbound: Option<OutboundSa>,
    pub inbound: HashMap<u32, InboundSa>,
    /// How many of the node's events were applied.
    pub applied: usize,
}

fn config(spi: u32, c: &ChildSa) -> SaConfig {
    SaConfig { spi, alg: c.alg, provider: Default::default(), esn: c.esn, limits: c.lifetime }
}

impl DataPath {
    pub fn new() -> Self {
        Self { outbound: None, inbound: HashMap::new(), applied: 0 }
    }

    fn install(&mut self, c: &ChildSa, now: Instant) {
        self.outbound = Some(OutboundSa::new(config(c.spis.outbound, c), &c.outbound_key, now));
        self.inbound.insert(c.spis.inbound, InboundSa::new(config(c.spis.inbound, c), &c.inbound_key, now));
    }

    /// Applies the node's new events.
    pub fn apply(&mut self, events: &[Event], now: Instant) {
        for e in &events[self.applied..] {
            match e {
                Event::ChildSaEstablished { child, .. } => self.install(child, now),
                Event::ChildSaRekeyed { new, .. } => self.install(new, now),
                Event::ChildSaDeleted { spis, .. } => {
                    self.inbound.remove(&spis.inbound);
                    if self.outbound.as_ref().is_some_and(|o| o.spi() == spis.outbound) {
                        self.outbound = None;
                    }
                }
                _ => {}
            }
        }
        self.applied = events.len();
    }

    /// Encapsulates an inner packet carrying `n`.
    pub fn seal(&mut self, n: u32) -> Option<Vec<u8>> {
        let out = self.outbound.as_mut()?;
        let mut inner = vec![0x45, 0, 0, 24, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
        inner.extend_from_slice(&n.to_be_bytes());
        let mut buf = vec![0u8; HEADER_LEN + inner.len() + MAX_TRAILER_LEN];
        buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(&inner);
        let len = out.encapsulate(&mut buf, inner.len()).ok()?;
        buf.truncate(len);
        Some(buf)
    }

    /// Decapsulates a packet; returns the `n` it carried.
    pub fn open(&mut self, mut packet: Vec<u8>) -> Result<u32, String> {
        let spi = oemesh_core::esp::peek_spi(&packet).ok_or("short")?;
        let sa = self.inbound.get_mut(&spi).ok_or_else(|| format!("no inbound SA {spi:#x}"))?;
        let d = sa.decapsulate(&mut packet).map_err(|e| e.to_string())?;
        let inner = &packet[d.inner];
        Ok(u32::from_be_bytes(inner[20..24].try_into().unwrap()))
    }
}
