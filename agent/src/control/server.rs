//! The control socket's server: accepts connections on a Unix stream socket and
//! answers each request line with what the agent's [`Handler`] returns.

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::proto::{self, MAX_REQUEST_LEN, Reply, Request};

/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What serves requests: the agent's control-plane task, reached however the
/// agent likes (typically a channel to the task that owns the decision machine).
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: Request) -> BoxFuture<Reply>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    fn handle(&self, request: Request) -> BoxFuture<Reply> {
        Box::pin(self(request))
    }
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Another process answers on the socket.
    #[error("{0} is in use: another `oemesh run` is running")]
    InUse(PathBuf),
    /// A file system or socket call failed.
    #[error("{what} {path}: {error}")]
    Io {
        /// what was being done
        what: &'static str,
        /// the path involved
        path: PathBuf,
        /// the error
        error: io::Error,
    },
    /// The configured group does not exist.
    #[error("control_group {0:?} is not a group in /etc/group")]
    UnknownGroup(String),
}

/// A bound control socket; the socket file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` with mode 0660 (owner root, group `group` when given),
    /// creating its directory and replacing a stale socket file left by a
    /// crashed run. Fails if another agent answers on it.
    pub fn bind(path: &Path, group: Option<&str>) -> Result<ControlServer, ServerError> {
        let io_err = |what, error| ServerError::Io {
            what,
            path: path.to_owned(),
            error,
        };
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|e| io_err("creating the directory of", e))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(|e| io_err("removing stale socket", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| io_err("binding", e))?;
        let server = ControlServer {
            listener,
            path: path.to_owned(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io_err("setting the mode of", e))?;
        if let Some(group) = group {
            let gid = resolve_group(group)?;
            rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| io_err("changing the group of", e.into()))?;
        }
        Ok(server)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until `shutdown` completes. Each connection runs in
    /// its own task; a misbehaving client only ends its own connection.
    pub async fn serve(self, handler: Arc<dyn Handler>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_connection(stream, handler).await {
                                tracing::debug!("control connection: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("control socket {}: accept: {e}", self.path.display());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_connection(stream: UnixStream, handler: Arc<dyn Handler>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    // One byte more than the limit, so an over-long line is seen as such.
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let limit = u64::try_from(MAX_REQUEST_LEN + 1).unwrap_or(u64::MAX);
        let n = tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle"))??;
        if n == 0 {
            return Ok(());
        }
        let too_long = line.len() > MAX_REQUEST_LEN;
        let reply = match proto::parse_request(&line) {
            Ok(request) => handler.handle(request).await,
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        };
        write.write_all(&proto::encode_line(&reply)).await?;
        if too_long || !line.ends_with(b"\n") {
            // Cannot resynchronise after an over-long or unterminated line.
            return Ok(());
        }
    }
}

/// A group name (from /etc/group) or number.
pub fn resolve_group(group: &str) -> Result<u32, ServerError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").map_err(|error| ServerError::Io {
        what: "reading",
        path: "/etc/group".into(),
        error,
    })?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| ServerError::UnknownGroup(group.to_owned()))
}
