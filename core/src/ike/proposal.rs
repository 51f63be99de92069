//! The proposals of the wire profile and how each side picks from them (RFC 7296
//! §2.7, §3.3).
//!
//! This host offers one proposal per SA payload with every configured AEAD in
//! it, most preferred first:
//!
//! - IKE: `ENCR {AES_GCM_16/256 | CHACHA20_POLY1305}`, `PRF_HMAC_SHA2_256`, DH 31.
//! - ESP: the same AEADs, `ESN` then `NO_ESN` (ESN preferred), and DH 31 when
//!   the CREATE_CHILD_SA carries a KE payload (PFS).
//!
//! As responder it takes the first acceptable proposal in the initiator's order
//! and, inside it, the first AEAD in the initiator's order; ESN when offered.
//! A proposal with a transform type this host does not know is skipped (§3.3.6).

use crate::crypto::AeadAlg;
use crate::ike::error::RequestError;
use crate::ike::failure::ProtocolError;
use crate::ike::message::{
    DhGroup, EncrId, EsnId, IntegId, PrfId, Proposal, ProtocolId, Sa, Transform, TransformType,
};

/// The only key exchange group of the profile: Curve25519 (RFC 8031).
pub(crate) const GROUP: DhGroup = DhGroup::CURVE25519;

/// What an IKE proposal settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IkeChoice {
    pub(crate) alg: AeadAlg,
}

/// What an ESP proposal settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EspChoice {
    pub(crate) alg: AeadAlg,
    pub(crate) esn: bool,
    /// Whether DH 31 was chosen: the KEYMAT includes a fresh `g^ir` (§2.17).
    pub(crate) pfs: bool,
}

fn transform_alg(t: &Transform) -> Option<AeadAlg> {
    match (EncrId(t.id), t.key_length()) {
        (EncrId::AES_GCM_16, Some(256)) => Some(AeadAlg::Aes256Gcm),
        (EncrId::CHACHA20_POLY1305, None) => Some(AeadAlg::ChaCha20Poly1305),
        _ => None,
    }
}

fn encr(alg: AeadAlg) -> Transform {
    Transform::encr(EncrId(alg.transform_id()), alg.key_length_attribute())
}

/// The SA payload offering an IKE SA; `spi` is the new SPI when rekeying (§1.3.2).
pub(crate) fn ike_offer(algs: &[AeadAlg], spi: Option<u64>) -> Sa {
    let mut transforms: Vec<Transform> = algs.iter().map(|&a| encr(a)).collect();
    transforms.push(Transform::prf(PrfId::HMAC_SHA2_256));
    transforms.push(Transform::dh(GROUP));
    let spi = spi.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default();
    Sa {
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi,
            transforms,
        }],
    }
}

/// The SA payload offering a CHILD SA with inbound SPI `spi`.
pub(crate) fn esp_offer(algs: &[AeadAlg], spi: u32, pfs: bool) -> Sa {
    let mut transforms: Vec<Transform> = algs.iter().map(|&a| encr(a)).collect();
    if pfs {
        transforms.push(Transform::dh(GROUP));
    }
    transforms.push(Transform::esn(EsnId::ESN));
    transforms.push(Transform::esn(EsnId::NO_ESN));
    Sa {
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }],
    }
}

fn known_types_only(p: &Proposal, allowed: &[TransformType]) -> bool {
    p.transforms.iter().all(|t| allowed.contains(&t.ty))
}

fn integ_ok(p: &Proposal) -> bool {
    p.transforms_of(TransformType::INTEG)
        .all(|t| IntegId(t.id) == IntegId::NONE)
}

fn pick_alg(p: &Proposal, ours: &[AeadAlg]) -> Option<AeadAlg> {
    p.transforms_of(TransformType::ENCR)
        .filter_map(transform_alg)
        .find(|a| ours.contains(a))
}

/// Responder: picks an IKE proposal (IKE_SA_INIT, or an IKE SA rekey when
/// `spi_len` is 8). Returns the response's SA payload body (with `our_spi`),
/// the choice and the peer's SPI bytes.
pub(crate) fn select_ike(
    offer: &Sa,
    ours: &[AeadAlg],
    our_spi: Option<u64>,
) -> Result<(Sa, IkeChoice, Vec<u8>), RequestError> {
    let spi_len = if our_spi.is_some() { 8 } else { 0 };
    for p in &offer.proposals {
        if p.protocol != ProtocolId::IKE
            || p.spi.len() != spi_len
            || !known_types_only(
                p,
                &[
                    TransformType::ENCR,
                    TransformType::PRF,
                    TransformType::INTEG,
                    TransformType::DH,
                ],
            )
            || !integ_ok(p)
            || !p
                .transforms_of(TransformType::PRF)
                .any(|t| PrfId(t.id) == PrfId::HMAC_SHA2_256)
            || !p
                .transforms_of(TransformType::DH)
                .any(|t| DhGroup(t.id) == GROUP)
        {
            continue;
        }
        let Some(alg) = pick_alg(p, ours) else {
            continue;
        };
        let spi = our_spi
            .map(|s| s.to_be_bytes().to_vec())
            .unwrap_or_default();
        let chosen = Proposal {
            number: p.number,
            protocol: ProtocolId::IKE,
            spi,
            transforms: vec![
                encr(alg),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(GROUP),
            ],
        };
        return Ok((
            Sa {
                proposals: vec![chosen],
            },
            IkeChoice { alg },
            p.spi.clone(),
        ));
    }
    Err(RequestError::NoProposalChosen)
}

/// Responder: picks an ESP proposal. `ke_group` is the group of the request's
/// KE payload (CREATE_CHILD_SA with PFS), `None` without one.
pub(crate) fn select_esp(
    offer: &Sa,
    ours: &[AeadAlg],
    our_spi: u32,
    ke_group: Option<DhGroup>,
) -> Result<(Sa, EspChoice, u32), RequestError> {
    let mut invalid_ke = None;
    for p in &offer.proposals {
        if p.protocol != ProtocolId::ESP
            || !known_types_only(
                p,
                &[
                    TransformType::ENCR,
                    TransformType::INTEG,
                    TransformType::DH,
                    TransformType::ESN,
                ],
            )
            || !integ_ok(p)
        {
            continue;
        }
        let Ok(peer_spi) = <[u8; 4]>::try_from(p.spi.as_slice()) else {
            continue;
        };
        let Some(alg) = pick_alg(p, ours) else {
            continue;
        };
        let esns: Vec<EsnId> = p
            .transforms_of(TransformType::ESN)
            .map(|t| EsnId(t.id))
            .collect();
        let esn = if esns.is_empty() || esns.contains(&EsnId::ESN) {
            esns.contains(&EsnId::ESN)
        } else if esns.contains(&EsnId::NO_ESN) {
            false
        } else {
            continue;
        };
        let groups: Vec<DhGroup> = p
            .transforms_of(TransformType::DH)
            .map(|t| DhGroup(t.id))
            .collect();
        let pfs = if groups.contains(&GROUP) && ke_group == Some(GROUP) {
            true
        } else if groups.is_empty() || groups.contains(&DhGroup::NONE) {
            false
        } else if groups.contains(&GROUP) {
            invalid_ke = ke_group.map(|got| RequestError::InvalidKe { got, wanted: GROUP });
            continue;
        } else {
            continue;
        };
        let mut transforms = vec![encr(alg)];
        if pfs {
            transforms.push(Transform::dh(GROUP));
        }
        transforms.push(Transform::esn(if esn { EsnId::ESN } else { EsnId::NO_ESN }));
        let chosen = Proposal {
            number: p.number,
            protocol: ProtocolId::ESP,
            spi: our_spi.to_be_bytes().to_vec(),
            transforms,
        };
        return Ok((
            Sa {
                proposals: vec![chosen],
            },
            EspChoice { alg, esn, pfs },
            u32::from_be_bytes(peer_spi),
        ));
    }
    Err(invalid_ke.unwrap_or(RequestError::NoProposalChosen))
}

/// Initiator: checks the responder's IKE choice against what was offered.
/// Returns the choice and the responder's SPI bytes.
pub(crate) fn accept_ike(
    answer: &Sa,
    ours: &[AeadAlg],
    spi_len: usize,
) -> Result<(IkeChoice, Vec<u8>), ProtocolError> {
    let [p] = answer.proposals.as_slice() else {
        return Err(ProtocolError::IkeProposalCount(answer.proposals.len()));
    };
    let encrs: Vec<&Transform> = p.transforms_of(TransformType::ENCR).collect();
    let alg = match encrs.as_slice() {
        [t] => transform_alg(t).filter(|a| ours.contains(a)),
        _ => None,
    };
    let prf_ok = p
        .transforms_of(TransformType::PRF)
        .map(|t| PrfId(t.id))
        .eq([PrfId::HMAC_SHA2_256]);
    let dh_ok = p
        .transforms_of(TransformType::DH)
        .map(|t| DhGroup(t.id))
        .eq([GROUP]);
    match alg {
        Some(alg)
            if p.protocol == ProtocolId::IKE
                && prf_ok
                && dh_ok
                && integ_ok(p)
                && p.spi.len() == spi_len =>
        {
            Ok((IkeChoice { alg }, p.spi.clone()))
        }
        _ => Err(ProtocolError::IkeProposalNotOffered(Box::new(p.clone()))),
    }
}

/// Initiator: checks the responder's ESP choice. `pfs` says whether DH 31 was
/// offered (a KE payload was sent). Returns the choice and the peer's SPI.
pub(crate) fn accept_esp(
    answer: &Sa,
    ours: &[AeadAlg],
    pfs: bool,
) -> Result<(EspChoice, u32), ProtocolError> {
    let bad = || ProtocolError::EspProposalNotOffered(Box::new(answer.clone()));
    let [p] = answer.proposals.as_slice() else {
        return Err(bad());
    };
    let encrs: Vec<&Transform> = p.transforms_of(TransformType::ENCR).collect();
    let alg = match encrs.as_slice() {
        [t] => transform_alg(t).filter(|a| ours.contains(a)),
        _ => None,
    };
    let esns: Vec<EsnId> = p
        .transforms_of(TransformType::ESN)
        .map(|t| EsnId(t.id))
        .collect();
    let esn = match esns.as_slice() {
        [EsnId::ESN] => true,
        [EsnId::NO_ESN] | [] => false,
        _ => return Err(bad()),
    };
    let groups: Vec<DhGroup> = p
        .transforms_of(TransformType::DH)
        .map(|t| DhGroup(t.id))
        .collect();
    let chosen_pfs = match groups.as_slice() {
        [] | [DhGroup::NONE] => false,
        [GROUP] if pfs => true,
        _ => return Err(bad()),
    };
    let spi = <[u8; 4]>::try_from(p.spi.as_slice())
        .map(u32::from_be_bytes)
        .map_err(|_| bad())?;
    match alg {
        Some(alg) if p.protocol == ProtocolId::ESP && integ_ok(p) => Ok((
            EspChoice {
                alg,
                esn,
                pfs: chosen_pfs,
            },
            spi,
        )),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responder_picks_the_initiators_first_aead_and_esn() {
        let offer = esp_offer(
            &[AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm],
            0x1234,
            false,
        );
        let (sa, choice, peer) = select_esp(&offer, &AeadAlg::ALL, 0xabcd, None).unwrap();
        assert_eq!(
            choice,
            EspChoice {
                alg: AeadAlg::ChaCha20Poly1305,
                esn: true,
                pfs: false
            }
        );
        assert_eq!(peer, 0x1234);
        assert_eq!(
            accept_esp(&sa, &AeadAlg::ALL, false).unwrap(),
            (choice, 0xabcd)
        );
    }

    #[test]
    fn ike_round_trip_and_refusals() {
        let offer = ike_offer(&[AeadAlg::Aes256Gcm], None);
        let (sa, choice, _) = select_ike(&offer, &AeadAlg::ALL, None).unwrap();
        assert_eq!(choice.alg, AeadAlg::Aes256Gcm);
        assert_eq!(accept_ike(&sa, &AeadAlg::ALL, 0).unwrap().0, choice);
        assert_eq!(
            select_ike(&offer, &[AeadAlg::ChaCha20Poly1305], None).unwrap_err(),
            RequestError::NoProposalChosen
        );
        let mut other_group = offer.clone();
        other_group.proposals[0]
            .transforms
            .retain(|t| t.ty != TransformType::DH);
        other_group.proposals[0]
            .transforms
            .push(Transform::dh(DhGroup::ECP_256));
        assert!(select_ike(&other_group, &AeadAlg::ALL, None).is_err());
    }

    #[test]
    fn pfs_needs_a_matching_ke() {
        let offer = esp_offer(&AeadAlg::ALL, 1, true);
        assert!(
            select_esp(&offer, &AeadAlg::ALL, 2, Some(GROUP))
                .unwrap()
                .1
                .pfs
        );
        assert_eq!(
            select_esp(&offer, &AeadAlg::ALL, 2, Some(DhGroup::ECP_256)).unwrap_err(),
            RequestError::InvalidKe {
                got: DhGroup::ECP_256,
                wanted: GROUP
            }
        );
    }
}
