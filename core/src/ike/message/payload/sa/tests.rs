//! Tests of the SA payload's codec (RFC 7296 §3.3): the profile's octets, unknown
//! transforms and attributes, the caps on counts, and malformed input.

use super::*;

/// oemesh's IKE proposal: ChaCha20-Poly1305, then AES-GCM-16/256, PRF SHA-256, Curve25519.
fn profile() -> Sa {
    Sa {
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: vec![],
            transforms: vec![
                Transform::encr(EncrId::CHACHA20_POLY1305, None),
                Transform::encr(EncrId::AES_GCM_16, Some(256)),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(DhGroup::CURVE25519),
            ],
        }],
    }
}

#[rustfmt::skip]
const PROFILE_BYTES: [u8; 44] = [
    0, 0, 0, 44, 1, 1, 0, 4,                // last proposal, len 44, #1 IKE, no SPI, 4 transforms
    3, 0, 0, 8, 1, 0, 0, 28,                // ENCR CHACHA20_POLY1305
    3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0, // ENCR AES_GCM_16, key length 256 (TV)
    3, 0, 0, 8, 2, 0, 0, 5,                 // PRF HMAC_SHA2_256
    0, 0, 0, 8, 4, 0, 0, 31,                // DH 31, last
];

#[test]
fn profile_vector() {
    let mut out = Vec::new();
    profile().emit(&mut out);
    assert_eq!(out, PROFILE_BYTES);
    assert_eq!(profile().buffer_len(), PROFILE_BYTES.len());
    let parsed = Sa::parse(&PROFILE_BYTES).unwrap();
    assert_eq!(parsed, profile());
    assert_eq!(parsed.proposals[0].transforms[1].key_length(), Some(256));
    assert_eq!(
        format!("{:?}", parsed.proposals[0].transforms[1]),
        "Transform(ENCR AES_GCM_16, key 256)"
    );
}

#[test]
fn esp_proposal_with_spi_unknown_transform_and_tlv() {
    let sa = Sa {
        proposals: vec![
            Proposal {
                number: 1,
                protocol: ProtocolId::ESP,
                spi: vec![0xc1, 0xa2, 0x03, 0x04],
                transforms: vec![
                    Transform::encr(EncrId(1024), None),
                    Transform::esn(EsnId::ESN),
                ],
            },
            Proposal {
                number: 2,
                protocol: ProtocolId::ESP,
                spi: vec![0xc1, 0xa2, 0x03, 0x04],
                transforms: vec![Transform {
                    ty: TransformType(77),
                    id: 5,
                    attributes: vec![Attribute::Tlv {
                        ty: AttributeType(300),
                        value: vec![1, 2, 3],
                    }],
                }],
            },
        ],
    };
    let mut out = Vec::new();
    sa.emit(&mut out);
    assert_eq!(out[0], 2, "more proposals follow");
    assert_eq!(Sa::parse(&out).unwrap(), sa);
}

/// One proposal of `transforms` ENCR transforms, each with `attributes`
/// Key Length attributes.
fn sa_bytes(proposals: usize, transforms: usize, attributes: usize) -> Vec<u8> {
    let transform_len = 8 + 4 * attributes;
    let proposal_len = 8 + transforms * transform_len;
    let mut out = Vec::new();
    for p in 0..proposals {
        let last = if p + 1 == proposals { 0 } else { 2 };
        out.extend_from_slice(&[last, 0]);
        out.extend_from_slice(&(proposal_len as u16).to_be_bytes());
        out.extend_from_slice(&[1, 1, 0, transforms as u8]);
        for t in 0..transforms {
            let last = if t + 1 == transforms { 0 } else { 3 };
            out.extend_from_slice(&[last, 0]);
            out.extend_from_slice(&(transform_len as u16).to_be_bytes());
            out.extend_from_slice(&[1, 0, 0, 20]);
            for _ in 0..attributes {
                out.extend_from_slice(&[0x80, 14, 1, 0]);
            }
        }
    }
    out
}

/// Parses with room to spare, so that only the count limits apply.
fn parse_roomy(bytes: &[u8]) -> Result<Sa, Error> {
    Sa::parse_in(bytes, &mut Budget::for_input(100 * bytes.len()))
}

#[test]
fn counts_are_capped() {
    let sa = parse_roomy(&sa_bytes(MAX_PROPOSALS, 1, 1)).unwrap();
    assert_eq!(sa.proposals.len(), MAX_PROPOSALS);
    assert_eq!(sa.proposals.capacity(), MAX_PROPOSALS);
    assert_eq!(
        parse_roomy(&sa_bytes(MAX_PROPOSALS + 1, 0, 0)).unwrap_err(),
        Error::TooManySubstructures {
            what: "proposal",
            limit: MAX_PROPOSALS
        }
    );
    let sa = parse_roomy(&sa_bytes(1, 2, MAX_ATTRIBUTES)).unwrap();
    assert_eq!(
        sa.proposals[0].transforms[1].attributes.len(),
        MAX_ATTRIBUTES
    );
    assert_eq!(
        parse_roomy(&sa_bytes(1, 1, MAX_ATTRIBUTES + 1)).unwrap_err(),
        Error::TooManySubstructures {
            what: "transform attribute",
            limit: MAX_ATTRIBUTES
        }
    );
    // 255 transforms: as many as Num Transforms can say, and within the
    // budget of their bytes (8 bytes each, 32 as values).
    let sa = Sa::parse(&sa_bytes(1, 255, 0)).unwrap();
    assert_eq!(sa.proposals[0].transforms.len(), 255);
    assert_eq!(sa.proposals[0].transforms.capacity(), 255);
    // 64 empty proposals (8 bytes each, 56 as values): 3.5 KiB, within
    // the budget of 512 bytes (4 × 512 + 4 KiB); a smaller one refuses
    // them before allocating.
    assert!(Sa::parse(&sa_bytes(MAX_PROPOSALS, 0, 0)).is_ok());
    assert!(matches!(
        Sa::parse_in(
            &sa_bytes(MAX_PROPOSALS, 0, 0),
            &mut Budget::with_limit(3000)
        ),
        Err(Error::AllocationLimit { limit: 3000 })
    ));
}

#[test]
fn transforms_beyond_the_announced_number_are_refused_at_once() {
    let mut bytes = sa_bytes(1, 3, 0);
    bytes[7] = 2;
    assert_eq!(
        Sa::parse(&bytes).unwrap_err(),
        Error::TransformCount {
            announced: 2,
            found: 3
        }
    );
}

#[test]
fn errors() {
    let mut bad = PROFILE_BYTES;
    bad[7] = 5;
    assert_eq!(
        Sa::parse(&bad).unwrap_err(),
        Error::TransformCount {
            announced: 5,
            found: 4
        }
    );
    let mut bad = PROFILE_BYTES;
    bad[0] = 2;
    assert!(matches!(
        Sa::parse(&bad),
        Err(Error::LastSubstruc {
            what: "proposal",
            value: 2,
            ..
        })
    ));
    let mut bad = PROFILE_BYTES;
    bad[8] = 0;
    assert!(matches!(
        Sa::parse(&bad),
        Err(Error::LastSubstruc {
            what: "transform",
            ..
        })
    ));
    let mut bad = PROFILE_BYTES;
    bad[3] = 45;
    assert!(matches!(
        Sa::parse(&bad),
        Err(Error::SubstructureLength { .. })
    ));
    let mut bad = PROFILE_BYTES;
    bad[27] = 7; // TLV attribute (AF cleared below) longer than the transform
    bad[24] = 0;
    assert!(matches!(
        Sa::parse(&bad),
        Err(Error::SubstructureLength {
            what: "transform attribute",
            ..
        })
    ));
}
