//! Which `redis.conf` directives Redis changes at runtime (`CONFIG SET`), and the form in which `CONFIG GET`
//! reports a value: what [`crate::desired::redis_conf::restart_view`] leaves out of the config hash, and what
//! [`crate::converge::live_config`] sends.

/// How Redis parses a directive's value, and how `CONFIG GET` reports it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Bytes with Redis' units (`k` = 1000, `kb` = 1024, `m`, `mb`, `g`, `gb`, any case); read back in bytes.
    Memory,
    /// A decimal integer, written as Redis writes it (no sign for positives, no leading zeros).
    Integer,
    /// An integer Redis clamps to `min..=max` instead of refusing it (`hz`).
    Clamped(i64, i64),
    /// `yes` or `no`, any case; read back in lower case.
    Bool,
    /// One of these words, any case; read back in lower case.
    Enum(&'static [&'static str]),
    /// `save`: pairs of seconds and changes, or empty; read back single-spaced.
    Save,
    /// `notify-keyspace-events`: a set of class letters in any order, `A` standing for `g$lshzxetd`.
    KeyspaceEvents,
}

pub(crate) const MAXMEMORY_POLICIES: &[&str] = &[
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];

/// The directives the operator sets at runtime, each checked against Redis 7.0's `CONFIG SET` (the test
/// `tests/redis_client.rs` sets every one on a real server and reads it back). Left out on purpose:
/// `maxclients` (Redis refuses values above what the file-descriptor limit allows, which a restart would
/// lower silently), anything with paths, ports or sockets, and aliases (`slave-*`): those roll the pods.
/// `min-replicas-*` are rendered from `spec.replication`.
const LIVE_DIRECTIVES: [(&str, Kind); 29] = [
    ("active-expire-effort", Kind::Integer),
    ("appendfsync", Kind::Enum(&["always", "everysec", "no"])),
    ("appendonly", Kind::Bool),
    ("dynamic-hz", Kind::Bool),
    ("hz", Kind::Clamped(1, 500)),
    ("latency-monitor-threshold", Kind::Integer),
    ("lazyfree-lazy-eviction", Kind::Bool),
    ("lazyfree-lazy-expire", Kind::Bool),
    ("lazyfree-lazy-server-del", Kind::Bool),
    ("lazyfree-lazy-user-del", Kind::Bool),
    ("lazyfree-lazy-user-flush", Kind::Bool),
    ("lfu-decay-time", Kind::Integer),
    ("lfu-log-factor", Kind::Integer),
    (
        "loglevel",
        Kind::Enum(&["debug", "verbose", "notice", "warning", "nothing"]),
    ),
    ("maxmemory", Kind::Memory),
    ("maxmemory-eviction-tenacity", Kind::Integer),
    ("maxmemory-policy", Kind::Enum(MAXMEMORY_POLICIES)),
    ("maxmemory-samples", Kind::Integer),
    ("min-replicas-max-lag", Kind::Integer),
    ("min-replicas-to-write", Kind::Integer),
    ("notify-keyspace-events", Kind::KeyspaceEvents),
    ("repl-backlog-size", Kind::Memory),
    ("repl-backlog-ttl", Kind::Integer),
    ("repl-timeout", Kind::Integer),
    ("replica-lazy-flush", Kind::Bool),
    ("save", Kind::Save),
    ("slowlog-log-slower-than", Kind::Integer),
    ("slowlog-max-len", Kind::Integer),
    ("timeout", Kind::Integer),
];

/// The names of the directives that can change without a restart, for docs and tests.
pub fn live_directives() -> impl Iterator<Item = &'static str> {
    LIVE_DIRECTIVES.iter().map(|(name, _)| *name)
}

pub(crate) fn kind(directive: &str) -> Option<Kind> {
    let directive = directive.to_ascii_lowercase();
    LIVE_DIRECTIVES
        .iter()
        .find(|(name, _)| *name == directive)
        .map(|(_, kind)| *kind)
}

/// The value as Redis reads it from the file: `render` writes an empty value as `""`.
pub(crate) fn unquoted(value: &str) -> &str {
    if value == "\"\"" {
        ""
    } else {
        value
    }
}

/// Redis' form of a plain integer (`string2ll`): `0`, or an optional `-` and digits without a leading zero.
fn integer(value: &str) -> Option<i64> {
    let parsed: i64 = value.parse().ok()?;
    (parsed.to_string() == value).then_some(parsed)
}

/// Bytes of a memory value as Redis' `memtoull` reads it: digits, then an optional unit.
fn memory(value: &str) -> Option<u64> {
    let lower = value.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// The keyspace-event classes Redis knows, and what `A` stands for.
const KEYSPACE_CLASSES: &str = "KEg$lshzxetmdn";
const KEYSPACE_ALL: &str = "g$lshzxetd";

fn normalize(kind: Kind, value: &str) -> Option<String> {
    let value = unquoted(value);
    match kind {
        Kind::Memory => memory(value).map(|bytes| bytes.to_string()),
        Kind::Integer => integer(value).map(|n| n.to_string()),
        Kind::Clamped(min, max) => integer(value).map(|n| n.clamp(min, max).to_string()),
        Kind::Bool => {
            let lower = value.to_ascii_lowercase();
            matches!(lower.as_str(), "yes" | "no").then_some(lower)
        }
        Kind::Enum(words) => {
            let lower = value.to_ascii_lowercase();
            words.contains(&lower.as_str()).then_some(lower)
        }
        Kind::Save => {
            let words: Vec<&str> = value.split_whitespace().collect();
            let valid = words.len().is_multiple_of(2)
                && words.iter().all(|w| integer(w).is_some_and(|n| n >= 0));
            valid.then(|| words.join(" "))
        }
        Kind::KeyspaceEvents => {
            let mut classes = std::collections::BTreeSet::new();
            for c in value.chars() {
                match c {
                    'A' => classes.extend(KEYSPACE_ALL.chars()),
                    c if KEYSPACE_CLASSES.contains(c) => {
                        classes.insert(c);
                    }
                    _ => return None,
                }
            }
            Some(classes.into_iter().collect())
        }
    }
}

/// The value `directive value` means at runtime, in the form `CONFIG GET` reports it, when the directive can
/// be set live with that value; `None` when changing it needs a restart (not on the list, or a value the
/// operator does not read exactly as Redis does, which then fails loudly at the restart instead).
pub fn live_value(directive: &str, value: &str) -> Option<String> {
    normalize(kind(directive)?, value)
}
