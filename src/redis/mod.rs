//! The Redis edge: [`client`] is the only code that talks to Redis servers (bounded by timeouts,
//! typed errors), [`info`] parses what they report into the phase engine's replication types.
//! Reads (`INFO`, `ROLE`) are observation; `REPLICAOF`, `FAILOVER`, `CONFIG SET` and pauses are
//! actions, which the caller sends only while it holds the leader Lease.

mod capped;
pub mod client;
mod error;
pub mod info;

pub use client::{refusal_of, Access, Login, RedisError, RedisNode, Timeouts};
pub use info::{role_reply, server_state, AclSelector, AclUser, InfoFields, ParseError, RoleReply};
