//! redis-operator: runs Redis on Kubernetes from one `RedisInstance` resource, with status driven by the
//! typed phase engine of the `redis-fsm` crate.
//!
//! The modules follow the reconcile pipeline (see `docs/architecture.md`), which [`reconciler`] runs in order:
//! [`observe::watch`] fills the caches every read comes from, [`validate`] checks the spec, [`auth`] and
//! [`tls`] resolve the credentials and certificates, [`desired`] produces the desired objects (pure),
//! [`classify`] finds the least destructive way to converge the live ones, the reconciler applies it,
//! [`observe::rollout`] reads the rollout state, [`converge`] brings the Redis servers to their roles and
//! configuration, the phase engine decides, and [`status`] turns the decision into the status written back.
//! [`events`] names every Event reason; [`redis`] is the only code that speaks to Redis; [`runtime`] is the process
//! around the pipeline, and [`cli`] the command line that starts it.

pub mod api;
pub mod auth;
pub mod backup;
pub mod classify;
pub mod cli;
pub mod controller;
pub mod converge;
pub mod desired;
pub mod error;
pub mod events;
pub mod migrate;
pub mod names;
pub mod observe;
pub mod plugin;
pub mod reconciler;
pub mod redis;
pub mod runtime;
pub mod status;
pub mod tls;
pub mod validate;
