//! The Redis edge: [`client`] is the only code that talks to Redis servers (bounded by timeouts,
//! typed errors), [`info`] parses what they report into the phase engine's replication types.
//! Reads (`INFO`, `ROLE`) are observation; `REPLICAOF`, `CONFIG SET`, `CLIENT PAUSE` and `CLIENT KILL` are
//! actions, which the caller sends only while it holds the leader Lease.

mod access;
mod capped;
pub mod client;
mod error;
pub mod info;
pub mod pool;

pub use client::{refusal_of, Access, Login, RedisError, RedisNode, Timeouts};
pub use info::{role_reply, server_state, AclSelector, AclUser, InfoFields, ParseError, RoleReply};

/// What the operator has cost the Redis servers since it started, exported as metrics
/// (`redis_operator_redis_*_total`).
pub mod cost {
    use std::sync::LazyLock;

    use prometheus_client::metrics::counter::Counter;

    /// Connections opened (a kept connection taken again is not counted).
    pub static CONNECTIONS: LazyLock<Counter> = LazyLock::new(Counter::default);
    /// Commands sent, the login included.
    pub static COMMANDS: LazyLock<Counter> = LazyLock::new(Counter::default);
    /// Bytes read from servers.
    pub static READ_BYTES: LazyLock<Counter> = LazyLock::new(Counter::default);
}
