//! The reconciler's error type. Its kind doubles as the `error` label of metrics.

/// Everything that can make a reconcile fail (and be retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// The API server did not accept a child object.
    #[error("could not apply {kind} {name}: {source}")]
    Apply {
        /// Kind of the child.
        kind: String,
        /// Name of the child.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },

    /// Adding or removing the finalizer failed.
    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// The StatefulSet being replaced for a storage change has not disappeared yet.
    #[error("StatefulSet {0} is still being deleted (orphaning its pods); will retry")]
    ReplaceInProgress(String),

    /// A watch cache could not be read because its writer stopped.
    #[error("watch cache for {0} is not available")]
    CacheUnavailable(&'static str),

    /// An object the operator was about to create already exists; the cache has not seen it yet.
    #[error("{0} already exists but is not in the watch cache yet; will retry")]
    CacheStale(String),

    /// The operating system's random source failed (generating a password).
    #[error("cannot generate a password: {0}")]
    Random(String),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Apply { .. } => "apply",
            Error::Finalizer(_) => "finalizer",
            Error::ReplaceInProgress(_) => "replace_in_progress",
            Error::CacheUnavailable(_) => "cache_unavailable",
            Error::CacheStale(_) => "cache_stale",
            Error::Random(_) => "random",
        }
    }
}

impl Error {
    /// For a child the API server refused (any answer but a conflict or throttling: e.g. an exhausted Service
    /// IP range, a quota, an admission webhook), the message to show in status while the apply is retried.
    pub fn rejected_child(&self) -> Option<String> {
        match self {
            Error::Apply {
                kind,
                name,
                source: kube::Error::Api(status),
            } if !matches!(status.code, 409 | 429) => Some(format!(
                "{kind} {name} could not be applied: {}",
                status.message
            )),
            _ => None,
        }
    }
}

/// Result of reconciler operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_error(code: u16) -> Error {
        let status = kube::core::Status {
            code,
            message: "Internal error: range is full".into(),
            ..Default::default()
        };
        Error::Apply {
            kind: "Service".into(),
            name: "cache".into(),
            source: kube::Error::Api(Box::new(status)),
        }
    }

    #[test]
    fn refused_children_are_reported_but_conflicts_and_throttling_are_not() {
        assert_eq!(
            apply_error(422).rejected_child().as_deref(),
            Some("Service cache could not be applied: Internal error: range is full")
        );
        for refused in [403, 500] {
            assert_eq!(
                apply_error(refused).rejected_child().map(|_| ()),
                Some(()),
                "{refused}"
            );
        }
        for transient in [409, 429] {
            assert_eq!(apply_error(transient).rejected_child(), None, "{transient}");
        }
        assert_eq!(apply_error(422).metric_label(), "apply");
    }
}
