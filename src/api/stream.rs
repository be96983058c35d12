//! The sockets the API serves: a Unix socket always, TCP when configured.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::error::{Error, Result};

/// A listening socket.
pub(crate) enum Listener {
    Unix(UnixListener, PathBuf),
    /// With TLS when a server config is given.
    Tcp(TcpListener, Option<Arc<ServerConfig>>),
}

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Over the Unix socket: its file permissions decided.
    Unix,
    /// Over TCP: a token decides.
    Tcp,
}

/// An accepted connection.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Listener {
    /// Binds the Unix socket at `path` with mode 0660 (the directory's permissions and the
    /// daemon's group decide who may connect). A stale socket file (nobody listening) is replaced;
    /// a live one is refused.
    ///
    /// # Errors
    /// `ApiListen`.
    pub(crate) fn unix(path: &Path) -> Result<Listener> {
        let err = |reason: String| Error::ApiListen {
            what: path.display().to_string(),
            reason,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(err(
                    "a file that is not a socket is in the way (not removed)".into(),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(err("another process is listening on it".into()));
            }
            std::fs::remove_file(path)
                .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
        }
        // Its directory: beside an SQLite file it exists; the state directory of a daemon on
        // PostgreSQL may not yet.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| err(format!("cannot set its mode: {e}")))?;
        Ok(Listener::Unix(listener, path.to_path_buf()))
    }

    /// Binds `addr`, with TLS when `tls` (certificate chain, key) is given.
    ///
    /// # Errors
    /// `ApiListen`, `InvalidConfig` for a certificate or key that cannot be used.
    pub(crate) fn tcp(
        addr: std::net::SocketAddr,
        tls: Option<&(PathBuf, PathBuf)>,
    ) -> Result<Listener> {
        let tls = tls.map(|(cert, key)| tls_config(cert, key)).transpose()?;
        let listener = TcpListener::bind(addr).map_err(|e| Error::ApiListen {
            what: addr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Listener::Tcp(listener, tls))
    }

    /// The bound TCP address (for waking the acceptor at stop).
    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(l, _) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    pub(crate) fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l, None) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
            Listener::Tcp(l, Some(config)) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                let conn = ServerConnection::new(Arc::clone(config))
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                Ok(Stream::Tls(Box::new(StreamOwned::new(conn, s))))
            }
        }
    }
}

impl Stream {
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        };
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) {
        let _ = match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.sock.set_write_timeout(t),
        };
    }

    /// Ends reading: a blocked read returns end of file; writes still go out.
    pub(crate) fn shutdown_read(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Read),
            Stream::Tcp(s) => s.shutdown(Shutdown::Read),
            Stream::Tls(s) => s.sock.shutdown(Shutdown::Read),
        };
    }

    pub(crate) fn try_clone(&self) -> Option<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().ok().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().ok().map(Stream::Tcp),
            // For closing it: the clone is the bare socket.
            Stream::Tls(s) => s.sock.try_clone().ok().map(Stream::Tcp),
        }
    }

    pub(crate) fn peer(&self) -> Peer {
        match self {
            Stream::Unix(_) => Peer::Unix,
            Stream::Tcp(_) | Stream::Tls(_) => Peer::Tcp,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A TLS server configuration from PEM files (rustls with its safe defaults).
///
/// # Errors
/// `InvalidConfig` naming the file.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let bad = |path: &Path, message: String| Error::InvalidConfig {
        path: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, format!("api.tls_cert: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "api.tls_cert: no certificate in the file".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, format!("api.tls_key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|e| bad(cert, format!("api.tls_cert/api.tls_key: {e}")))?;
    Ok(Arc::new(config))
}
