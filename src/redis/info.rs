//! Pure parsers of what Redis reports: `INFO` text and the `ROLE` reply, into the phase engine's
//! [`ServerState`]. No I/O here; the fixtures in `src/redis/fixtures/` are real `redis-server` 7.0
//! output.

use std::collections::HashMap;

use ::redis::Value;
use redis_fsm::{FailoverState, ReplicaLink, ServerRole, ServerState};

/// Why a reply could not be understood. It names what was wrong, never what was sent: the server runs an image
/// the tenant chose, and these texts reach status, Events and logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field the operator relies on is absent.
    #[error("INFO has no {0} field")]
    Missing(&'static str),
    /// A field has a value of the wrong shape.
    #[error("INFO field {field} has a value of the wrong shape")]
    Invalid {
        /// The field name.
        field: &'static str,
    },
    /// The `ROLE` reply has an unexpected shape.
    #[error("ROLE reply: {0}")]
    Role(&'static str),
    /// The `ACL GETUSER` reply has an unexpected shape.
    #[error("ACL GETUSER reply: {0}")]
    Acl(&'static str),
}

/// The `field:value` lines of an `INFO` reply (section headers and blank lines skipped).
#[derive(Clone, Debug, Default)]
pub struct InfoFields<'a>(HashMap<&'a str, &'a str>);

impl<'a> InfoFields<'a> {
    /// Parses `INFO` text; `\r\n` and `\n` line ends are both accepted.
    pub fn parse(text: &'a str) -> Self {
        InfoFields(
            text.lines()
                .map(|line| line.trim_end_matches('\r'))
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .filter_map(|line| line.split_once(':'))
                .collect(),
        )
    }

    /// The raw value of `field`.
    pub fn get(&self, field: &str) -> Option<&'a str> {
        self.0.get(field).copied()
    }

    fn required(&self, field: &'static str) -> Result<&'a str, ParseError> {
        self.get(field).ok_or(ParseError::Missing(field))
    }

    fn number<T: std::str::FromStr>(&self, field: &'static str) -> Result<T, ParseError> {
        let value = self.required(field)?;
        value.parse().map_err(|_| ParseError::Invalid { field })
    }

    fn flag(&self, field: &'static str) -> Result<bool, ParseError> {
        match self.required(field)? {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(ParseError::Invalid { field }),
        }
    }

    /// A replication id, `None` for the all-zero id Redis reports when there is none.
    fn replid(&self, field: &'static str) -> Result<Option<String>, ParseError> {
        let value = self.required(field)?;
        Ok((!value.bytes().all(|b| b == b'0')).then(|| value.to_string()))
    }

    /// An offset that Redis reports as `-1` when absent.
    fn optional_offset(&self, field: &'static str) -> Result<Option<u64>, ParseError> {
        let value: i64 = self.number(field)?;
        Ok(u64::try_from(value).ok())
    }

    /// The role and, for a replica, its link (replication section).
    pub fn role(&self) -> Result<ServerRole, ParseError> {
        match self.required("role")? {
            "master" => Ok(ServerRole::Master),
            "slave" => Ok(ServerRole::Replica(ReplicaLink {
                master_host: self.required("master_host")?.to_string(),
                master_port: self.number("master_port")?,
                link_up: self.required("master_link_status")? == "up",
                sync_in_progress: self.flag("master_sync_in_progress")?,
                replica_offset: self.number("slave_repl_offset")?,
            })),
            _ => Err(ParseError::Invalid { field: "role" }),
        }
    }

    /// Keys over all databases (keyspace section: `db0:keys=3,expires=0,avg_ttl=0`).
    pub fn keys(&self) -> Result<u64, ParseError> {
        let mut total = 0u64;
        for (field, value) in &self.0 {
            let is_db = field
                .strip_prefix("db")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !is_db {
                continue;
            }
            let keys = value
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or(ParseError::Invalid { field: "db<n>" })?;
            total = total.saturating_add(keys);
        }
        Ok(total)
    }
}

/// Parses a default `INFO` reply (sections server, replication, persistence and keyspace) into
/// the phase engine's [`ServerState`].
pub fn server_state(info: &str) -> Result<ServerState, ParseError> {
    let fields = InfoFields::parse(info);
    let failover_state = match fields.get("master_failover_state") {
        None | Some("no-failover") => FailoverState::None,
        Some("waiting-for-sync") => FailoverState::WaitingForSync,
        Some("failover-in-progress") => FailoverState::InProgress,
        Some(_) => {
            return Err(ParseError::Invalid {
                field: "master_failover_state",
            })
        }
    };
    Ok(ServerState {
        run_id: fields.required("run_id")?.to_string(),
        uptime_seconds: fields.number("uptime_in_seconds")?,
        role: fields.role()?,
        replid: fields
            .replid("master_replid")?
            .ok_or(ParseError::Missing("master_replid"))?,
        replid2: fields.replid("master_replid2")?,
        repl_offset: fields.number("master_repl_offset")?,
        second_repl_offset: fields.optional_offset("second_repl_offset")?,
        aof_enabled: fields.flag("aof_enabled")?,
        loading: fields.flag("loading")?,
        keys: fields.keys()?,
        failover_state,
        server: redis_fsm::ServerSoftware::from_info(|name| fields.get(name))
            .ok_or(ParseError::Missing("redis_version"))?,
    })
}

/// The role and the replication offset (`master_repl_offset`) from `INFO replication` alone: what a
/// handover polls.
pub fn replication_view(info: &str) -> Result<(ServerRole, u64), ParseError> {
    let fields = InfoFields::parse(info);
    Ok((fields.role()?, fields.number("master_repl_offset")?))
}

/// The reply of `ROLE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleReply {
    /// `master`, its offset and its connected replicas.
    Master {
        /// The replication offset.
        offset: u64,
        /// `(ip, port, acknowledged offset)` per connected replica.
        replicas: Vec<(String, u16, u64)>,
    },
    /// `slave`, where it replicates from and the link state.
    Replica {
        /// Master host.
        host: String,
        /// Master port.
        port: u16,
        /// `connect`, `connecting`, `handshake`, `sync` or `connected`.
        state: String,
        /// Offset processed, `-1` while not connected.
        offset: i64,
    },
}

fn text(value: &Value) -> Result<String, ParseError> {
    match value {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        _ => Err(ParseError::Role("expected a string")),
    }
}

fn integer(value: &Value) -> Result<i64, ParseError> {
    match value {
        Value::Int(n) => Ok(*n),
        other => text(other)?
            .parse()
            .map_err(|_| ParseError::Role("expected an integer")),
    }
}

fn port(value: &Value) -> Result<u16, ParseError> {
    u16::try_from(integer(value)?).map_err(|_| ParseError::Role("a port out of range"))
}

/// Parses the reply of `ROLE`.
pub fn role_reply(value: &Value) -> Result<RoleReply, ParseError> {
    let Value::Array(items) = value else {
        return Err(ParseError::Role("expected an array"));
    };
    let kind = items
        .first()
        .map(text)
        .transpose()?
        .ok_or(ParseError::Role("empty reply"))?;
    match (kind.as_str(), items.as_slice()) {
        ("master", [_, offset, Value::Array(replicas)]) => Ok(RoleReply::Master {
            offset: u64::try_from(integer(offset)?)
                .map_err(|_| ParseError::Role("a negative offset"))?,
            replicas: replicas
                .iter()
                .map(|replica| match replica {
                    Value::Array(fields) if fields.len() == 3 => Ok((
                        text(&fields[0])?,
                        port(&fields[1])?,
                        u64::try_from(integer(&fields[2])?)
                            .map_err(|_| ParseError::Role("a negative offset"))?,
                    )),
                    _ => Err(ParseError::Role("a replica entry of the wrong shape")),
                })
                .collect::<Result<_, _>>()?,
        }),
        ("slave", [_, host, port_value, state, offset]) => Ok(RoleReply::Replica {
            host: text(host)?,
            port: port(port_value)?,
            state: text(state)?,
            offset: integer(offset)?,
        }),
        _ => Err(ParseError::Role("an unknown role or shape")),
    }
}

/// A user's rules as `ACL GETUSER` reports them: everything that decides what the user may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclUser {
    /// Flags such as `on`, `off`, `nopass`, `skip-sanitize-payload`.
    pub flags: Vec<String>,
    /// SHA-256 hashes (hex) of the passwords it accepts.
    pub passwords: Vec<String>,
    /// Its command rules as Redis renders them, e.g. `+@all -@admin`.
    pub commands: String,
    /// Its key patterns, e.g. `~* %R~cache:*` (empty: none).
    pub keys: String,
    /// Its channel patterns, e.g. `&*`.
    pub channels: String,
    /// Its selectors (Redis 7), each with its own commands, keys and channels.
    pub selectors: Vec<AclSelector>,
}

/// One selector of a user (`(~cache:* +get)`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclSelector {
    /// Command rules.
    pub commands: String,
    /// Key patterns.
    pub keys: String,
    /// Channel patterns.
    pub channels: String,
}

/// The text of a field that Redis 7 reports as a string and Redis 6.2 as a list of patterns (`keys`,
/// `channels`), patterns joined by spaces with their prefix.
fn patterns(value: &Value, prefix: &str) -> Result<String, ParseError> {
    match value {
        Value::Array(items) => Ok(items
            .iter()
            .map(|item| text(item).map(|p| format!("{prefix}{p}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ParseError::Acl("a pattern is not a string"))?
            .join(" ")),
        other => text(other).map_err(|_| ParseError::Acl("patterns are not a string")),
    }
}

/// The field-value pairs of a flat map (RESP2) or a map (RESP3).
fn pairs(value: &Value) -> Result<Vec<(String, &Value)>, ParseError> {
    match value {
        Value::Array(items) => items
            .chunks(2)
            .map(|pair| match pair {
                [key, field] => Ok((
                    text(key).map_err(|_| ParseError::Acl("a field name is not a string"))?,
                    field,
                )),
                _ => Err(ParseError::Acl("odd number of fields")),
            })
            .collect(),
        Value::Map(items) => items
            .iter()
            .map(|(key, field)| {
                Ok((
                    text(key).map_err(|_| ParseError::Acl("a field name is not a string"))?,
                    field,
                ))
            })
            .collect(),
        _ => Err(ParseError::Acl("not a map")),
    }
}

/// Parses the reply of `ACL GETUSER` (a flat map of field names and values; nil for no such user).
pub fn acl_user(value: &Value) -> Result<Option<AclUser>, ParseError> {
    if *value == Value::Nil {
        return Ok(None);
    }
    let strings = |value: &Value| match value {
        Value::Array(items) => items
            .iter()
            .map(|item| text(item).map_err(|_| ParseError::Acl("a list item is not a string")))
            .collect::<Result<Vec<_>, _>>(),
        _ => Err(ParseError::Acl("expected a list")),
    };
    let string = |value: &Value| text(value).map_err(|_| ParseError::Acl("expected a string"));
    let mut user = AclUser::default();
    for (key, field) in pairs(value)? {
        match key.as_str() {
            "flags" => user.flags = strings(field)?,
            "passwords" => user.passwords = strings(field)?,
            "commands" => user.commands = string(field)?,
            "keys" => user.keys = patterns(field, "~")?,
            "channels" => user.channels = patterns(field, "&")?,
            "selectors" => {
                let Value::Array(selectors) = field else {
                    return Err(ParseError::Acl("selectors are not a list"));
                };
                for selector in selectors {
                    let mut parsed = AclSelector::default();
                    for (key, field) in pairs(selector)? {
                        match key.as_str() {
                            "commands" => parsed.commands = string(field)?,
                            "keys" => parsed.keys = patterns(field, "~")?,
                            "channels" => parsed.channels = patterns(field, "&")?,
                            _ => {}
                        }
                    }
                    user.selectors.push(parsed);
                }
            }
            _ => {}
        }
    }
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_getuser_replies_parse_and_nil_is_no_user() {
        let reply = Value::Array(vec![
            bulk("flags"),
            Value::Array(vec![bulk("on"), bulk("sanitize-payload")]),
            bulk("passwords"),
            Value::Array(vec![bulk("ab12"), bulk("cd34")]),
            bulk("commands"),
            bulk("+@all -@admin"),
            bulk("keys"),
            bulk("~*"),
            bulk("selectors"),
            Value::Array(vec![]),
        ]);
        assert_eq!(
            acl_user(&reply).unwrap(),
            Some(AclUser {
                flags: vec!["on".into(), "sanitize-payload".into()],
                passwords: vec!["ab12".into(), "cd34".into()],
                commands: "+@all -@admin".into(),
                keys: "~*".into(),
                channels: String::new(),
                selectors: vec![],
            })
        );
        assert_eq!(acl_user(&Value::Nil).unwrap(), None);
        assert!(acl_user(&bulk("nope")).is_err());
        assert!(acl_user(&Value::Array(vec![bulk("flags")])).is_err());
    }

    const PRIMARY: &str = include_str!("fixtures/primary-promoted-with-replicas.info");
    const REPLICA: &str = include_str!("fixtures/replica-in-sync.info");
    const RESYNCED: &str = include_str!("fixtures/replica-partially-resynced.info");
    const AOF: &str = include_str!("fixtures/standalone-aof.info");
    const PARKED_EMPTY: &str = include_str!("fixtures/restarted-parked-empty.info");
    const PARKED_LOADED: &str = include_str!("fixtures/restarted-parked-loaded-sync-rdb.info");
    const SYNCING: &str = include_str!("fixtures/replica-sync-in-progress.replication");
    const MASTER_DOWN: &str = include_str!("fixtures/replica-master-down.replication");

    #[test]
    fn a_promoted_primary_reports_both_histories() {
        let state = server_state(PRIMARY).expect("parses");
        assert_eq!(state.run_id, "8b734155d054a9ac600824368e2a007b91eea1b4");
        assert_eq!(state.role, ServerRole::Master);
        assert_eq!(state.replid, "f036e60b65ff5fe88458c9db943389310616879c");
        assert_eq!(
            state.replid2.as_deref(),
            Some("35ee1b9f33ff9683faeb78433902db90b06d4134")
        );
        assert_eq!(state.repl_offset, 73202920);
        assert_eq!(state.second_repl_offset, Some(73200771));
        assert_eq!(state.keys, 189679);
        assert!(!state.aof_enabled);
        assert!(!state.loading);
        assert_eq!(state.failover_state, FailoverState::None);
    }

    #[test]
    fn a_replica_in_sync_reports_its_link() {
        let state = server_state(REPLICA).expect("parses");
        assert_eq!(
            state.role,
            ServerRole::Replica(ReplicaLink {
                master_host: "127.0.0.78".into(),
                master_port: 6390,
                link_up: true,
                sync_in_progress: false,
                replica_offset: 73202920,
            })
        );
        assert_eq!(state.replid, "f036e60b65ff5fe88458c9db943389310616879c");
        assert_eq!(state.replid2, None);
        assert_eq!(state.second_repl_offset, None);
    }

    #[test]
    fn a_partially_resynced_replica_keeps_the_old_history_as_replid2() {
        let state = server_state(RESYNCED).expect("parses");
        assert_eq!(
            state.replid2.as_deref(),
            Some("35ee1b9f33ff9683faeb78433902db90b06d4134")
        );
        assert_eq!(state.second_repl_offset, Some(73200771));
    }

    #[test]
    fn persistence_and_keys_of_a_standalone_server() {
        let state = server_state(AOF).expect("parses");
        assert!(state.aof_enabled);
        assert_eq!(state.keys, 2);
        assert_eq!(state.repl_offset, 0);
        assert_eq!(state.role, ServerRole::Master);
    }

    #[test]
    fn a_restarted_server_parked_by_the_boot_guard_is_an_empty_replica_of_itself() {
        let state = server_state(PARKED_EMPTY).expect("parses");
        assert_eq!(state.keys, 0);
        assert_eq!(state.repl_offset, 0);
        let ServerRole::Replica(link) = state.role else {
            panic!("parked server is a replica")
        };
        assert_eq!(
            (link.master_host.as_str(), link.master_port),
            ("127.0.0.77", 6390)
        );
        assert!(!link.link_up);
    }

    #[test]
    fn a_restart_that_loaded_the_rdb_left_by_a_sync_restores_its_history() {
        // `save ""` does not stop a replica from writing the RDB it received: after a restart the
        // server loads it and restores the replication id and offset, so it still shares history.
        let state = server_state(PARKED_LOADED).expect("parses");
        assert_eq!(state.keys, 189678);
        assert_eq!(state.replid, "f036e60b65ff5fe88458c9db943389310616879c");
        assert_eq!(state.repl_offset, 73200784);
    }

    #[test]
    fn replication_sections_of_a_syncing_and_a_disconnected_replica() {
        let ServerRole::Replica(syncing) = InfoFields::parse(SYNCING).role().expect("parses")
        else {
            panic!("replica")
        };
        assert!(syncing.sync_in_progress);
        assert!(!syncing.link_up);
        let ServerRole::Replica(down) = InfoFields::parse(MASTER_DOWN).role().expect("parses")
        else {
            panic!("replica")
        };
        assert!(!down.link_up);
        assert!(!down.sync_in_progress);
        assert_eq!(down.replica_offset, 73200770);
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let crlf = REPLICA.replace('\n', "\r\n");
        assert_eq!(server_state(&crlf), server_state(REPLICA));
    }

    #[test]
    fn missing_and_malformed_fields_are_errors() {
        assert_eq!(
            server_state("# Replication\r\nrole:master\r\n"),
            Err(ParseError::Missing("run_id"))
        );
        let bad_offset = REPLICA.replace("master_repl_offset:73202920", "master_repl_offset:x");
        assert_eq!(
            server_state(&bad_offset),
            Err(ParseError::Invalid {
                field: "master_repl_offset",
            })
        );
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn role_replies_as_redis_sends_them() {
        // ROLE on the master of the captured pair: "master", 719, [["127.0.0.1", "6390", "202"]].
        let master = Value::Array(vec![
            bulk("master"),
            Value::Int(719),
            Value::Array(vec![Value::Array(vec![
                bulk("127.0.0.1"),
                bulk("6390"),
                bulk("202"),
            ])]),
        ]);
        assert_eq!(
            role_reply(&master),
            Ok(RoleReply::Master {
                offset: 719,
                replicas: vec![("127.0.0.1".into(), 6390, 202)]
            })
        );
        // ROLE on a replica still in its handshake: "slave", "127.0.0.77", 6390, "handshake", -1.
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.77"),
            Value::Int(6390),
            bulk("handshake"),
            Value::Int(-1),
        ]);
        assert_eq!(
            role_reply(&replica),
            Ok(RoleReply::Replica {
                host: "127.0.0.77".into(),
                port: 6390,
                state: "handshake".into(),
                offset: -1
            })
        );
        assert!(role_reply(&Value::Array(vec![bulk("sentinel")])).is_err());
        assert!(role_reply(&Value::Nil).is_err());
    }
}
