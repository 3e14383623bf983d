//! The process around the pipeline: leader election, the HTTP endpoints and metrics.

pub mod http;
pub mod leader;
pub mod metrics;
