//! redis-operator: runs Redis on Kubernetes from one `RedisInstance` resource, with status driven by the
//! typed phase engine of the `redis-fsm` crate.
//!
//! The reconcile pipeline (see `docs/architecture.md`): [`reconciler`] reads the watch caches,
//! [`validate`] checks the spec, [`children`] builds the desired objects (pure), [`change`] classifies the
//! difference to the live StatefulSet, the reconciler applies it, [`observe`] reads the rollout state, the phase
//! engine decides, and [`status`] turns the decision into the status written back.

pub mod admission;
pub mod api;
pub mod auth;
pub mod budget;
pub mod change;
pub mod children;
pub mod cli;
pub mod diff;
pub mod error;
pub mod exporter;
pub mod http;
pub mod leader;
pub mod live_config;
pub mod metrics;
pub mod observe;
pub mod placement;
pub mod quantity;
pub mod reconciler;
pub mod redis;
pub mod redis_conf;
pub mod replace;
pub mod status;
pub mod switchover;
pub mod tls;
pub mod topology;
pub mod validate;
pub mod watch;
