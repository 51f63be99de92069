//! How DNS servers are written down: the `HOST[:PORT]` strings of the agent's
//! `dns.servers` and dnskeys' `--server`, and the `nameserver` lines of
//! resolv.conf(5). Pure parsing of text the caller has read; resolving a host
//! name and naming the file or flag in errors are the caller's.

use std::net::{IpAddr, SocketAddr};

/// The port DNS servers listen on unless told otherwise.
pub const DNS_PORT: u16 = 53;

/// A server as written: an address, or a host name still to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerSpec<'a> {
    /// `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53`, `[2001:db8::53]` or
    /// `[2001:db8::53]:5353`.
    Addr(SocketAddr),
    /// `ns.example` or `ns.example:5353`.
    Host {
        /// the name, without the port
        name: &'a str,
        /// the port, [`DNS_PORT`] when none is written
        port: u16,
    },
}

/// Parses `HOST[:PORT]`: an IPv4 address, an IPv6 address (in brackets when a
/// port follows), or a host name; the port defaults to 53. `None` when the text
/// is none of these (empty, a bad port, spaces, a colon in a name).
pub fn parse_server(text: &str) -> Option<ServerSpec<'_>> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(ServerSpec::Addr(addr));
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ServerSpec::Addr(SocketAddr::new(ip, DNS_PORT)));
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (name, port.parse::<u16>().ok()?),
        None => (text, DNS_PORT),
    };
    if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
        return None;
    }
    Some(ServerSpec::Host { name, port })
}

/// The addresses of the `nameserver` lines of resolv.conf text, in order.
/// Comments (`#`, `;`) are ignored, and so are addresses that are not plain
/// IP addresses (a scoped `fe80::1%eth0` names an interface we cannot use).
pub fn nameservers(resolv_conf: &str) -> impl Iterator<Item = IpAddr> + '_ {
    resolv_conf
        .lines()
        .filter_map(|l| l.split(['#', ';']).next())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|ns| ns.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Option<SocketAddr> {
        match parse_server(text)? {
            ServerSpec::Addr(a) => Some(a),
            ServerSpec::Host { .. } => None,
        }
    }

    #[test]
    fn server_syntax() {
        let sa = |s: &str| s.parse::<SocketAddr>().ok();
        assert_eq!(addr("127.0.0.1"), sa("127.0.0.1:53"));
        assert_eq!(addr("127.0.0.1:5353"), sa("127.0.0.1:5353"));
        assert_eq!(addr("::1"), sa("[::1]:53"));
        assert_eq!(addr("[::1]:54"), sa("[::1]:54"));
        assert_eq!(addr("[::1]"), sa("[::1]:53"));
        assert_eq!(
            parse_server("localhost:99"),
            Some(ServerSpec::Host {
                name: "localhost",
                port: 99
            })
        );
        assert_eq!(
            parse_server("ns.example"),
            Some(ServerSpec::Host {
                name: "ns.example",
                port: 53
            })
        );
        for bad in [
            "",
            "host:notaport",
            ":53",
            "a b",
            "[::1",
            "1.2.3.4:99999",
            "a:b:c",
        ] {
            assert_eq!(parse_server(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resolv_conf() {
        let text = "# c\nsearch x\nnameserver fe80::1%eth0\nnameserver 192.0.2.53 # c\n\
                    ; c\nnameserver\nnameserver 2001:db8::53;c\noptions edns0\n";
        let ns: Vec<IpAddr> = nameservers(text).collect();
        assert_eq!(
            ns,
            [
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse().unwrap()
            ]
        );
        assert_eq!(nameservers("search x\n").next(), None);
    }
}
