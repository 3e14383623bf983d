//! The reconciler's error type. Its kind doubles as the `error` label of metrics.

/// Everything that can make a reconcile fail (and be retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// Adding or removing the finalizer failed.
    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// The StatefulSet being replaced for a storage change has not disappeared yet.
    #[error("StatefulSet {0} is still being deleted (orphaning its pods); will retry")]
    ReplaceInProgress(String),

    /// A watch cache could not be read because its writer stopped.
    #[error("watch cache for {0} is not available")]
    CacheUnavailable(&'static str),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::ReplaceInProgress(_) => "replace_in_progress",
            Error::CacheUnavailable(_) => "cache_unavailable",
        }
    }
}

/// Result of reconciler operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
