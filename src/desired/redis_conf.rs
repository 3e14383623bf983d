//! Rendering `redis.conf` from the spec, and the hash that rolls pods when a change needs a restart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::api::ReplicationSpec;
use crate::desired::live_directives::live_value;

/// Where the rendered configuration is mounted in the Redis container.
pub const CONFIG_DIR: &str = "/etc/redis";
/// The configuration file name (the ConfigMap key).
pub const CONFIG_FILE: &str = "redis.conf";
/// The data directory (the claim or emptyDir mount).
pub const DATA_DIR: &str = "/data";
/// The port Redis listens on.
pub const REDIS_PORT: i32 = 6379;

/// The directive of the busy-reply default (see [`settings`]).
pub const BUSY_REPLY_THRESHOLD_KEY: &str = "lua-time-limit";
/// The default busy-reply threshold, in milliseconds: below the operator's 2 s command bound.
pub const BUSY_REPLY_THRESHOLD_MS: u64 = 1000;

/// Directives whose arguments are secrets (passwords, ACL rules with `>password`), with Valkey's names.
const SECRET_DIRECTIVES: [&str; 7] = [
    "masterauth",
    "masteruser",
    "primaryauth",
    "primaryuser",
    "requirepass",
    "user",
    "auth-pass",
];

/// Text shown instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// `text` (e.g. Redis' last output before it exited) with the arguments of every secret directive replaced
/// by [`REDACTED`], so that a malformed `requirepass` line is not echoed into status and Events. Redis quotes
/// the offending line as `>>> 'requirepass "Sup3r"Secret'`: everything after the directive name up to the
/// end of that line is dropped, the closing quote kept.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&redact_line(line));
    }
    out
}

fn redact_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let is_word_char = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let secret_at = SECRET_DIRECTIVES.iter().filter_map(|name| {
        lower.match_indices(name).find_map(|(start, _)| {
            let end = start + name.len();
            let before_ok = start == 0 || !is_word_char(lower.as_bytes()[start - 1]);
            let after_ok = end == lower.len() || !is_word_char(lower.as_bytes()[end]);
            // `user` is also an ordinary word of Redis' log lines ("user request from ..."): only the
            // directive, the first word of a line or of a quoted configuration line, carries a secret.
            let directive_ok = *name != "user" || {
                let before = lower[..start].trim_start();
                before.is_empty() || before == ">>> '"
            };
            (before_ok && after_ok && directive_ok).then_some(end)
        })
    });
    let Some(end) = secret_at.min() else {
        return line.to_string();
    };
    let quoted = line.trim_start().starts_with(">>> '") && line.trim_end().ends_with('\'');
    format!(
        "{} {REDACTED}{}",
        &line[..end],
        if quoted { "'" } else { "" }
    )
}

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

/// Every directive of the rendered `redis.conf`, in file order: the operator's settings (with
/// `spec.replication`'s), then the user's sorted by name, values as written (an empty value as `""`).
pub fn settings(
    user: &BTreeMap<String, String>,
    replication: &ReplicationSpec,
) -> Vec<(String, String)> {
    // A script that blocks the server answers `BUSY` after this threshold, and waits silently before it. At
    // 1 s, below the operator's command bound (2 s), a busy server is always seen as busy (alive: its script is
    // killed, or it is shut down before a failover), never as a timeout (unreachable: failed over without being
    // fenced). `lua-time-limit` is the name Redis 6 and 7 both read (7 calls it `busy-reply-threshold`); a value
    // in `spec.config` under either name replaces this default.
    let busy = ["lua-time-limit", "busy-reply-threshold"];
    let busy_default = (!user
        .keys()
        .any(|key| busy.iter().any(|b| key.eq_ignore_ascii_case(b))))
    .then(|| {
        (
            BUSY_REPLY_THRESHOLD_KEY.to_string(),
            BUSY_REPLY_THRESHOLD_MS.to_string(),
        )
    });
    let owned = owned_settings(replication)
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .chain(busy_default);
    let user = user.iter().map(|(key, value)| {
        let value = if value.is_empty() {
            "\"\"".to_string()
        } else {
            value.clone()
        };
        (key.clone(), value)
    });
    owned.chain(user).collect()
}

/// Renders the full `redis.conf` (see [`settings`]). The output depends only on the input, so equal specs
/// always render equally.
pub fn render(user: &BTreeMap<String, String>, replication: &ReplicationSpec) -> String {
    let mut out = String::from(
        "# Rendered by redis-operator. Edit spec.config of the RedisInstance instead.\n",
    );
    for (key, value) in settings(user, replication) {
        let _ = writeln!(out, "{key} {value}");
    }
    out
}

/// What of the configuration needs a restart to change, as text to hash: every directive's name, and the
/// value of every directive that cannot be set at runtime ([`crate::desired::live_directives::live_value`]). A change of
/// live values only leaves it equal, so the pods are not rolled; adding or removing a directive changes it.
/// The first line marks the format, so it never equals a whole rendered file (the hash of older releases).
pub fn restart_view(user: &BTreeMap<String, String>, replication: &ReplicationSpec) -> String {
    let mut out = String::from("# restart-relevant redis.conf, format 2\n");
    // Sorted by the name as Redis reads it (any case): only what Redis sees decides.
    let mut settings: Vec<(String, String)> = settings(user, replication)
        .into_iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect();
    settings.sort();
    for (key, value) in settings {
        if live_value(&key, &value).is_some() {
            let _ = writeln!(out, "{key} (live)");
        } else {
            let _ = writeln!(out, "{key} {value}");
        }
    }
    out
}

/// Hex SHA-256 of `text`. Of the [`restart_view`], it is the pod template annotation
/// `redis-operator.github.io/config-hash`, so that a change that needs a restart rolls the pods.
pub fn config_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
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
    use crate::api::directives::{refusal, OWNED_DIRECTIVES};

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
                "lua-time-limit 1000",
                "appendonly yes",
                "maxmemory 100mb"
            ]
        );
        // The busy threshold is a default: the user's value, under either name, replaces it.
        for key in ["busy-reply-threshold", "LUA-TIME-LIMIT"] {
            let rendered = render(&config(&[(key, "5000")]), &ReplicationSpec::default());
            assert!(!rendered.contains("lua-time-limit 1000"), "{rendered}");
            assert!(rendered.contains(&format!("{key} 5000")), "{rendered}");
        }
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
    fn live_values_are_not_restart_relevant_names_and_other_values_are() {
        let view = |pairs: &[(&str, &str)]| {
            config_hash(&restart_view(&config(pairs), &ReplicationSpec::default()))
        };
        let base = view(&[("maxmemory", "100mb"), ("databases", "16")]);
        assert_eq!(base, view(&[("maxmemory", "2gb"), ("databases", "16")]));
        assert_eq!(
            base,
            view(&[("MaxMemory", "2gb"), ("databases", "16")]),
            "Redis reads directive names in any case"
        );
        assert_ne!(
            base,
            view(&[("maxmemory", "100mb"), ("databases", "32")]),
            "restart-only value"
        );
        assert_ne!(
            base,
            view(&[("databases", "16")]),
            "a live directive removed"
        );
        assert_ne!(
            base,
            view(&[("maxmemory", "100mb"), ("databases", "16"), ("hz", "20")]),
            "a live directive added"
        );
        assert_ne!(
            base,
            view(&[("maxmemory", "lots"), ("databases", "16")]),
            "a value Redis would refuse"
        );
        let knobs = |lag| ReplicationSpec {
            min_replicas_to_write: Some(1),
            min_replicas_max_lag: Some(lag),
            ..Default::default()
        };
        assert_eq!(
            restart_view(&BTreeMap::new(), &knobs(5)),
            restart_view(&BTreeMap::new(), &knobs(10)),
            "min-replicas-* are set at runtime"
        );
    }

    #[test]
    fn the_restart_view_never_equals_a_rendered_file() {
        let (user, replication) = (config(&[("databases", "16")]), ReplicationSpec::default());
        assert_ne!(
            restart_view(&user, &replication),
            render(&user, &replication)
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
    fn refused_directives_in_any_case_say_why() {
        assert_eq!(
            refusal("PORT"),
            Some("is set by the operator and cannot be overridden")
        );
        assert!(refusal("LoadModule").unwrap().contains("load code"));
        assert!(refusal("requirepass")
            .unwrap()
            .contains("managed by the operator"));
        assert_eq!(refusal("maxmemory"), None);
        assert_eq!(refusal("save"), None);
    }

    #[test]
    fn secrets_in_redis_output_are_redacted() {
        let output = "*** FATAL CONFIG FILE ERROR (Redis 7.2.4) ***\n\
                      Reading the configuration file, at line 9\n\
                      >>> 'requirepass \"Sup3r\"Secret'\n\
                      Unbalanced quotes in configuration line";
        let redacted = redact_secrets(output);
        assert!(!redacted.contains("Sup3r"), "{redacted}");
        assert!(
            redacted.contains(">>> 'requirepass [redacted]'"),
            "{redacted}"
        );
        assert!(redacted.contains("Unbalanced quotes in configuration line"));
        for (line, want) in [
            ("MASTERAUTH hunter2", "MASTERAUTH [redacted]"),
            (">>> 'user alice on >pw ~* +@all'", ">>> 'user [redacted]'"),
            ("masteruser bob", "masteruser [redacted]"),
            ("sentinel auth-pass m pw", "sentinel auth-pass [redacted]"),
        ] {
            assert_eq!(redact_secrets(line), want);
        }
        // Other directives, and words that only contain a secret name, are left alone.
        for line in [
            ">>> 'maxmemory lots'",
            "Bad directive or wrong number of arguments",
            "superuser requirepassword",
            "1:M 26 Nov 2026 02:51:46.321 * MASTER MODE enabled (user request from 'id=3 user=default')",
        ] {
            assert_eq!(redact_secrets(line), line);
        }
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
