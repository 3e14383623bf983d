//! The process around the pipeline: the command line, leader election, the HTTP endpoints and metrics.

pub mod cli;
pub mod http;
pub mod leader;
pub mod metrics;
