//! Which `redis.conf` directives `spec.config` may not name, and why: one table for the CRD's admission rules
//! ([`crate::api::admission`]), [`crate::validate`] and the rendering ([`crate::desired::redis_conf`]).

/// Directives the operator sets itself: the pod layout and the replication topology depend on them, so users
/// may not override them. `bind` is passed on the command line with the pod's own address (as are `replicaof`
/// and `replica-announce-ip`, refused below as dangerous and managed); `min-replicas-*` come from
/// `spec.replication`.
pub const OWNED_DIRECTIVES: [&str; 13] = [
    "bind",
    "daemonize",
    "dir",
    "include",
    "logfile",
    "pidfile",
    "port",
    "supervised",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "min-slaves-to-write",
    "min-slaves-max-lag",
    "repl-diskless-sync-delay",
];

/// Directives that would turn Redis into a file-write or code-load primitive for anyone who can reach it
/// (modules, `DEBUG`, protected `CONFIG SET` of paths, replicating from an arbitrary host, renamed commands
/// that hide what runs, a socket outside the data directory). Never allowed.
pub const DANGEROUS_DIRECTIVES: [&str; 10] = [
    "enable-debug-command",
    "enable-module-command",
    "enable-protected-configs",
    "loadmodule",
    "protected-mode",
    "rename-command",
    "replicaof",
    "slaveof",
    "unixsocket",
    "unixsocketperm",
];

/// Replication and authentication directives: the operator manages them (replication and credentials
/// are its job), so `spec.config` may not set them.
pub const MANAGED_DIRECTIVES: [&str; 9] = [
    "aclfile",
    "masterauth",
    "masteruser",
    "replica-announce-ip",
    "replica-announce-port",
    "requirepass",
    "slave-announce-ip",
    "slave-announce-port",
    "user",
];

/// Every group of directives `spec.config` may not set, with the reason shown to the user. The CRD's
/// admission rules and [`crate::validate`] are both generated from this table, so they cannot disagree.
pub const REFUSED_DIRECTIVES: [(&[&str], &str); 3] = [
    (
        &OWNED_DIRECTIVES,
        "is set by the operator and cannot be overridden",
    ),
    (
        &DANGEROUS_DIRECTIVES,
        "is refused: it would let clients write files, load code or take over the server",
    ),
    (
        &MANAGED_DIRECTIVES,
        "is managed by the operator (replication and authentication) and cannot be set in spec.config",
    ),
];

/// Why `directive` may not appear in `spec.config` (directive names are case-insensitive in Redis).
pub fn refusal(directive: &str) -> Option<&'static str> {
    let directive = directive.to_ascii_lowercase();
    REFUSED_DIRECTIVES
        .iter()
        .find(|(names, _)| names.contains(&directive.as_str()))
        .map(|(_, why)| *why)
}
