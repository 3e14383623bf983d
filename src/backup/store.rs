//! Writing a snapshot to an S3-compatible bucket: compressed with zstd on the way, through a multipart upload
//! (`object_store`'s buffered writer: parts of a few MiB in memory, never the whole snapshot), with the SHA-256
//! of the snapshot's own bytes computed as they pass.

use std::sync::Arc;

use async_compression::tokio::write::ZstdEncoder;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::api::S3Target;

/// The keys of the credentials Secret.
pub const ACCESS_KEY_ID_KEY: &str = "accessKeyId";
/// The keys of the credentials Secret.
pub const SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";
/// The key of the CA Secret (`spec.backup.s3.caSecret`).
pub const CA_KEY: &str = "ca.crt";

/// How long a request to the bucket is retried (a server error, a broken connection) before the backup fails:
/// an unreachable endpoint is reported within seconds, not after the client's default three minutes.
pub const RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Why the bucket could not be written. The texts name the bucket and the operation, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The client could not be built from the settings.
    #[error("the bucket settings are unusable: {0}")]
    Settings(String),
    /// The server refused or could not be reached.
    #[error("writing to the bucket failed: {0}")]
    Write(String),
}

/// Credentials for the bucket, and the CA its endpoint's certificate is checked against besides the system's.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// `ca.crt` of `spec.backup.s3.caSecret` (PEM), when set.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A client of the bucket `target` names.
pub fn bucket(
    target: &S3Target,
    credentials: &Credentials,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let ca = match &credentials.ca_pem {
        None => Vec::new(),
        Some(pem) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    StoreError::Settings(format!("ca.crt of spec.backup.s3.caSecret: {e}"))
                })?;
            if certs.is_empty() {
                return Err(StoreError::Settings(
                    "ca.crt of spec.backup.s3.caSecret holds no PEM certificate".into(),
                ));
            }
            certs
        }
    };
    let store = AmazonS3Builder::new()
        .with_endpoint(target.endpoint.trim_end_matches('/'))
        .with_allow_http(target.endpoint.starts_with("http://"))
        .with_bucket_name(&target.bucket)
        .with_region(target.region.as_deref().unwrap_or("us-east-1"))
        .with_access_key_id(&credentials.access_key_id)
        .with_secret_access_key(&credentials.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_http_connector(super::http::Connector { ca })
        .with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: RETRY_TIMEOUT,
            ..Default::default()
        })
        .build()
        .map_err(|e| StoreError::Settings(e.to_string()))?;
    Ok(Arc::new(store))
}

/// What an upload wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes stored (compressed).
    pub size: u64,
    /// Bytes of the snapshot.
    pub data_size: u64,
    /// SHA-256 of the snapshot, hex.
    pub sha256: String,
}

/// An upload under way: feed it the snapshot's bytes with [`Upload::write`], then [`Upload::finish`] or
/// [`Upload::abort`] it.
pub struct Upload {
    encoder: ZstdEncoder<BufWriter>,
    hasher: Sha256,
    data_size: u64,
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl Upload {
    /// Starts writing the object `key` of `store`.
    pub fn start(store: Arc<dyn ObjectStore>, key: &str) -> Self {
        let path = Path::from(key);
        Upload {
            encoder: ZstdEncoder::new(BufWriter::new(store.clone(), path.clone())),
            hasher: Sha256::new(),
            data_size: 0,
            store,
            path,
        }
    }

    /// Adds the next bytes of the snapshot.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(chunk);
        self.data_size += chunk.len() as u64;
        self.encoder
            .write_all(chunk)
            .await
            .map_err(|e| StoreError::Write(e.to_string()))
    }

    /// Gives the upload up: no object appears (the parts written are discarded, best effort).
    pub async fn abort(mut self) {
        let _ = self.encoder.get_mut().abort().await;
    }

    /// Completes the object and reads its size back from the bucket.
    pub async fn finish(mut self) -> Result<Uploaded, StoreError> {
        self.encoder
            .shutdown()
            .await
            .map_err(|e| StoreError::Write(e.to_string()))?;
        let stored = self
            .store
            .head(&self.path)
            .await
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(Uploaded {
            size: stored.size,
            data_size: self.data_size,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
