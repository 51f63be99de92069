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
//! Message layout (include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h):
//! `nlmsghdr` (16 bytes), `nfgenmsg` (family, version 0, resource id),
//! then attributes `NFTA_SET_ELEM_LIST_TABLE`, `NFTA_SET_ELEM_LIST_SET` and
//! the nested list `NFTA_SET_ELEM_LIST_ELEMENTS` → `NFTA_LIST_ELEM` →
//! `NFTA_SET_ELEM_KEY` → `NFTA_DATA_VALUE` (the address, network byte order).

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

// netlink(7)
const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

// nfnetlink.h
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;

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
        let sock = Socket::new(
            Domain::from(AF_NETLINK),
            Type::RAW.cloexec(),
            Some(Protocol::from(NETLINK_NETFILTER)),
        )
        .map_err(NetlinkError::Socket)?;
        sock.set_read_timeout(Some(ACK_TIMEOUT))
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
        let mut buf = Vec::with_capacity(256 + peers.len() * 48);
        let begin = self.next_seq();
        batch_marker(&mut buf, NFNL_MSG_BATCH_BEGIN, begin);
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
            element_message(&mut buf, op, seq, &self.table, set, &elements);
            sent.push(Sent { seq, set, elements });
        }
        let end = self.next_seq();
        batch_marker(&mut buf, NFNL_MSG_BATCH_END, end);
        self.sock.send(&buf).map_err(NetlinkError::Socket)?;
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
            let n = match std::io::Read::read(&mut &self.sock, &mut buf) {
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
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
            let e = &data[NLMSG_HDRLEN..NLMSG_HDRLEN + 4];
            let error = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
            out.push((seq, error.saturating_neg()));
        }
        data = &data[align(len).min(data.len())..];
    }
    out
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Starts a netlink message; returns its offset (for [`finish`]).
fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    // nfgenmsg
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    at
}

/// Writes the length of the message (or nested attribute) that starts at `at`.
fn finish(buf: &mut [u8], at: usize, width: Width) {
    let len = buf.len() - at;
    match width {
        Width::Message => {
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
        }
        Width::Attribute => {
            let len = u16::try_from(len).unwrap_or(u16::MAX);
            buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
    }
}

#[derive(Clone, Copy)]
enum Width {
    Message,
    Attribute,
}

fn batch_marker(buf: &mut Vec<u8>, kind: u16, seq: u32) {
    let at = header(
        buf,
        kind,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    finish(buf, at, Width::Message);
}

fn element_message(
    buf: &mut Vec<u8>,
    op: SetOp,
    seq: u32,
    table: &str,
    set: &str,
    elements: &[IpAddr],
) {
    let (msg, flags) = match op {
        SetOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
        SetOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
    };
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | msg;
    let at = header(buf, kind, flags, seq, NFPROTO_INET, 0);
    debug_assert_eq!(buf.len() - at, NLMSG_HDRLEN + NFGENMSG_LEN);
    string_attr(buf, NFTA_SET_ELEM_LIST_TABLE, table);
    string_attr(buf, NFTA_SET_ELEM_LIST_SET, set);
    let list = nest_start(buf, NFTA_SET_ELEM_LIST_ELEMENTS);
    for peer in elements {
        let elem = nest_start(buf, NFTA_LIST_ELEM);
        let key = nest_start(buf, NFTA_SET_ELEM_KEY);
        match peer {
            IpAddr::V4(a) => attr(buf, NFTA_DATA_VALUE, &a.octets()),
            IpAddr::V6(a) => attr(buf, NFTA_DATA_VALUE, &a.octets()),
        }
        finish(buf, key, Width::Attribute);
        finish(buf, elem, Width::Attribute);
    }
    finish(buf, list, Width::Attribute);
    finish(buf, at, Width::Message);
}

fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    pad(buf);
}

fn string_attr(buf: &mut Vec<u8>, kind: u16, value: &str) {
    let mut v = Vec::with_capacity(value.len() + 1);
    v.extend_from_slice(value.as_bytes());
    v.push(0);
    attr(buf, kind, &v);
}

fn nest_start(buf: &mut Vec<u8>, kind: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn pad(buf: &mut Vec<u8>) {
    buf.resize(align(buf.len()), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_message_layout() {
        let mut buf = Vec::new();
        element_message(
            &mut buf,
            SetOp::Add,
            7,
            "oemesh",
            "private_peers_v4",
            &["192.0.2.20".parse().unwrap()],
        );
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

    #[test]
    fn acks_are_read_per_message() {
        let mut d = Vec::new();
        for (seq, err) in [(5u32, 0i32), (6, -17)] {
            d.extend_from_slice(&36u32.to_ne_bytes());
            d.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
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
