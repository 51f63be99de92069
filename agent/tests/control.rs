//! The control protocol over a real Unix socket in a temp dir: every request
//! kind round-trips, errors are replies, the socket has mode 0660, a stale
//! socket file is replaced, a live one is not, and a missing agent gets the
//! "is `oemesh run` running?" message.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oemesh_agent::control::client::{self, ClientError};
use oemesh_agent::control::proto::{
    CheckReply, PeerAuth, PeerInfo, PeerState, Reply, Request, StatusReply,
};
use oemesh_agent::control::server::{ControlServer, Handler, ServerError};

fn peer() -> PeerInfo {
    PeerInfo {
        peer: "192.0.2.20".parse().expect("address"),
        state: PeerState::Private,
        auth: Some(PeerAuth::Anonymous),
        dnssec: false,
        dnssec_state: None,
        reason: "anonymous IKE established".into(),
        expires_in_s: Some(3000),
        bytes_in: 100,
        bytes_out: 200,
        group: Some("private-or-clear".into()),
        endpoint: None,
        assigned: None,
        assigned_to_us: false,
    }
}

async fn answer(request: Request) -> Reply {
    match request {
        Request::Status => Reply::Status(StatusReply {
            version: "test".into(),
            pid: 7,
            ..StatusReply::default()
        }),
        Request::Peers => Reply::Peers {
            peers: vec![peer()],
        },
        Request::Check { addr } if addr.is_ipv6() => Reply::Error {
            message: "no IPv6 here".into(),
        },
        Request::Check { addr } => Reply::Check(CheckReply {
            addr,
            group: "clear".into(),
            prefix: None,
            reverse_name: "20.2.0.192.in-addr.arpa.".into(),
            action: "sent in cleartext".into(),
            peer: None,
            ipseckey: None,
            dnssec: None,
            dnssec_chain: None,
        }),
        _ => Reply::Error {
            message: "unknown".into(),
        },
    }
}

fn blocking(path: &Path, req: Request) -> Result<Reply, ClientError> {
    client::request(path, &req)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/oemesh.sock");
    let server = ControlServer::bind(&path, None).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handler: Arc<dyn Handler> = Arc::new(answer);
    let serving = tokio::spawn(server.serve(handler, async {
        let _ = stop_rx.await;
    }));

    let p = path.clone();
    let replies = tokio::task::spawn_blocking(move || {
        [
            blocking(&p, Request::Status),
            blocking(&p, Request::Peers),
            blocking(
                &p,
                Request::Check {
                    addr: "192.0.2.20".parse().unwrap(),
                },
            ),
            blocking(
                &p,
                Request::Check {
                    addr: "2001:db8::1".parse().unwrap(),
                },
            ),
        ]
    })
    .await
    .unwrap();
    let [status, peers, check, error] = replies.map(Result::unwrap);
    assert!(matches!(status, Reply::Status(s) if s.pid == 7 && s.version == "test"));
    assert_eq!(
        peers,
        Reply::Peers {
            peers: vec![peer()]
        }
    );
    assert!(matches!(check, Reply::Check(c) if c.group == "clear"));
    assert_eq!(
        error,
        Reply::Error {
            message: "no IPv6 here".into()
        }
    );

    // A second agent on the same socket is refused while the first answers.
    assert!(matches!(
        ControlServer::bind(&path, None),
        Err(ServerError::InUse(_))
    ));

    // Raw lines: garbage gets an error reply and the connection stays usable.
    let p = path.clone();
    let raw = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, BufReader, Write};
        let s = std::os::unix::net::UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(&s);
        let mut out = Vec::new();
        for line in ["not json\n", "{\"request\":\"peers\"}\n"] {
            (&s).write_all(line.as_bytes()).unwrap();
            let mut reply = String::new();
            r.read_line(&mut reply).unwrap();
            out.push(reply);
        }
        out
    })
    .await
    .unwrap();
    assert!(
        raw[0].starts_with("{\"reply\":\"error\",\"message\":\"malformed request"),
        "{}",
        raw[0]
    );
    assert!(raw[1].starts_with("{\"reply\":\"peers\""), "{}", raw[1]);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap();
    // The socket file goes with the server.
    assert!(!path.exists());
}

#[test]
fn not_running_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oemesh.sock");
    let err = client::request(&path, &Request::Status).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot connect to {}: ", path.display())),
        "{msg}"
    );
    assert!(msg.ends_with("is `oemesh run` running?"), "{msg}");
}

#[tokio::test]
async fn stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oemesh.sock");
    // A socket file nobody listens on, as a killed agent leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = ControlServer::bind(&path, Some("0")).unwrap();
    assert_eq!(server.path(), path);
}
