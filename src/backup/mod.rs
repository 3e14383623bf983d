//! Base backups: a server's snapshot, read as a replica reads it ([`rdb`]), streamed compressed into an
//! S3-compatible bucket ([`store`]). The `RedisBackup` resource that asks for one is reconciled in
//! [`controller`].

pub mod archive;
pub mod archiver;
pub mod controller;
mod http;
pub mod pass;
pub mod rdb;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod store;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::redis::Access;
use rdb::{FullResync, RdbError, Snapshot};
use store::{StoreError, Upload, Uploaded};

/// How long the server may stay silent while the snapshot is prepared or sent (it sends a keep-alive every
/// second while it prepares one).
pub const IDLE: Duration = Duration::from_secs(60);

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The server could not be reached.
    #[error("could not connect to {endpoint}: {source}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading the snapshot failed.
    #[error("reading the snapshot: {0}")]
    Read(#[from] RdbError),
    /// Writing the object failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a backup took and wrote.
#[derive(Clone, Debug)]
pub struct Taken {
    /// The history and position it covers.
    pub resync: FullResync,
    /// What was written.
    pub uploaded: Uploaded,
}

/// Reads the snapshot of the server at `host:port` (as `access` reaches it: its login, TLS when the server
/// speaks it) and writes it to `upload`.
pub async fn take(
    host: &str,
    port: u16,
    access: &Access,
    upload: Upload,
) -> Result<Taken, BackupError> {
    let endpoint = format!("{host}:{port}");
    let connect_error = |source| BackupError::Connect {
        endpoint: endpoint.clone(),
        source,
    };
    let login = access
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()));
    match access.tls.get(host) {
        Some(trust) => {
            let (stream, _) =
                tokio::time::timeout(access.timeouts.connect, trust.handshake(host, port))
                    .await
                    .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
                    .map_err(connect_error)?;
            stream_to(stream, login, upload).await
        }
        None => {
            let stream = tokio::time::timeout(
                access.timeouts.connect,
                tokio::net::TcpStream::connect((host, port)),
            )
            .await
            .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect_error)?;
            stream_to(stream, login, upload).await
        }
    }
}

async fn stream_to<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    login: Option<(&str, &str)>,
    mut upload: Upload,
) -> Result<Taken, BackupError> {
    let copied = async {
        let mut snapshot = Snapshot::start(stream, login, IDLE).await?;
        while let Some(chunk) = snapshot.next_chunk().await? {
            upload.write(&chunk).await?;
        }
        Ok::<_, BackupError>(snapshot.resync)
    }
    .await;
    match copied {
        Ok(resync) => Ok(Taken {
            resync,
            uploaded: upload.finish().await?,
        }),
        Err(error) => {
            // No partial object is left behind.
            upload.abort().await;
            Err(error)
        }
    }
}
