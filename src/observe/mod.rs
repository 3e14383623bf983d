//! Steps 1 and 6 of the pipeline, **read** and **observe**: the watches that fill the caches every reconcile
//! reads from, and what the phase engine needs out of those caches.

pub mod ownership;
pub mod rollout;
pub mod secrets;
pub mod watch;
