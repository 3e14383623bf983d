//! Which `redis.conf` directives `spec.config` may not name, and why: one table for the CRD's admission rules
//! ([`crate::api::admission`]), [`crate::validate`] and the rendering ([`crate::desired::redis_conf`]).

/// Directives the operator sets itself: the pod layout and the replication topology depend on them, so users
/// may not override them. `bind` is passed on the command line with the pod's own address (as are `replicaof`
/// and `replica-announce-ip`, refused below as dangerous and managed); `min-replicas-*` come from
/// `spec.replication`. Valkey's `rdma-bind` and `rdma-port` would open a second listener.
pub const OWNED_DIRECTIVES: [&str; 15] = [
    "bind",
    "daemonize",
    "dir",
    "include",
    "logfile",
    "pidfile",
    "port",
    "rdma-bind",
    "rdma-port",
    "supervised",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "min-slaves-to-write",
    "min-slaves-max-lag",
    "repl-diskless-sync-delay",
];

/// Directives that would turn Redis into a file-write or code-load primitive for anyone who can reach it
/// (modules, `DEBUG`, protected `CONFIG SET` of paths, replicating from an arbitrary host, renamed commands
/// that hide what runs, a socket outside the data directory, or its group). Never allowed.
pub const DANGEROUS_DIRECTIVES: [&str; 11] = [
    "enable-debug-command",
    "enable-module-command",
    "enable-protected-configs",
    "loadmodule",
    "protected-mode",
    "rename-command",
    "replicaof",
    "slaveof",
    "unixsocket",
    "unixsocketgroup",
    "unixsocketperm",
];

/// Replication and authentication directives: the operator manages them (replication and credentials
/// are its job), so `spec.config` may not set them. Valkey's names too: `primaryauth` and `primaryuser` (its
/// spelling of `masterauth` and `masteruser`), `tls-auth-clients-user` (logs a TLS client in as the user its
/// certificate names).
pub const MANAGED_DIRECTIVES: [&str; 12] = [
    "aclfile",
    "masterauth",
    "masteruser",
    "primaryauth",
    "primaryuser",
    "replica-announce-ip",
    "replica-announce-port",
    "requirepass",
    "slave-announce-ip",
    "slave-announce-port",
    "tls-auth-clients-user",
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

/// The directives Redis 7.0 knows (`CONFIG GET *` on the real server; `scripts/server-directives.sh` writes
/// the file and `tests/redis_client.rs` fails when the server's list drifts from it).
const REDIS_DIRECTIVES: &str = include_str!("servers/redis-7.0.directives");
/// The directives Valkey 9.1 knows (as [`REDIS_DIRECTIVES`]).
const VALKEY_DIRECTIVES: &str = include_str!("servers/valkey-9.1.directives");

/// Why a Valkey server would not start with `directive` in its configuration: Redis has it, Valkey does not
/// (`dynamic-hz`, `io-threads-do-reads`, `aof-disable-auto-gc`, `sanitize-dump-payload`). Directives neither
/// list names are not judged: a newer release of either may have them.
pub fn valkey_lacks(directive: &str) -> Option<String> {
    let directive = directive.to_ascii_lowercase();
    let listed = |list: &str| list.lines().any(|line| line == directive);
    (listed(REDIS_DIRECTIVES) && !listed(VALKEY_DIRECTIVES)).then(|| {
        "is a Redis directive Valkey does not have (a Valkey server refuses to start with it); remove it \
         for a Valkey image"
            .to_string()
    })
}
