//! The IKEv2 number spaces (IANA "IKEv2 Parameters" registry) as newtypes.
//!
//! Each type wraps the raw wire value, so values this code does not know parse and
//! round-trip unchanged (the style guide's "unknown is not an error on the wire").
//! `Debug` prints the IANA name of known values (`COOKIE`) and the type with the
//! number for the others (`NotifyType(40001)`).

use std::fmt;

/// Declares one number space: a `Copy` newtype, its known values as associated
/// constants, `name()`, `Debug`, and conversions from and to the raw integer.
macro_rules! number_space {
    (
        $(#[$meta:meta])*
        $name:ident($raw:ty) {
            $( $(#[$vmeta:meta])* $konst:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $raw);

        impl $name {
            $( $(#[$vmeta])* pub const $konst: Self = Self($value); )*

            /// The IANA name of a known value, `None` for values this code does not know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, concat!(stringify!($name), "({})"), self.0),
                }
            }
        }

        impl From<$raw> for $name {
            fn from(raw: $raw) -> Self {
                Self(raw)
            }
        }

        impl From<$name> for $raw {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

number_space! {
    /// Exchange Type in the IKE header (RFC 7296 §3.1).
    ExchangeType(u8) {
        /// RFC 7296 §1.2.
        IKE_SA_INIT = 34,
        /// RFC 7296 §1.2.
        IKE_AUTH = 35,
        /// RFC 7296 §1.3.
        CREATE_CHILD_SA = 36,
        /// RFC 7296 §1.4.
        INFORMATIONAL = 37,
        /// RFC 5723.
        IKE_SESSION_RESUME = 38,
        /// RFC 9242.
        IKE_INTERMEDIATE = 43,
        /// RFC 9370.
        IKE_FOLLOWUP_KE = 44,
    }
}

number_space! {
    /// Payload Type, the "Next Payload" values (RFC 7296 §3.2).
    PayloadType(u8) {
        /// No next payload: the chain ends.
        NONE = 0,
        /// Security Association (§3.3).
        SA = 33,
        /// Key Exchange (§3.4).
        KE = 34,
        /// Identification - Initiator (§3.5).
        IDI = 35,
        /// Identification - Responder (§3.5).
        IDR = 36,
        /// Certificate (§3.6); not in oemesh's profile, kept as unknown.
        CERT = 37,
        /// Certificate Request (§3.7); not in oemesh's profile, kept as unknown.
        CERTREQ = 38,
        /// Authentication (§3.8).
        AUTH = 39,
        /// Nonce (§3.9).
        NONCE = 40,
        /// Notify (§3.10).
        NOTIFY = 41,
        /// Delete (§3.11).
        DELETE = 42,
        /// Vendor ID (§3.12).
        VENDOR_ID = 43,
        /// Traffic Selector - Initiator (§3.13).
        TSI = 44,
        /// Traffic Selector - Responder (§3.13).
        TSR = 45,
        /// Encrypted and Authenticated (§3.14).
        SK = 46,
        /// Configuration (§3.15); not in oemesh's profile, kept as unknown.
        CP = 47,
        /// Extensible Authentication (§3.16); not in oemesh's profile, kept as unknown.
        EAP = 48,
        /// Generic Secure Password Methods (RFC 6467).
        GSPM = 49,
        /// Encrypted and Authenticated Fragment (RFC 7383 §2.5).
        SKF = 53,
    }
}

number_space! {
    /// Transform Type (RFC 7296 §3.3.2).
    TransformType(u8) {
        /// Encryption Algorithm (ENCR), IDs in [`EncrId`].
        ENCR = 1,
        /// Pseudorandom Function (PRF), IDs in [`PrfId`].
        PRF = 2,
        /// Integrity Algorithm (INTEG), IDs in [`IntegId`].
        INTEG = 3,
        /// Diffie-Hellman group (D-H, "Key Exchange Method" since RFC 9370), IDs in [`DhGroup`].
        DH = 4,
        /// Extended Sequence Numbers (ESN), IDs in [`EsnId`].
        ESN = 5,
    }
}

number_space! {
    /// Transform IDs of Transform Type 1, Encryption Algorithm (RFC 7296 §3.3.2).
    EncrId(u16) {
        /// RFC 2451.
        DES_IV64 = 1,
        /// RFC 2405.
        DES = 2,
        /// RFC 2451.
        TRIPLE_DES = 3,
        /// RFC 2410 (ESP only).
        NULL = 11,
        /// RFC 3602.
        AES_CBC = 12,
        /// RFC 3686.
        AES_CTR = 13,
        /// RFC 4309, 5282.
        AES_CCM_8 = 14,
        /// RFC 4309, 5282.
        AES_CCM_12 = 15,
        /// RFC 4309, 5282.
        AES_CCM_16 = 16,
        /// RFC 4106, 5282.
        AES_GCM_8 = 18,
        /// RFC 4106, 5282.
        AES_GCM_12 = 19,
        /// AES-GCM with a 16-octet ICV (RFC 4106, 5282); oemesh uses 256-bit keys.
        AES_GCM_16 = 20,
        /// RFC 4543 (ESP only).
        NULL_AUTH_AES_GMAC = 21,
        /// RFC 7634.
        CHACHA20_POLY1305 = 28,
    }
}

number_space! {
    /// Transform IDs of Transform Type 2, Pseudorandom Function (RFC 7296 §3.3.2).
    PrfId(u16) {
        /// RFC 2104.
        HMAC_MD5 = 1,
        /// RFC 2104.
        HMAC_SHA1 = 2,
        /// RFC 4434.
        AES128_XCBC = 4,
        /// RFC 4868.
        HMAC_SHA2_256 = 5,
        /// RFC 4868.
        HMAC_SHA2_384 = 6,
        /// RFC 4868.
        HMAC_SHA2_512 = 7,
        /// RFC 4615.
        AES128_CMAC = 8,
    }
}

number_space! {
    /// Transform IDs of Transform Type 3, Integrity Algorithm (RFC 7296 §3.3.2).
    IntegId(u16) {
        /// No separate integrity algorithm (AEAD ciphers).
        NONE = 0,
        /// RFC 2403.
        HMAC_MD5_96 = 1,
        /// RFC 2404.
        HMAC_SHA1_96 = 2,
        /// RFC 3566.
        AES_XCBC_96 = 5,
        /// RFC 4494.
        AES_CMAC_96 = 8,
        /// RFC 4868.
        HMAC_SHA2_256_128 = 12,
        /// RFC 4868.
        HMAC_SHA2_384_192 = 13,
        /// RFC 4868.
        HMAC_SHA2_512_256 = 14,
    }
}

number_space! {
    /// Transform IDs of Transform Type 4, Diffie-Hellman group (RFC 7296 §3.3.2),
    /// also the "DH Group Num" of the KE payload (§3.4).
    DhGroup(u16) {
        /// No key exchange (CREATE_CHILD_SA without PFS).
        NONE = 0,
        /// RFC 7296 Appendix B.
        MODP_768 = 1,
        /// RFC 7296 Appendix B.
        MODP_1024 = 2,
        /// RFC 3526.
        MODP_1536 = 5,
        /// RFC 3526.
        MODP_2048 = 14,
        /// RFC 3526.
        MODP_3072 = 15,
        /// RFC 3526.
        MODP_4096 = 16,
        /// RFC 3526.
        MODP_6144 = 17,
        /// RFC 3526.
        MODP_8192 = 18,
        /// RFC 5903.
        ECP_256 = 19,
        /// RFC 5903.
        ECP_384 = 20,
        /// RFC 5903.
        ECP_521 = 21,
        /// RFC 8031; oemesh's group.
        CURVE25519 = 31,
        /// RFC 8031.
        CURVE448 = 32,
    }
}

number_space! {
    /// Transform IDs of Transform Type 5, Extended Sequence Numbers (RFC 7296 §3.3.2).
    EsnId(u16) {
        /// 32-bit sequence numbers.
        NO_ESN = 0,
        /// 64-bit extended sequence numbers.
        ESN = 1,
    }
}

number_space! {
    /// Auth Method of the AUTH payload (RFC 7296 §3.8).
    AuthMethod(u8) {
        /// RSA Digital Signature (RFC 7296).
        RSA_SIG = 1,
        /// Shared Key Message Integrity Code (RFC 7296).
        SHARED_KEY_MIC = 2,
        /// DSS Digital Signature (RFC 7296).
        DSS_SIG = 3,
        /// RFC 4754.
        ECDSA_SHA256_P256 = 9,
        /// RFC 4754.
        ECDSA_SHA384_P384 = 10,
        /// RFC 4754.
        ECDSA_SHA512_P521 = 11,
        /// RFC 6467.
        GENERIC_SECURE_PASSWORD = 12,
        /// NULL Authentication (RFC 7619).
        NULL = 13,
        /// Digital Signature (RFC 7427): an ASN.1 AlgorithmIdentifier precedes the signature.
        DIGITAL_SIGNATURE = 14,
    }
}

number_space! {
    /// ID Type of the IDi/IDr payloads (RFC 7296 §3.5).
    IdType(u8) {
        /// A single four-octet IPv4 address.
        IPV4_ADDR = 1,
        /// A fully-qualified domain name string, no terminator.
        FQDN = 2,
        /// An RFC 822 email address string.
        RFC822_ADDR = 3,
        /// A single sixteen-octet IPv6 address.
        IPV6_ADDR = 5,
        /// DER encoding of an ASN.1 X.500 Distinguished Name.
        DER_ASN1_DN = 9,
        /// DER encoding of an ASN.1 X.509 GeneralName.
        DER_ASN1_GN = 10,
        /// Opaque octet stream.
        KEY_ID = 11,
        /// RFC 4595.
        FC_NAME = 12,
        /// No identity, for NULL authentication (RFC 7619 §3).
        NULL = 13,
    }
}

number_space! {
    /// Notify Message Type (RFC 7296 §3.10.1). Values below 16384 are errors,
    /// the others status.
    NotifyType(u16) {
        /// §3.10.1; data: the one-octet payload type.
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        /// §3.10.1.
        INVALID_IKE_SPI = 4,
        /// §3.10.1.
        INVALID_MAJOR_VERSION = 5,
        /// §3.10.1.
        INVALID_SYNTAX = 7,
        /// §3.10.1.
        INVALID_MESSAGE_ID = 9,
        /// §3.10.1.
        INVALID_SPI = 11,
        /// §3.10.1.
        NO_PROPOSAL_CHOSEN = 14,
        /// §3.10.1; data: the two-octet accepted DH group.
        INVALID_KE_PAYLOAD = 17,
        /// §3.10.1.
        AUTHENTICATION_FAILED = 24,
        /// §3.10.1.
        SINGLE_PAIR_REQUIRED = 34,
        /// §3.10.1.
        NO_ADDITIONAL_SAS = 35,
        /// §3.10.1.
        INTERNAL_ADDRESS_FAILURE = 36,
        /// §3.10.1.
        FAILED_CP_REQUIRED = 37,
        /// §3.10.1.
        TS_UNACCEPTABLE = 38,
        /// §3.10.1.
        INVALID_SELECTORS = 39,
        /// §3.10.1.
        TEMPORARY_FAILURE = 43,
        /// §3.10.1.
        CHILD_SA_NOT_FOUND = 44,
        /// §3.10.1.
        INITIAL_CONTACT = 16384,
        /// §3.10.1.
        SET_WINDOW_SIZE = 16385,
        /// §3.10.1.
        ADDITIONAL_TS_POSSIBLE = 16386,
        /// §3.10.1.
        IPCOMP_SUPPORTED = 16387,
        /// §2.23: SHA-1 of SPIs, address and port of the sender.
        NAT_DETECTION_SOURCE_IP = 16388,
        /// §2.23: SHA-1 of SPIs, address and port of the recipient.
        NAT_DETECTION_DESTINATION_IP = 16389,
        /// §2.6.
        COOKIE = 16390,
        /// §1.3.1.
        USE_TRANSPORT_MODE = 16391,
        /// §3.10.1.
        HTTP_CERT_LOOKUP_SUPPORTED = 16392,
        /// §1.3.3; the SPI field names the Child SA being rekeyed.
        REKEY_SA = 16393,
        /// §1.3.1.
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        /// §1.3.1.
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        /// RFC 4555.
        MOBIKE_SUPPORTED = 16396,
        /// RFC 4555.
        ADDITIONAL_IP4_ADDRESS = 16397,
        /// RFC 4555.
        ADDITIONAL_IP6_ADDRESS = 16398,
        /// RFC 4555.
        NO_ADDITIONAL_ADDRESSES = 16399,
        /// RFC 4555.
        UPDATE_SA_ADDRESSES = 16400,
        /// RFC 4555.
        COOKIE2 = 16401,
        /// RFC 4555.
        NO_NATS_ALLOWED = 16402,
        /// RFC 4478.
        AUTH_LIFETIME = 16403,
        /// RFC 4739.
        MULTIPLE_AUTH_SUPPORTED = 16404,
        /// RFC 4739.
        ANOTHER_AUTH_FOLLOWS = 16405,
        /// RFC 5685.
        REDIRECT_SUPPORTED = 16406,
        /// RFC 5685.
        REDIRECT = 16407,
        /// RFC 5685.
        REDIRECTED_FROM = 16408,
        /// RFC 6023.
        CHILDLESS_IKEV2_SUPPORTED = 16418,
        /// RFC 7383 (IANA: IKEV2_FRAGMENTATION_SUPPORTED).
        FRAGMENTATION_SUPPORTED = 16430,
        /// RFC 7427 §4; data: a list of two-octet [`HashAlgorithm`]s.
        SIGNATURE_HASH_ALGORITHMS = 16431,
        /// RFC 9242.
        INTERMEDIATE_EXCHANGE_SUPPORTED = 16438,
    }
}

impl NotifyType {
    /// Error types are below 16384 (RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

number_space! {
    /// Protocol ID of proposals, notifications and deletes (RFC 7296 §3.3.1).
    ProtocolId(u8) {
        /// No protocol: a notification about the IKE SA as a whole carries 0 (§3.10).
        NONE = 0,
        /// The IKE SA.
        IKE = 1,
        /// Authentication Header.
        AH = 2,
        /// Encapsulating Security Payload.
        ESP = 3,
    }
}

number_space! {
    /// TS Type of a traffic selector (RFC 7296 §3.13.1).
    TsType(u8) {
        /// An IPv4 address range with protocol and port range.
        IPV4_ADDR_RANGE = 7,
        /// An IPv6 address range with protocol and port range.
        IPV6_ADDR_RANGE = 8,
        /// RFC 4595.
        FC_ADDR_RANGE = 9,
    }
}

number_space! {
    /// Hash algorithms announced in N(SIGNATURE_HASH_ALGORITHMS) (RFC 7427 §4, RFC 8420 §2).
    HashAlgorithm(u16) {
        /// RFC 7427.
        SHA1 = 1,
        /// RFC 7427.
        SHA2_256 = 2,
        /// RFC 7427.
        SHA2_384 = 3,
        /// RFC 7427.
        SHA2_512 = 4,
        /// RFC 8420: the signature algorithm hashes itself (Ed25519).
        IDENTITY = 5,
    }
}

number_space! {
    /// Attribute Type of a transform attribute (RFC 7296 §3.3.5).
    AttributeType(u16) {
        /// Key Length in bits, always in the TV (short) form.
        KEY_LENGTH = 14,
    }
}

number_space! {
    /// CFG Type of the Configuration payload (RFC 7296 §3.15).
    CfgType(u8) {
        /// A request for configuration (the initiator's, in IKE_AUTH).
        CFG_REQUEST = 1,
        /// The answer to a request.
        CFG_REPLY = 2,
        /// Configuration pushed without a request.
        CFG_SET = 3,
        /// The answer to a CFG_SET.
        CFG_ACK = 4,
    }
}

number_space! {
    /// Configuration attribute types (RFC 7296 §3.15.1, IANA registry).
    CfgAttributeType(u16) {
        /// An IPv4 address for the initiator.
        INTERNAL_IP4_ADDRESS = 1,
        /// Its netmask.
        INTERNAL_IP4_NETMASK = 2,
        /// A DNS server (IPv4).
        INTERNAL_IP4_DNS = 3,
        /// A NetBIOS name server (IPv4).
        INTERNAL_IP4_NBNS = 4,
        /// A DHCP server (IPv4).
        INTERNAL_IP4_DHCP = 6,
        /// The application's version string.
        APPLICATION_VERSION = 7,
        /// An IPv6 address and prefix length for the initiator.
        INTERNAL_IP6_ADDRESS = 8,
        /// A DNS server (IPv6).
        INTERNAL_IP6_DNS = 10,
        /// A DHCP server (IPv6).
        INTERNAL_IP6_DHCP = 12,
        /// A protected IPv4 subnet.
        INTERNAL_IP4_SUBNET = 13,
        /// The attribute types the sender supports.
        SUPPORTED_ATTRIBUTES = 14,
        /// A protected IPv6 subnet.
        INTERNAL_IP6_SUBNET = 15,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_known_and_numbers_unknown() {
        assert_eq!(format!("{:?}", NotifyType::COOKIE), "COOKIE");
        assert_eq!(format!("{:?}", NotifyType(40001)), "NotifyType(40001)");
        assert_eq!(format!("{:?}", DhGroup::CURVE25519), "CURVE25519");
        assert_eq!(format!("{:?}", PayloadType(250)), "PayloadType(250)");
        assert_eq!(NotifyType::SIGNATURE_HASH_ALGORITHMS.0, 16431);
        assert!(NotifyType::TS_UNACCEPTABLE.is_error());
        assert!(!NotifyType::INITIAL_CONTACT.is_error());
    }
}
