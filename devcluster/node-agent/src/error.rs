//! The agent's error type.

/// Everything that can go wrong while serving the node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pod address pool: {0}")]
    IpPool(#[from] crate::ip_pool::IpPoolError),
    /// The pod cannot start yet (unbound claim, missing ConfigMap...); retried.
    #[error("{0}")]
    NotReadyToStart(String),
}

/// Result alias used across the agent.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the API answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(e) if is_status(e, 404))
    }
}

/// Whether a kube error is an API answer with this HTTP status code.
pub fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}
