//! The client side of the control socket, used by `oemesh status|peers|check`.
//! Blocking: one request, one reply, bounded in time.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proto::{self, Reply, Request};

/// Bound on connecting, sending and waiting for the reply.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("cannot connect to {path}: {error}: is `oemesh run` running?")]
    Connect {
        /// the socket
        path: PathBuf,
        /// why
        error: io::Error,
    },
    /// The connection broke or timed out.
    #[error("talking to the agent on {path}: {error}")]
    Io {
        /// the socket
        path: PathBuf,
        /// why
        error: io::Error,
    },
    /// The agent answered with something that is not a reply.
    #[error("the agent on {path} sent a malformed reply: {error}")]
    Malformed {
        /// the socket
        path: PathBuf,
        /// why
        error: serde_json::Error,
    },
}

/// Sends `request` to the agent on `path` and returns its reply.
pub fn request(path: &Path, request: &Request) -> Result<Reply, ClientError> {
    let stream = UnixStream::connect(path).map_err(|error| ClientError::Connect {
        path: path.to_owned(),
        error,
    })?;
    let io_err = |error| ClientError::Io {
        path: path.to_owned(),
        error,
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    (&stream)
        .write_all(&proto::encode_line(request))
        .map_err(io_err)?;
    let mut line = Vec::new();
    BufReader::new(&stream)
        .read_until(b'\n', &mut line)
        .map_err(io_err)?;
    if line.is_empty() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed the connection without replying",
        )));
    }
    serde_json::from_slice(&line).map_err(|error| ClientError::Malformed {
        path: path.to_owned(),
        error,
    })
}
