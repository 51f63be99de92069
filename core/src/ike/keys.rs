//! The IKEv2 key schedule (RFC 7296 §2.13–§2.18) for the wire profile: PRF
//! HMAC-SHA2-256 and AEAD encryption (AES-256-GCM or ChaCha20-Poly1305).
//!
//! ```text
//! SKEYSEED = prf(Ni | Nr, g^ir)                                        §2.14
//! {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//!          = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
//! KEYMAT   = prf+(SK_d, [g^ir (new) |] Ni | Nr)                        §2.17
//! SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)   (IKE SA rekey)    §2.18
//! ```
//!
//! With an AEAD there is no integrity transform, so SK_ai and SK_ar are empty
//! (RFC 5282 §7.1; RFC 7634 §3), and each encryption key carries 4 salt bytes:
//! 36 bytes for both transforms (RFC 5282 §7.1, RFC 7634 §4, RFC 4106 §8.1).
//!
//! All key types zeroize on drop and print as `<redacted>`.

use std::fmt;

use rand_core::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::prf::{PRF_LEN, prf, prf_plus};
use crate::crypto::x25519::{SharedSecret, X25519_LEN, X25519Secret};
use crate::crypto::{KeyAndSalt, ct_eq};

/// Length of the nonces this host sends (§2.10: at least half the PRF key size).
pub(crate) const NONCE_LEN: usize = 32;

/// The next IKE_SA_INIT's X25519 key pair (§2.18's g^i or g^r), made ahead of
/// need: computing the public value is one of the costlier steps of a first
/// packet's handshake on either side (and a process's first X25519 also pays
/// the library's one-time set-up), so the endpoint makes the next pair when
/// nothing waits for it (when it is created, and after its timers ran), and
/// an IKE_SA_INIT takes it. Each pair is used once; without one ready, one is
/// made on the spot, as before. Zeroized on drop like every [`X25519Secret`].
#[derive(Debug, Default)]
pub(crate) struct KeyPairPool {
    spare: Option<X25519Secret>,
}

impl KeyPairPool {
    /// Makes a key pair from `rng` if none is ready.
    pub(crate) fn fill(&mut self, rng: &mut impl RngCore) {
        if self.spare.is_none() {
            self.spare = Some(Self::make(rng));
        }
    }

    /// The pair made ahead, else a new one from `rng`.
    pub(crate) fn take(&mut self, rng: &mut impl RngCore) -> X25519Secret {
        self.spare.take().unwrap_or_else(|| Self::make(rng))
    }

    fn make(rng: &mut impl RngCore) -> X25519Secret {
        let mut secret = Zeroizing::new([0u8; X25519_LEN]);
        rng.fill_bytes(&mut secret[..]);
        X25519Secret::from_random(*secret)
    }
}

/// Which end of an exchange we are. For CHILD SA keys this is the initiator of
/// the exchange that created the CHILD SA (IKE_AUTH or CREATE_CHILD_SA), whose
/// nonce is `Ni`, not necessarily the original IKE SA initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Sent the request.
    Initiator,
    /// Sent the response.
    Responder,
}

macro_rules! secret_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; PRF_LEN]);

        impl $name {
            /// Wraps 32 key bytes (tests, logged vectors).
            pub fn from_bytes(bytes: [u8; PRF_LEN]) -> Self {
                Self(bytes)
            }

            /// The key bytes.
            pub fn as_bytes(&self) -> &[u8; PRF_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_newtype!(
    /// SKEYSEED, the root of an IKE SA's keys (RFC 7296 §2.14).
    Skeyseed
);
secret_newtype!(
    /// SK_d: the key new CHILD SA keys and a rekeyed IKE SA derive from.
    SkD
);
secret_newtype!(
    /// SK_pi or SK_pr: the key that MACs the ID payload into the AUTH octets.
    SkP
);

impl Skeyseed {
    /// `SKEYSEED = prf(Ni | Nr, g^ir)` for a new IKE SA (§2.14).
    pub fn initial(ni: &[u8], nr: &[u8], g_ir: &SharedSecret) -> Self {
        let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
        key.extend_from_slice(ni);
        key.extend_from_slice(nr);
        Self(*prf(&key, &[g_ir.as_bytes()]))
    }

    /// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)` for the IKE SA that
    /// replaces an old one in CREATE_CHILD_SA (§2.18). `ni`/`nr` are the nonces
    /// of the rekeying exchange.
    pub fn rekey(old_sk_d: &SkD, g_ir: &SharedSecret, ni: &[u8], nr: &[u8]) -> Self {
        Self(*prf(old_sk_d.as_bytes(), &[g_ir.as_bytes(), ni, nr]))
    }

    /// Splits `prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)` into the IKE SA's keys.
    /// `spi_i`/`spi_r` are the SPIs of the IKE SA being keyed (the new ones on a
    /// rekey).
    pub fn ike_sa_keys(&self, ni: &[u8], nr: &[u8], spi_i: [u8; 8], spi_r: [u8; 8]) -> IkeSaKeys {
        const E: usize = KeyAndSalt::LEN;
        let mut out = Zeroizing::new([0u8; IkeSaKeys::KEYMAT_LEN]);
        // 168 bytes is far below the 255-block limit.
        if prf_plus(&self.0, &[ni, nr, &spi_i, &spi_r], &mut out[..]).is_err() {
            unreachable!("prf+ output length is a small constant");
        }
        let (sk_d, rest) = split::<PRF_LEN>(&out[..]);
        // SK_ai and SK_ar are empty with an AEAD.
        let (sk_ei, rest) = split::<E>(rest);
        let (sk_er, rest) = split::<E>(rest);
        let (sk_pi, rest) = split::<PRF_LEN>(rest);
        let (sk_pr, _) = split::<PRF_LEN>(rest);
        IkeSaKeys {
            sk_d: SkD(sk_d),
            sk_ei: KeyAndSalt::from_bytes(sk_ei),
            sk_er: KeyAndSalt::from_bytes(sk_er),
            sk_pi: SkP(sk_pi),
            sk_pr: SkP(sk_pr),
        }
    }
}

fn split<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let (head, rest) = bytes.split_at(N);
    let mut arr = [0u8; N];
    arr.copy_from_slice(head);
    (arr, rest)
}

/// The keys of one IKE SA. SK_ai/SK_ar do not exist with an AEAD.
#[derive(Clone, Debug)]
pub struct IkeSaKeys {
    /// SK_d: derives CHILD SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: SkD,
    /// SK_ei: protects the SK payloads the original initiator sends.
    pub sk_ei: KeyAndSalt,
    /// SK_er: protects the SK payloads the original responder sends.
    pub sk_er: KeyAndSalt,
    /// SK_pi: MACs the initiator's ID into its AUTH octets.
    pub sk_pi: SkP,
    /// SK_pr: MACs the responder's ID into its AUTH octets.
    pub sk_pr: SkP,
}

impl IkeSaKeys {
    /// Bytes taken from `prf+`: SK_d 32, SK_ei 36, SK_er 36, SK_pi 32, SK_pr 32.
    pub const KEYMAT_LEN: usize = 3 * PRF_LEN + 2 * KeyAndSalt::LEN;

    /// The SK payload keys `(outbound, inbound)` for the original `side` of the
    /// IKE SA: the initiator sends with SK_ei and receives with SK_er.
    pub fn sk_e(&self, side: Side) -> (&KeyAndSalt, &KeyAndSalt) {
        match side {
            Side::Initiator => (&self.sk_ei, &self.sk_er),
            Side::Responder => (&self.sk_er, &self.sk_ei),
        }
    }

    /// `(own, peer's)` SK_p for the original `side`.
    pub fn sk_p(&self, side: Side) -> (&SkP, &SkP) {
        match side {
            Side::Initiator => (&self.sk_pi, &self.sk_pr),
            Side::Responder => (&self.sk_pr, &self.sk_pi),
        }
    }
}

/// The key material of one CHILD SA pair (two ESP SAs with one AEAD each).
#[derive(Clone, Debug)]
pub struct ChildSaKeys {
    /// For the ESP SA carrying traffic from the exchange's initiator to its
    /// responder: taken first from KEYMAT (§2.17).
    pub initiator_to_responder: KeyAndSalt,
    /// For the ESP SA carrying traffic the other way.
    pub responder_to_initiator: KeyAndSalt,
}

impl ChildSaKeys {
    /// Bytes taken from `prf+`: two AEAD keys with their salts.
    pub const KEYMAT_LEN: usize = 2 * KeyAndSalt::LEN;

    /// `KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)` (§2.17): pass `pfs` when the
    /// CREATE_CHILD_SA exchange carried KE payloads. For the CHILD SA created
    /// with IKE_AUTH, `ni`/`nr` are the IKE_SA_INIT nonces and `pfs` is `None`.
    pub fn derive(sk_d: &SkD, pfs: Option<&SharedSecret>, ni: &[u8], nr: &[u8]) -> Self {
        let mut out = Zeroizing::new([0u8; Self::KEYMAT_LEN]);
        let result = match pfs {
            Some(g_ir) => prf_plus(sk_d.as_bytes(), &[g_ir.as_bytes(), ni, nr], &mut out[..]),
            None => prf_plus(sk_d.as_bytes(), &[ni, nr], &mut out[..]),
        };
        if result.is_err() {
            unreachable!("prf+ output length is a small constant");
        }
        let (i_to_r, rest) = split::<{ KeyAndSalt::LEN }>(&out[..]);
        let (r_to_i, _) = split::<{ KeyAndSalt::LEN }>(rest);
        Self {
            initiator_to_responder: KeyAndSalt::from_bytes(i_to_r),
            responder_to_initiator: KeyAndSalt::from_bytes(r_to_i),
        }
    }

    /// `(outbound, inbound)` key material for `side` of the creating exchange.
    pub fn split(&self, side: Side) -> (&KeyAndSalt, &KeyAndSalt) {
        match side {
            Side::Initiator => (&self.initiator_to_responder, &self.responder_to_initiator),
            Side::Responder => (&self.responder_to_initiator, &self.initiator_to_responder),
        }
    }
}

/// The octets an AUTH payload signs or MACs (§2.15):
///
/// ```text
/// InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
/// ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)
/// ```
///
/// For the initiator: `real_message` is its IKE_SA_INIT request as sent,
/// `peer_nonce` the responder's nonce data, `sk_p` SK_pi, `id_payload_rest` the
/// IDi payload body after the generic header (ID Type, 3 reserved octets, data).
/// The responder uses its IKE_SA_INIT response, Ni, SK_pr and IDr. Signature
/// (RFC 7427), shared key and NULL (RFC 7619) authentication all use these octets.
pub fn signed_octets(
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &SkP,
    id_payload_rest: &[u8],
) -> Vec<u8> {
    let maced_id = prf(sk_p.as_bytes(), &[id_payload_rest]);
    let mut out = Vec::with_capacity(real_message.len() + peer_nonce.len() + PRF_LEN);
    out.extend_from_slice(real_message);
    out.extend_from_slice(peer_nonce);
    out.extend_from_slice(&maced_id[..]);
    out
}

/// The pad string of shared-key AUTH (§2.15).
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// Shared-key AUTH data: `prf(prf(secret, "Key Pad for IKEv2"), signed octets)`
/// (§2.15, AUTH method 2).
pub fn shared_key_auth(secret: &[u8], signed_octets: &[u8]) -> [u8; PRF_LEN] {
    let inner = prf(secret, &[KEY_PAD]);
    *prf(&inner[..], &[signed_octets])
}

/// NULL authentication (RFC 7619 §2.1, AUTH method 13): the shared-key
/// computation with the sender's SK_p (SK_pi for the initiator, SK_pr for the
/// responder) as the secret.
pub fn null_auth(sk_p: &SkP, signed_octets: &[u8]) -> [u8; PRF_LEN] {
    shared_key_auth(sk_p.as_bytes(), signed_octets)
}

/// Checks a peer's NULL-auth AUTH data in constant time; `peer_sk_p` is the
/// peer's SK_p (SK_pi when we are the responder).
pub fn verify_null_auth(peer_sk_p: &SkP, signed_octets: &[u8], auth_data: &[u8]) -> bool {
    ct_eq(&null_auth(peer_sk_p, signed_octets), auth_data)
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::KeyPairPool;

    #[test]
    fn the_pool_hands_out_the_pair_made_ahead_once() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let mut pool = KeyPairPool::default();
        pool.fill(&mut rng);
        let ahead = pool.spare.as_ref().map(|k| k.public_key());
        pool.fill(&mut rng); // already full: nothing drawn
        assert_eq!(pool.spare.as_ref().map(|k| k.public_key()), ahead);
        let first = pool.take(&mut rng);
        assert_eq!(Some(first.public_key()), ahead);
        let second = pool.take(&mut rng); // empty: made on the spot
        assert_ne!(second.public_key(), first.public_key());
    }
}
