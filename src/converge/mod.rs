//! Step 7 of the pipeline, **converge the servers**: what is sent to the Redis servers themselves. Each pass
//! observes every pod, decides with a pure function and acts only on a difference, while holding the leader
//! Lease: the replication topology (failover, switchover, primary-last rollouts), switchover requests, and
//! configuration set at runtime.

pub mod live_config;
pub mod switchover;
pub mod topology;
