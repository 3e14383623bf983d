//! How the operator reaches a server: the time bounds of every call, the login, and TLS by pod address.

use std::collections::BTreeMap;
use std::time::Duration;

/// Time bounds for talking to one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection and the handshake.
    pub connect: Duration,
    /// One command's round trip.
    pub command: Duration,
}

impl Default for Timeouts {
    /// Two seconds each: a healthy server on the cluster network answers in milliseconds, and the
    /// failover delay (10 s by default) must cover several observation attempts.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(2),
        }
    }
}

/// A Redis user and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The ACL user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How the operator reaches the servers of one instance: time bounds, the operator's own login, and TLS.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Bounds of every call.
    pub timeouts: Timeouts,
    /// The operator's user, when the instance has one (see [`super::RedisNode::open`]).
    pub login: Option<Login>,
    /// By host (pod address): the TLS trust of the servers started with TLS; the others speak plain text.
    pub tls: BTreeMap<String, crate::tls::connect::Trust>,
}
