//! Set-element updates of our nftables table over netlink (nfnetlink,
//! `NETLINK_NETFILTER`), without starting `nft`.
//!
//! One call sends one nf_tables batch — `NFNL_MSG_BATCH_BEGIN`, one
//! `NFT_MSG_NEWSETELEM` or `NFT_MSG_DELSETELEM` per set touched, and
//! `NFNL_MSG_BATCH_END` — which the kernel applies as one transaction, and
//! reads the kernel's acknowledgement of each element message. This is what
//! `nft -f -` does for `add element` / `delete element` lines, minus a process
//! start per call: with `nft`, adding a new private peer cost ~2× the agent's
//! own work for the whole handshake (docs/benchmarks.md, control plane).
//!
//! The table and its chain are still written by `nft` once at start
//! ([`super::nft`]): their rules are rare, large, and easier to read as a script.
//!
//! The netlink framing (message headers, attributes, alignment, the
//! kernel's `NLMSG_ERROR` answers) is netlink-packet-core's and the socket
//! netlink-sys's; this file holds only what nf_tables adds
//! (include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h): the `nfgenmsg`
//! after each header, and the attributes `NFTA_SET_ELEM_LIST_TABLE`,
//! `NFTA_SET_ELEM_LIST_SET` and the nested list `NFTA_SET_ELEM_LIST_ELEMENTS`
//! → `NFTA_LIST_ELEM` → `NFTA_SET_ELEM_KEY` → `NFTA_DATA_VALUE` (the address,
//! network byte order).

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, Emitable, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable, Nla,
};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

// nfnetlink.h
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNETLINK_V0: u8 = 0;
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFGENMSG_LEN: usize = 4;

// nf_tables.h
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;

/// How long to wait for the kernel's acknowledgements (it answers in
/// microseconds; this only bounds a kernel that never does).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Add or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// `add element` (an element already there is not an error).
    Add,
    /// `delete element` (an element not there is not an error either).
    Delete,
}

/// A netlink update that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The socket could not be opened or used.
    #[error("nftables netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused an element message.
    #[error("the kernel refused `{op} element inet {table} {set} {{ {elements} }}`: {error}")]
    Refused {
        /// `add` or `delete`
        op: &'static str,
        /// our table
        table: String,
        /// the set
        set: &'static str,
        /// the addresses, comma-separated
        elements: String,
        /// the errno the kernel gave
        #[source]
        error: io::Error,
    },
    /// No acknowledgement came.
    #[error("no answer from the kernel to an nftables update within {ACK_TIMEOUT:?}")]
    Timeout,
}

/// One open `NETLINK_NETFILTER` socket, in the network namespace it was
/// opened in.
#[derive(Debug)]
pub struct SetSocket {
    sock: Socket,
    table: String,
    seq: u32,
}

/// One element message of a batch, kept to name it in an error.
struct Sent {
    seq: u32,
    set: &'static str,
    elements: Vec<IpAddr>,
}

impl SetSocket {
    /// Opens the socket for table `inet <table>`.
    pub fn open(table: &str) -> Result<SetSocket, NetlinkError> {
        let sock = Socket::new(NETLINK_NETFILTER).map_err(NetlinkError::Socket)?;
        socket2::SockRef::from(&sock)
            .set_read_timeout(Some(ACK_TIMEOUT))
            .map_err(NetlinkError::Socket)?;
        Ok(SetSocket {
            sock,
            table: table.to_owned(),
            // Any start works: the kernel echoes it, we match on it.
            seq: std::process::id(),
        })
    }

    /// Adds `peers` to (or deletes them from) the set `set_of` names for each
    /// address family, all in one transaction.
    pub fn update(
        &mut self,
        op: SetOp,
        peers: &[IpAddr],
        set_of: impl Fn(IpAddr) -> &'static str,
    ) -> Result<(), NetlinkError> {
        if peers.is_empty() {
            return Ok(());
        }
        let mut batch = vec![NfMessage::BatchBegin.framed(self.next_seq(), NLM_F_REQUEST)];
        let mut sent: Vec<Sent> = Vec::new();
        // One element message per family (each family has its own set).
        for v4 in [true, false] {
            let elements: Vec<IpAddr> = peers
                .iter()
                .copied()
                .filter(|p| p.is_ipv4() == v4)
                .collect();
            let Some(&first) = elements.first() else {
                continue;
            };
            let seq = self.next_seq();
            let set = set_of(first);
            batch.push(element_message(op, seq, &self.table, set, &elements));
            sent.push(Sent { seq, set, elements });
        }
        batch.push(NfMessage::BatchEnd.framed(self.next_seq(), NLM_F_REQUEST));
        self.sock
            .send(&serialize(&batch), 0)
            .map_err(NetlinkError::Socket)?;
        self.await_acks(op, &sent)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Reads until every element message is acknowledged; the first refusal
    /// is the error (the kernel then rolled the whole batch back).
    fn await_acks(&self, op: SetOp, sent: &[Sent]) -> Result<(), NetlinkError> {
        let mut pending: Vec<u32> = sent.iter().map(|s| s.seq).collect();
        let mut refusal = None;
        let mut buf = vec![0u8; 8192];
        while !pending.is_empty() {
            let n = match self.sock.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(NetlinkError::Timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetlinkError::Socket(e)),
            };
            for (seq, errno) in acks(&buf[..n]) {
                let Some(at) = pending.iter().position(|&s| s == seq) else {
                    continue; // an answer to an earlier, timed-out batch
                };
                pending.swap_remove(at);
                // Deleting what is not there is what we wanted anyway.
                let absent = op == SetOp::Delete && errno == ENOENT;
                if errno != 0 && !absent && refusal.is_none() {
                    let s = sent.iter().find(|s| s.seq == seq);
                    refusal = Some(NetlinkError::Refused {
                        op: match op {
                            SetOp::Add => "add",
                            SetOp::Delete => "delete",
                        },
                        table: self.table.clone(),
                        set: s.map_or("?", |s| s.set),
                        elements: s.map_or_else(String::new, |s| {
                            s.elements
                                .iter()
                                .map(IpAddr::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }),
                        error: io::Error::from_raw_os_error(errno),
                    });
                }
            }
        }
        refusal.map_or(Ok(()), Err)
    }
}

const ENOENT: i32 = 2;

/// `(sequence number, errno)` of each `NLMSG_ERROR` in a datagram (errno 0 is
/// an acknowledgement). Anything malformed ends the walk.
fn acks(mut data: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while let Ok(framed) = NetlinkBuffer::new_checked(data) {
        let len = framed.length() as usize;
        // Other messages (not ours to read) are skipped.
        if let Ok(message) = NetlinkMessage::<NfMessage>::deserialize(&data[..len])
            && let NetlinkPayload::Error(e) = message.payload
        {
            let errno = e.code.map_or(0, |c| c.get().saturating_neg());
            out.push((message.header.sequence_number, errno));
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    out
}

/// The body of one nfnetlink message we send: the batch markers, or one set
/// element list. (The kernel sends us only `NLMSG_ERROR`, which
/// netlink-packet-core parses itself.)
#[derive(Clone, Debug, PartialEq, Eq)]
enum NfMessage {
    BatchBegin,
    BatchEnd,
    Elements { op: SetOp, attrs: Vec<Attr> },
}

impl NfMessage {
    /// This body behind a netlink header with `seq` and `flags`.
    fn framed(self, seq: u32, flags: u16) -> NetlinkMessage<NfMessage> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(self));
        message.finalize();
        message
    }

    /// `nfgenmsg`: the address family and the resource id (the subsystem for
    /// batch markers), big-endian.
    fn nfgenmsg(&self) -> [u8; NFGENMSG_LEN] {
        let (family, res_id) = match self {
            NfMessage::BatchBegin | NfMessage::BatchEnd => (NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES),
            NfMessage::Elements { .. } => (NFPROTO_INET, 0),
        };
        let [hi, lo] = res_id.to_be_bytes();
        [family, NFNETLINK_V0, hi, lo]
    }
}

impl NetlinkSerializable for NfMessage {
    fn message_type(&self) -> u16 {
        match self {
            NfMessage::BatchBegin => NFNL_MSG_BATCH_BEGIN,
            NfMessage::BatchEnd => NFNL_MSG_BATCH_END,
            NfMessage::Elements { op: SetOp::Add, .. } => {
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM
            }
            NfMessage::Elements {
                op: SetOp::Delete, ..
            } => (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM,
        }
    }

    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN
            + match self {
                NfMessage::Elements { attrs, .. } => attrs.as_slice().buffer_len(),
                NfMessage::BatchBegin | NfMessage::BatchEnd => 0,
            }
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..NFGENMSG_LEN].copy_from_slice(&self.nfgenmsg());
        if let NfMessage::Elements { attrs, .. } = self {
            attrs.as_slice().emit(&mut buffer[NFGENMSG_LEN..]);
        }
    }
}

impl NetlinkDeserializable for NfMessage {
    type Error = DecodeError;

    /// We send requests only; anything but `NLMSG_ERROR` back is not ours.
    fn deserialize(header: &NetlinkHeader, _payload: &[u8]) -> Result<Self, DecodeError> {
        Err(DecodeError::from(format!(
            "unexpected nfnetlink message type {:#x}",
            header.message_type
        )))
    }
}

/// One nf_tables attribute of a set element list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attr {
    /// A NUL-terminated string.
    Str(u16, String),
    /// Raw bytes.
    Bytes(u16, Vec<u8>),
    /// Attributes inside this one (`NLA_F_NESTED`).
    Nested(u16, Vec<Attr>),
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Str(_, s) => s.len() + 1,
            Attr::Bytes(_, b) => b.len(),
            Attr::Nested(_, inner) => inner.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Str(k, _) | Attr::Bytes(k, _) | Attr::Nested(k, _) => *k,
        }
    }

    fn is_nested(&self) -> bool {
        matches!(self, Attr::Nested(..))
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Str(_, s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            Attr::Bytes(_, b) => buffer[..b.len()].copy_from_slice(b),
            Attr::Nested(_, inner) => inner.as_slice().emit(buffer),
        }
    }
}

/// `add element` / `delete element inet <table> <set> { elements }`.
fn element_message(
    op: SetOp,
    seq: u32,
    table: &str,
    set: &str,
    elements: &[IpAddr],
) -> NetlinkMessage<NfMessage> {
    let flags = match op {
        SetOp::Add => NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        SetOp::Delete => NLM_F_REQUEST | NLM_F_ACK,
    };
    let element = |peer: &IpAddr| {
        let value = match peer {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let key = Attr::Nested(NFTA_SET_ELEM_KEY, vec![Attr::Bytes(NFTA_DATA_VALUE, value)]);
        Attr::Nested(NFTA_LIST_ELEM, vec![key])
    };
    let attrs = vec![
        Attr::Str(NFTA_SET_ELEM_LIST_TABLE, table.to_owned()),
        Attr::Str(NFTA_SET_ELEM_LIST_SET, set.to_owned()),
        Attr::Nested(
            NFTA_SET_ELEM_LIST_ELEMENTS,
            elements.iter().map(element).collect(),
        ),
    ];
    NfMessage::Elements { op, attrs }.framed(seq, flags)
}

/// The batch as one datagram (each message's length is already 4-aligned).
fn serialize(batch: &[NetlinkMessage<NfMessage>]) -> Vec<u8> {
    let mut buf = vec![0u8; batch.iter().map(NetlinkMessage::buffer_len).sum()];
    let mut at = 0;
    for message in batch {
        let len = message.buffer_len();
        message.serialize(&mut buf[at..at + len]);
        at += len;
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_message_layout() {
        let buf = serialize(&[element_message(
            SetOp::Add,
            7,
            "oemesh",
            "private_peers_v4",
            &["192.0.2.20".parse().unwrap()],
        )]);
        // header: length, type (subsys 10 << 8 | 12), flags, seq
        assert_eq!(
            u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize,
            buf.len()
        );
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), 0x0a0c);
        assert_eq!(u16::from_ne_bytes([buf[6], buf[7]]), 0x405);
        assert_eq!(u32::from_ne_bytes(buf[8..12].try_into().unwrap()), 7);
        // nfgenmsg: inet, v0, res_id 0
        assert_eq!(&buf[16..20], &[1, 0, 0, 0]);
        // table "oemesh\0" (4 + 7 = 11, padded to 12)
        assert_eq!(u16::from_ne_bytes([buf[20], buf[21]]), 11);
        assert_eq!(&buf[24..31], b"oemesh\0");
        // the address is the innermost attribute, last in the message
        assert_eq!(&buf[buf.len() - 4..], &[192, 0, 2, 20]);
        assert_eq!(buf.len() % 4, 0);
    }

    /// The bytes the hand-written encoder sent before netlink-packet-core
    /// (batch begin, one two-element add, batch end), on a little-endian host.
    #[test]
    #[cfg(target_endian = "little")]
    fn batch_bytes_unchanged() {
        let peers = ["192.0.2.20".parse().unwrap(), "192.0.2.21".parse().unwrap()];
        let batch = serialize(&[
            NfMessage::BatchBegin.framed(6, NLM_F_REQUEST),
            element_message(SetOp::Add, 7, "oemesh", "private_peers_v4", &peers),
            NfMessage::BatchEnd.framed(8, NLM_F_REQUEST),
        ]);
        let before = "140000001000010006000000000000000000000a5c0000000c0a0504070000000000000001000000\
                      0b0001006f656d657368000015000200707269766174655f70656572735f76340000000024000380\
                      100001800c00018008000100c0000214100001800c00018008000100c0000215140000001100010008\
                      000000000000000000000a";
        let hex: String = batch.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, before);
    }

    #[test]
    fn acks_are_read_per_message() {
        let mut d = Vec::new();
        for (seq, err) in [(5u32, 0i32), (6, -17)] {
            d.extend_from_slice(&36u32.to_ne_bytes());
            d.extend_from_slice(&netlink_packet_core::NLMSG_ERROR.to_ne_bytes());
            d.extend_from_slice(&0u16.to_ne_bytes());
            d.extend_from_slice(&seq.to_ne_bytes());
            d.extend_from_slice(&0u32.to_ne_bytes());
            d.extend_from_slice(&err.to_ne_bytes());
            d.extend_from_slice(&[0u8; 16]); // the echoed header
        }
        assert_eq!(acks(&d), vec![(5, 0), (6, 17)]);
        // truncated input ends the walk without panicking
        assert_eq!(acks(&d[..40]), vec![(5, 0)]);
    }
}
