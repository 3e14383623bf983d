//! Rendering `redis.conf` from the spec, and the hash that rolls pods when it changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Where the rendered configuration is mounted in the Redis container.
pub const CONFIG_DIR: &str = "/etc/redis";
/// The configuration file name (the ConfigMap key).
pub const CONFIG_FILE: &str = "redis.conf";
/// The data directory (the claim or emptyDir mount).
pub const DATA_DIR: &str = "/data";
/// The port Redis listens on.
pub const REDIS_PORT: i32 = 6379;

/// Directives the operator sets itself: the pod layout depends on them, so users may not override them.
/// `bind` is passed on the command line as the pod's own address.
pub const OWNED_DIRECTIVES: [&str; 8] = [
    "bind",
    "daemonize",
    "dir",
    "include",
    "logfile",
    "pidfile",
    "port",
    "supervised",
];

/// The operator's own settings, always rendered first.
fn owned_settings() -> [(&'static str, String); 5] {
    [
        ("port", REDIS_PORT.to_string()),
        ("dir", DATA_DIR.to_string()),
        ("daemonize", "no".to_string()),
        ("supervised", "no".to_string()),
        ("logfile", "\"\"".to_string()),
    ]
}

/// Renders the full `redis.conf`: the operator's settings, then the user's directives sorted by name.
/// The output depends only on the input, so equal specs always hash equally.
pub fn render(user: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Rendered by redis-operator. Edit spec.config of the RedisInstance instead.\n",
    );
    for (key, value) in owned_settings() {
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
        let rendered = render(&config(&[("maxmemory", "100mb"), ("appendonly", "yes")]));
        let lines: Vec<&str> = rendered.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "port 6379",
                "dir /data",
                "daemonize no",
                "supervised no",
                "logfile \"\"",
                "appendonly yes",
                "maxmemory 100mb"
            ]
        );
    }

    #[test]
    fn empty_values_are_quoted() {
        assert!(render(&config(&[("save", "")])).contains("\nsave \"\"\n"));
    }

    #[test]
    fn hash_is_deterministic_and_sensitive() {
        let a = render(&config(&[("maxmemory", "100mb")]));
        let b = render(&config(&[("maxmemory", "200mb")]));
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
    fn owned_settings_are_all_refused_directives() {
        for (key, _) in owned_settings() {
            assert!(OWNED_DIRECTIVES.contains(&key), "{key} must be owned");
        }
    }
}
