//! Rendering `redis.conf` from the spec, and the hash that rolls pods when it changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::api::ReplicationSpec;

/// Where the rendered configuration is mounted in the Redis container.
pub const CONFIG_DIR: &str = "/etc/redis";
/// The configuration file name (the ConfigMap key).
pub const CONFIG_FILE: &str = "redis.conf";
/// The data directory (the claim or emptyDir mount).
pub const DATA_DIR: &str = "/data";
/// The port Redis listens on.
pub const REDIS_PORT: i32 = 6379;

/// Directives the operator sets itself: the pod layout and the replication topology depend on them, so users
/// may not override them. `bind`, `replicaof` and `replica-announce-ip` are passed on the command line with
/// the pod's own address; `min-replicas-*` come from `spec.replication`.
pub const OWNED_DIRECTIVES: [&str; 21] = [
    "bind",
    "daemonize",
    "dir",
    "include",
    "logfile",
    "pidfile",
    "port",
    "supervised",
    "replicaof",
    "slaveof",
    "replica-announce-ip",
    "replica-announce-port",
    "slave-announce-ip",
    "slave-announce-port",
    "masterauth",
    "masteruser",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "min-slaves-to-write",
    "min-slaves-max-lag",
    "repl-diskless-sync-delay",
];

/// The operator's own settings, always rendered first.
fn owned_settings(replication: &ReplicationSpec) -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("port", REDIS_PORT.to_string()),
        ("dir", DATA_DIR.to_string()),
        ("daemonize", "no".to_string()),
        ("supervised", "no".to_string()),
        ("logfile", "\"\"".to_string()),
        // A replica asking for a full sync gets it at once instead of 5 s later (Redis's default delay
        // batches replicas; the operator adds them one at a time anyway).
        ("repl-diskless-sync-delay", "0".to_string()),
    ];
    if let Some(count) = replication.min_replicas_to_write {
        settings.push(("min-replicas-to-write", count.to_string()));
    }
    if let Some(lag) = replication.min_replicas_max_lag {
        settings.push(("min-replicas-max-lag", lag.to_string()));
    }
    settings
}

/// Renders the full `redis.conf`: the operator's settings (with `spec.replication`'s), then the user's
/// directives sorted by name. The output depends only on the input, so equal specs always hash equally.
pub fn render(user: &BTreeMap<String, String>, replication: &ReplicationSpec) -> String {
    let mut out = String::from(
        "# Rendered by redis-operator. Edit spec.config of the RedisInstance instead.\n",
    );
    for (key, value) in owned_settings(replication) {
        let _ = writeln!(out, "{key} {value}");
    }
    for (key, value) in user {
        let value = if value.is_empty() {
            "\"\""
        } else {
            value.as_str()
        };
        let _ = writeln!(out, "{key} {value}");
    }
    out
}

/// Hex SHA-256 of the rendered configuration bytes, stored as the pod template annotation
/// `redis.github.com/config-hash` so that a config change rolls the pods.
pub fn config_hash(rendered: &str) -> String {
    let digest = Sha256::digest(rendered.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_owned_settings_then_sorted_user_directives() {
        let rendered = render(
            &config(&[("maxmemory", "100mb"), ("appendonly", "yes")]),
            &ReplicationSpec::default(),
        );
        let lines: Vec<&str> = rendered.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "port 6379",
                "dir /data",
                "daemonize no",
                "supervised no",
                "logfile \"\"",
                "repl-diskless-sync-delay 0",
                "appendonly yes",
                "maxmemory 100mb"
            ]
        );
    }

    #[test]
    fn empty_values_are_quoted() {
        assert!(
            render(&config(&[("save", "")]), &ReplicationSpec::default()).contains("\nsave \"\"\n")
        );
    }

    #[test]
    fn hash_is_deterministic_and_sensitive() {
        let a = render(
            &config(&[("maxmemory", "100mb")]),
            &ReplicationSpec::default(),
        );
        let b = render(
            &config(&[("maxmemory", "200mb")]),
            &ReplicationSpec::default(),
        );
        assert_eq!(config_hash(&a), config_hash(&a.clone()));
        assert_ne!(config_hash(&a), config_hash(&b));
        assert_eq!(config_hash(&a).len(), 64);
        // the SHA-256 of the empty string, as a check of the hex encoding
        assert_eq!(
            config_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn replication_knobs_are_rendered_when_set() {
        let none = render(&BTreeMap::new(), &ReplicationSpec::default());
        assert!(!none.contains("min-replicas"), "{none}");
        let set = ReplicationSpec {
            min_replicas_to_write: Some(1),
            min_replicas_max_lag: Some(5),
            ..Default::default()
        };
        let rendered = render(&BTreeMap::new(), &set);
        assert!(
            rendered.contains("\nmin-replicas-to-write 1\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("\nmin-replicas-max-lag 5\n"),
            "{rendered}"
        );
    }

    #[test]
    fn owned_settings_are_all_refused_directives() {
        let all = ReplicationSpec {
            min_replicas_to_write: Some(1),
            min_replicas_max_lag: Some(5),
            ..Default::default()
        };
        for (key, _) in owned_settings(&all) {
            assert!(OWNED_DIRECTIVES.contains(&key), "{key} must be owned");
        }
    }
}
