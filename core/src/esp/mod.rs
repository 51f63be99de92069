//! ESP security associations (RFC 4303) in tunnel mode, with the AEADs of the
//! wire profile (RFC 4106 AES-GCM, RFC 7634 ChaCha20-Poly1305).
//!
//! The data path owns an [`OutboundSa`] and an [`InboundSa`] per CHILD SA. Both
//! work in place on caller buffers and never allocate:
//!
//! - **send**: put the inner IP packet at `buf[HEADER_LEN..]`, leaving at least
//!   [`MAX_TRAILER_LEN`] bytes after it, call [`OutboundSa::encapsulate`]; the
//!   ESP packet is `buf[..len]`. Wrapping it in UDP 4500 (RFC 3948) is the
//!   driver's job.
//! - **receive**: find the SA with [`peek_spi`] (unknown SPIs are the caller's
//!   to count), call [`InboundSa::decapsulate`]; the inner packet is
//!   `packet[d.inner]`. The anti-replay check runs before decryption and the
//!   window moves only after the ICV verified (RFC 4303 §3.4.3).
//! - **lifetimes**: call `handle_timeout(now)` when `poll_timeout()` says, and
//!   after each packet `poll_event()`: [`LifetimeEvent::SoftExpired`] means
//!   rekey now, [`LifetimeEvent::HardExpired`] means the SA is dead.
//!
//! [`EspPacket`] is the view of one packet's fields (SPI, sequence number, IV,
//! payload, ICV) that both halves use.
//!
//! For data paths that share an SA between workers, [`packet::seal`] and
//! [`packet::open`] are the stateless halves: the caller then owns sequence
//! number allocation and the [`ReplayWindow`].
//!
//! Packet layout (RFC 4303 §2, RFC 4106 §3, RFC 7634 §2):
//!
//! ```text
//! SPI(4) | Seq low(4) | IV(8) | inner packet | pad 1,2,3.. | pad len | next hdr | ICV(16)
//!                              \_______________ encrypted _______________/
//! AAD = SPI | Seq low,  or with ESN  SPI | Seq high | Seq low   (RFC 4106 §5)
//! ```

mod error;
pub mod lifetime;
pub mod packet;
pub mod replay;
pub mod sa;

pub use error::{DecapError, EncapError};
pub use lifetime::{Lifetime, LifetimeEvent, LifetimeLimits, LifetimeState, Limits};
pub use packet::{
    EspPacket, HEADER_LEN, ICV_LEN, InnerProtocol, MAX_TRAILER_LEN, MIN_PACKET_LEN,
    encapsulated_len, peek_spi,
};
pub use replay::{REPLAY_WINDOW, ReplayWindow};
pub use sa::{Decapsulated, InboundCounters, InboundSa, OutboundCounters, OutboundSa, SaConfig};
