//! Whole-message vectors, SK sealing with a test-only cipher, and property tests:
//! arbitrary messages round-trip, arbitrary bytes never panic the parser.

// Helpers outside #[test] fns are test code too (clippy.toml covers only the fns).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::{Ipv4Addr, Ipv6Addr};

use oemesh_core::ike::message::*;
use oemesh_core::ike::udp_encap::{self, Datagram};
use proptest::prelude::*;

/// XOR with a key byte and a fixed-pattern ICV that covers the AAD: enough to see
/// that the codec hands the cipher the right IV, AAD and plaintext. Test only.
struct XorCipher {
    block: usize,
}

impl XorCipher {
    fn icv(iv: &[u8], aad: &[u8], ct: &[u8]) -> [u8; 16] {
        let mut icv = [0x5au8; 16];
        for (i, b) in iv.iter().chain(aad).chain(ct).enumerate() {
            icv[i % 16] = icv[i % 16].rotate_left(3) ^ b;
        }
        icv
    }
}

impl SkCipher for XorCipher {
    fn iv_len(&self) -> usize {
        8
    }
    fn icv_len(&self) -> usize {
        16
    }
    fn block_size(&self) -> usize {
        self.block
    }
    fn seal(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        buf.iter_mut().for_each(|b| *b ^= 0xa5);
        let icv = Self::icv(iv, aad, buf);
        buf.extend_from_slice(&icv);
        Ok(())
    }
    fn open(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let split = buf
            .len()
            .checked_sub(16)
            .ok_or(CryptoError::InvalidLength)?;
        if Self::icv(iv, aad, &buf[..split]) != buf[split..] {
            return Err(CryptoError::AuthenticationFailed);
        }
        buf.truncate(split);
        buf.iter_mut().for_each(|b| *b ^= 0xa5);
        Ok(())
    }
}

const AEAD: XorCipher = XorCipher { block: 1 };

fn emit(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.emit(&mut out);
    out
}

fn header(exchange: ExchangeType, flags: Flags, message_id: u32) -> Header {
    Header::new(
        0x0102030405060708,
        0x1112131415161718,
        exchange,
        flags,
        message_id,
    )
}

#[test]
fn ike_sa_init_request_vector() {
    let m = Message::new(
        Header::new(
            0x0102030405060708,
            0,
            ExchangeType::IKE_SA_INIT,
            Flags::INITIATOR,
            0,
        ),
        vec![
            Payload::Sa(Sa {
                proposals: vec![Proposal {
                    number: 1,
                    protocol: ProtocolId::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform::encr(EncrId::CHACHA20_POLY1305, None),
                        Transform::prf(PrfId::HMAC_SHA2_256),
                        Transform::dh(DhGroup::CURVE25519),
                    ],
                }],
            }),
            Payload::Ke(Ke {
                group: DhGroup::CURVE25519,
                data: vec![0x11; 4],
            }),
            Payload::Nonce(Nonce(vec![0x22; 4])),
            Payload::Notify(Notify::signature_hash_algorithms(&[
                HashAlgorithm::IDENTITY,
            ])),
        ],
    );
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        1, 2, 3, 4, 5, 6, 7, 8,  0, 0, 0, 0, 0, 0, 0, 0,   // SPIs
        33, 0x20, 34, 0x08,  0, 0, 0, 0,  0, 0, 0, 94,      // SA, 2.0, IKE_SA_INIT, I, MID 0, len 94
        34, 0, 0, 36,                                       // SA → KE, 36 bytes
        0, 0, 0, 32, 1, 1, 0, 3,                            //   proposal 1 IKE, 3 transforms
        3, 0, 0, 8, 1, 0, 0, 28,                            //   ENCR CHACHA20_POLY1305
        3, 0, 0, 8, 2, 0, 0, 5,                             //   PRF HMAC_SHA2_256
        0, 0, 0, 8, 4, 0, 0, 31,                            //   DH CURVE25519
        40, 0, 0, 12, 0, 31, 0, 0, 0x11, 0x11, 0x11, 0x11,  // KE → Nonce
        41, 0, 0, 8, 0x22, 0x22, 0x22, 0x22,                // Nonce → N
        0, 0, 0, 10, 0, 0, 0x40, 0x2f, 0, 5,                // N(SIGNATURE_HASH_ALGORITHMS: IDENTITY)
    ];
    assert_eq!(emit(&m), expected);
    assert_eq!(m.buffer_len(), expected.len());
    assert_eq!(Message::parse(&expected).unwrap(), m);
    let view = HeaderPacket::new_checked(&expected[..]).unwrap();
    assert_eq!((view.next_payload(), view.length()), (PayloadType::SA, 94));
}

#[test]
fn informational_delete_vector() {
    let m = Message::new(
        header(ExchangeType::INFORMATIONAL, Flags::INITIATOR, 7),
        vec![Payload::Delete(Delete::esp(&[0xc0ffee01]))],
    );
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        1, 2, 3, 4, 5, 6, 7, 8,  0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
        42, 0x20, 37, 0x08,  0, 0, 0, 7,  0, 0, 0, 40,
        0, 0, 0, 12, 3, 4, 0, 1, 0xc0, 0xff, 0xee, 0x01,
    ];
    assert_eq!(emit(&m), expected);
    assert_eq!(Message::parse(&expected).unwrap(), m);
}

#[test]
fn protected_round_trip_and_layout() {
    let h = header(ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
    let inner = vec![
        Payload::IdI(Identity::Ipv4(Ipv4Addr::new(10, 0, 77, 10))),
        Payload::Auth(Auth {
            method: AuthMethod::NULL,
            data: vec![0x33; 32],
        }),
        Payload::TsI(Ts::single(AddrSelector::host(
            Ipv4Addr::new(10, 0, 77, 10).into(),
        ))),
    ];
    let iv = [9u8; 8];
    let mut out = Vec::new();
    udp_encap::push_non_esp_marker(&mut out);
    Message::emit_protected(&h, &inner, &AEAD, &iv, &mut out).unwrap();
    let Datagram::Ike(bytes) = udp_encap::classify(&out) else {
        panic!("not IKE")
    };

    let inner_len: usize = inner.iter().map(Payload::buffer_len).sum();
    assert_eq!(bytes.len(), 28 + 4 + 8 + inner_len + 1 + 16);
    assert_eq!(bytes[16], PayloadType::SK.0, "header's Next Payload is SK");
    assert_eq!(
        bytes[28],
        PayloadType::IDI.0,
        "SK's Next Payload is the first inner payload"
    );
    assert_eq!(&bytes[32..40], iv);

    let m = Message::parse_protected(bytes, &AEAD).unwrap();
    assert_eq!(m, Message::new(h, inner.clone()));
    // Sealed, the same bytes are one SK payload.
    let sealed = Message::parse(bytes).unwrap();
    assert!(matches!(sealed.payloads[..], [Payload::Sk(_)]));
    assert_eq!(emit(&sealed), bytes);

    // Any flipped bit (header, SK header, IV, ciphertext, ICV) fails integrity or parsing.
    for i in 0..bytes.len() {
        let mut t = bytes.to_vec();
        t[i] ^= 0x01;
        assert!(
            Message::parse_protected(&t, &AEAD).is_err(),
            "bit flip at {i} accepted"
        );
    }
}

#[test]
fn protected_empty_and_padded() {
    // An empty INFORMATIONAL (liveness check, RFC 7296 §1.4) is an SK with no payloads.
    let h = header(ExchangeType::INFORMATIONAL, Flags::RESPONSE, 3);
    let mut out = Vec::new();
    Message::emit_protected(&h, &[], &AEAD, &[0; 8], &mut out).unwrap();
    assert_eq!(out.len(), 28 + 4 + 8 + 1 + 16);
    assert_eq!(out[28], 0);
    assert_eq!(
        Message::parse_protected(&out, &AEAD).unwrap(),
        Message::new(h, vec![])
    );

    // A block cipher pads the plaintext (inner + Pad Length) to its block size.
    let cbc = XorCipher { block: 16 };
    let inner = vec![Payload::Nonce(Nonce(vec![1; 5]))];
    let mut out = Vec::new();
    Message::emit_protected(&h, &inner, &cbc, &[0; 8], &mut out).unwrap();
    assert_eq!(out.len(), 28 + 4 + 8 + 16 + 16);
    assert_eq!(
        Message::parse_protected(&out, &cbc).unwrap().payloads,
        inner
    );
}

/// Seals a hand-made plaintext (for malformed-inside cases the emitter cannot produce).
fn seal_raw(first_inner: PayloadType, plaintext: &[u8]) -> Vec<u8> {
    let h = header(ExchangeType::INFORMATIONAL, Flags::NONE, 0);
    let total = 28 + 4 + 8 + plaintext.len() + 16;
    let mut out = Vec::new();
    h.emit(PayloadType::SK, total as u32, &mut out);
    out.extend_from_slice(&[first_inner.0, 0]);
    out.extend_from_slice(&((total - 28) as u16).to_be_bytes());
    let mut buf = plaintext.to_vec();
    AEAD.seal(&[0; 8], &out, &mut buf).unwrap();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&buf);
    out
}

#[test]
fn protected_errors() {
    let h = header(ExchangeType::INFORMATIONAL, Flags::NONE, 0);
    let plain = emit(&Message::new(h, vec![Payload::Nonce(Nonce(vec![1]))]));
    assert_eq!(
        Message::parse_protected(&plain, &AEAD).unwrap_err(),
        Error::NotProtected
    );

    assert_eq!(
        Message::emit_protected(&h, &[], &AEAD, &[0; 7], &mut Vec::new()).unwrap_err(),
        Error::IvLength {
            got: 7,
            expected: 8
        }
    );

    let too_short = seal_raw(PayloadType::NONE, &[]);
    assert_eq!(
        Message::parse_protected(&too_short, &AEAD).unwrap_err(),
        Error::SkTooShort {
            length: 24,
            need: 25
        }
    );
    let bad_pad = seal_raw(PayloadType::NONE, &[0, 0, 5]);
    assert_eq!(
        Message::parse_protected(&bad_pad, &AEAD).unwrap_err(),
        Error::PadLength {
            pad: 5,
            available: 2
        }
    );
    let nested = seal_raw(PayloadType::SK, &[0, 0, 0, 4, 0]);
    assert_eq!(
        Message::parse_protected(&nested, &AEAD).unwrap_err(),
        Error::NestedSk
    );
    let critical_inside = seal_raw(PayloadType(200), &[0, 0x80, 0, 4, 0]);
    let err = Message::parse_protected(&critical_inside, &AEAD).unwrap_err();
    assert_eq!(err, Error::UnsupportedCriticalPayload(PayloadType(200)));
    assert_eq!(
        err.notify_type(),
        Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
    );
    // Padding bytes before Pad Length are skipped whatever they hold (§3.14).
    let padded = seal_raw(PayloadType::NONCE, &[0, 0, 0, 5, 0x42, 0xff, 0xfe, 2]);
    assert_eq!(
        Message::parse_protected(&padded, &AEAD).unwrap().payloads,
        [Payload::Nonce(Nonce(vec![0x42]))]
    );
}

#[test]
fn message_errors_map_to_notifies() {
    let mut v1 = emit(&Message::new(
        header(ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0),
        vec![],
    ));
    v1[17] = 0x10;
    let err = Message::parse(&v1).unwrap_err();
    assert_eq!(err, Error::InvalidMajorVersion(1));
    assert_eq!(err.notify_type(), Some(NotifyType::INVALID_MAJOR_VERSION));
    assert_eq!(
        Message::parse(&v1[..20]).unwrap_err().notify_type(),
        Some(NotifyType::INVALID_SYNTAX)
    );
}

// ---- property tests ----

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn transform() -> impl Strategy<Value = Transform> {
    let attribute = prop_oneof![
        (0u16..0x8000, any::<u16>()).prop_map(|(t, value)| Attribute::Tv {
            ty: AttributeType(t),
            value
        }),
        (0u16..0x8000, bytes(8)).prop_map(|(t, value)| Attribute::Tlv {
            ty: AttributeType(t),
            value
        }),
    ];
    (
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(attribute, 0..3),
    )
        .prop_map(|(ty, id, attributes)| Transform {
            ty: TransformType(ty),
            id,
            attributes,
        })
}

fn sa() -> impl Strategy<Value = Sa> {
    let proposal = (
        any::<u8>(),
        any::<u8>(),
        bytes(9),
        proptest::collection::vec(transform(), 0..5),
    )
        .prop_map(|(number, protocol, spi, transforms)| Proposal {
            number,
            protocol: ProtocolId(protocol),
            spi,
            transforms,
        });
    proptest::collection::vec(proposal, 0..3).prop_map(|proposals| Sa { proposals })
}

fn identity() -> impl Strategy<Value = Identity> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Identity::Ipv4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| Identity::Ipv6(Ipv6Addr::from(a))),
        bytes(20).prop_map(Identity::Fqdn),
        Just(Identity::Null),
        (any::<u8>(), bytes(20))
            .prop_filter("typed variants have their own constructors", |(t, d)| {
                !(matches!(*t, 1 | 2 | 5) || (*t == 13 && d.is_empty()))
            })
            .prop_map(|(t, data)| Identity::Other {
                ty: IdType(t),
                data
            }),
    ]
}

fn selector() -> impl Strategy<Value = TrafficSelector> {
    let v4 =
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(s, e)| AddrRange::V4(s.into(), e.into()));
    let v6 =
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(s, e)| AddrRange::V6(s.into(), e.into()));
    prop_oneof![
        (any::<u8>(), any::<u16>(), any::<u16>(), prop_oneof![v4, v6]).prop_map(
            |(ip_protocol, start_port, end_port, addrs)| {
                TrafficSelector::Addr(AddrSelector {
                    ip_protocol,
                    start_port,
                    end_port,
                    addrs,
                })
            }
        ),
        (
            any::<u8>().prop_filter("address types", |t| !matches!(*t, 7 | 8)),
            any::<u8>(),
            bytes(12)
        )
            .prop_map(|(t, second_octet, data)| TrafficSelector::Unknown {
                ty: TsType(t),
                second_octet,
                data
            }),
    ]
}

fn ts() -> impl Strategy<Value = Ts> {
    proptest::collection::vec(selector(), 0..4).prop_map(|selectors| Ts { selectors })
}

/// Payloads that may appear anywhere in a chain (SK/SKF only last, added separately).
fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        sa().prop_map(Payload::Sa),
        (any::<u16>(), bytes(40)).prop_map(|(g, data)| Payload::Ke(Ke {
            group: DhGroup(g),
            data
        })),
        identity().prop_map(Payload::IdI),
        identity().prop_map(Payload::IdR),
        (any::<u8>(), bytes(40)).prop_map(|(m, data)| Payload::Auth(Auth {
            method: AuthMethod(m),
            data
        })),
        bytes(40).prop_map(|n| Payload::Nonce(Nonce(n))),
        (any::<u8>(), bytes(9), any::<u16>(), bytes(20)).prop_map(|(p, spi, t, data)| {
            Payload::Notify(Notify::with_spi(ProtocolId(p), spi, NotifyType(t), data))
        }),
        (any::<u8>(), 0u8..9, 0usize..4).prop_map(|(p, size, n)| {
            // SPI Size as §3.11 has it: 0 and no SPIs for IKE, 4 for ESP
            // and AH, and never SPIs of size 0.
            let size = match p {
                1 => 0,
                2 | 3 => 4,
                _ => size,
            };
            let n = if size == 0 { 0 } else { n };
            let spis = (0..n).flat_map(|i| vec![i as u8; size as usize]).collect();
            Payload::Delete(Delete {
                protocol: ProtocolId(p),
                spi_size: size,
                spis,
            })
        }),
        bytes(20).prop_map(|v| Payload::Vendor(VendorId(v))),
        ts().prop_map(Payload::TsI),
        ts().prop_map(Payload::TsR),
        (
            any::<u8>().prop_filter("uninterpreted", |t| *t != 0
                && !Payload::is_interpreted(PayloadType(*t))),
            bytes(20)
        )
            .prop_map(|(t, body)| Payload::Unknown(Unknown {
                ty: PayloadType(t),
                critical: false,
                body
            })),
    ]
}

fn sealed_last() -> impl Strategy<Value = Option<Payload>> {
    prop_oneof![
        Just(None),
        (any::<u8>(), bytes(40)).prop_map(|(t, body)| Some(Payload::Sk(Sk {
            first_inner: PayloadType(t),
            body
        }))),
        (any::<u8>(), any::<u16>(), any::<u16>(), bytes(40)).prop_map(
            |(t, number, total, body)| {
                Some(Payload::Skf(Skf {
                    first_inner: PayloadType(t),
                    number,
                    total,
                    body,
                }))
            }
        ),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<(u64, u64, u8, u8, u32)>(),
        0u8..16,
        proptest::collection::vec(payload(), 0..6),
        sealed_last(),
    )
        .prop_map(
            |((spi_i, spi_r, ex, flags, mid), minor, mut payloads, last)| {
                payloads.extend(last);
                let mut header = Header::new(spi_i, spi_r, ExchangeType(ex), Flags(flags), mid);
                header.minor_version = minor;
                Message::new(header, payloads)
            },
        )
}

proptest! {
    #[test]
    fn messages_round_trip(m in message()) {
        let bytes = emit(&m);
        prop_assert_eq!(bytes.len(), m.buffer_len());
        let parsed = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &m);
        prop_assert_eq!(emit(&parsed), bytes);
    }

    #[test]
    fn protected_messages_round_trip(
        m in message(),
        iv in any::<[u8; 8]>(),
        block in 1usize..20,
    ) {
        let inner: Vec<Payload> =
            m.payloads.into_iter().filter(|p| !matches!(p, Payload::Sk(_) | Payload::Skf(_))).collect();
        let cipher = XorCipher { block };
        let mut out = Vec::new();
        Message::emit_protected(&m.header, &inner, &cipher, &iv, &mut out).unwrap();
        prop_assert_eq!(Message::parse_protected(&out, &cipher).unwrap(), Message::new(m.header, inner));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(300)) {
        let _ = Message::parse(&data);
        let _ = Message::parse_protected(&data, &AEAD);
        let _ = udp_encap::classify(&data);
    }

    #[test]
    fn mutated_messages_never_panic_and_reparse(m in message(), at in any::<prop::sample::Index>(), xor in 1u8..) {
        let mut bytes = emit(&m);
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(parsed) = Message::parse(&bytes) {
            prop_assert_eq!(Message::parse(&emit(&parsed)).unwrap(), parsed);
        }
    }
}
