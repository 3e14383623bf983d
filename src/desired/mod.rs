//! Step 3 of the pipeline, **build**: pure functions from a valid spec to the objects an instance owns. Nothing
//! here reads a cache or talks to the API or to Redis.

pub mod auth;
pub mod budget;
pub mod children;
pub mod connection;
pub mod container;
pub mod exporter;
pub mod live_directives;
pub mod metadata;
pub mod network_policy;
pub mod placement;
pub mod redis_conf;
pub mod tls;
