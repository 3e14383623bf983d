//! Authentication: which Secrets hold the passwords, the Redis users (ACL) built from them, and what the pods
//! need to use them. Everything here is pure; the reconciler reads the Secrets from its watch cache, applies
//! what is built, and [`crate::converge::auth`] brings running servers to it without restarts.
//!
//! Users (ACL, Redis 6+):
//! - `default`, the application's: every client that only sends a password (`AUTH <password>`, `redis-cli -a`,
//!   a URL `redis://:pw@host`) is this user. Data commands, no administrative ones (`spec.auth.defaultUserRules`).
//!   Its passwords come from the application Secret: `password`, and `previousPassword` while it is there.
//! - `redis-operator`, the operator's own: exactly the commands it sends.
//! - `replication`, what replicas authenticate as (`masteruser`/`masterauth`): `PSYNC`, `REPLCONF`, `PING`.
//! - `probe`, the readiness probe's: `PING`, `INFO`. `exporter`, the metrics sidecar's: `INFO` and the few
//!   read-only commands its metrics need, nothing that reads a secret or data (no `CONFIG GET`, which would
//!   read `masterauth`; no `SLOWLOG GET`, which shows command arguments).
//!
//! The operator's users get generated passwords, kept in the Secret `NAME-acl` and never rotated, so rotating
//! the application password never touches replication (`masterauth` cannot drift). Redis only ever sees
//! SHA-256 hashes of the application passwords (`#<hash>` in the ACL file and in `ACL SETUSER`).

pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};

use crate::api::AuthSpec;
use crate::names::{generated_secret_name, AUTH_ANNOTATION};

/// Where the `NAME-acl` Secret is mounted in the Redis container.
pub const AUTH_DIR: &str = "/etc/redis-auth";
/// The ACL file (key of `NAME-acl`): every user, passwords as SHA-256 hashes.
pub const ACL_FILE: &str = "users.acl";
/// The configuration file included on the command line (key of `NAME-acl`): `aclfile`, `masteruser`,
/// `masterauth`.
pub const AUTH_CONF: &str = "auth.conf";
/// The key of the application password in its Secret.
pub const PASSWORD_KEY: &str = "password";
/// The key of the password still accepted during a rotation, in the same Secret.
pub const PREVIOUS_PASSWORD_KEY: &str = "previousPassword";
/// The operator's own user.
pub const OPERATOR_USER: &str = "redis-operator";
/// The user replicas authenticate to their primary as.
pub const REPLICATION_USER: &str = "replication";
/// The readiness probe's user.
pub const PROBE_USER: &str = "probe";
/// The metrics exporter's user.
pub const EXPORTER_USER: &str = "exporter";

/// One of the operator's users: name, key of its password in `NAME-acl`, ACL rules.
struct InternalUser {
    name: &'static str,
    key: &'static str,
    rules: &'static str,
}

/// The operator's users. Every command the operator sends (src/redis/client.rs) is here, and nothing else.
const INTERNAL_USERS: [InternalUser; 4] = [
    InternalUser {
        name: OPERATOR_USER,
        key: "operator-password",
        // `script|kill`, `function|kill`, `shutdown`: ending a busy primary's script, or stopping the server
        // when the script wrote (the only fence a busy server accepts); `client|kill`: disconnecting the
        // clients of a demoted primary; `client|pause`, `client|unpause`: holding writes back during a switchover
        // (see `converge::handover`). `HELLO` (the login) needs no rule: Redis lets every client send it.
        rules: "-@all +info +role +replicaof +config|get +config|set +client|pause +client|unpause +client|kill \
                +script|kill +function|kill +shutdown +acl|getuser +acl|setuser",
    },
    InternalUser {
        name: REPLICATION_USER,
        key: "replication-password",
        rules: "-@all +psync +replconf +ping",
    },
    InternalUser {
        name: PROBE_USER,
        key: "probe-password",
        rules: "-@all +ping +info",
    },
    // What redis_exporter sends for its default metrics, less what reads data or secrets: no `CONFIG GET`
    // (`masterauth` is the replication user's password, and with it every key through `PSYNC`), no
    // `SLOWLOG GET` (the arguments of slow commands: keys and values). The exporter then goes without its three
    // `redis_config_*` metrics and two slow-log ones; no alert uses them.
    InternalUser {
        name: EXPORTER_USER,
        key: "exporter-password",
        rules: "-@all +ping +info +slowlog|len +latency|latest +select +dbsize +cluster|info",
    },
];

/// The key of `NAME-acl` holding the exporter's password file: a JSON map from the one address it scrapes (its
/// own server's socket) to its password, so a `/scrape?target=` of any other address gets no password.
pub const EXPORTER_PASSWORDS: &str = "exporter-passwords.json";
/// Where the exporter's password file is mounted.
pub const EXPORTER_AUTH_DIR: &str = "/etc/redis-exporter";

/// The Secret and key holding the application password.
pub fn application_secret(instance: &str, spec: &AuthSpec) -> (String, String) {
    match &spec.secret_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (generated_secret_name(instance), PASSWORD_KEY.to_string()),
    }
}

/// Hex SHA-256 of a password: how Redis lists it (`ACL GETUSER`) and how the ACL file names it (`#<hash>`).
pub fn password_hash(password: &[u8]) -> String {
    Sha256::digest(password)
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// A new random password: 32 bytes from the operating system, hex (64 characters, safe in every file and URL).
pub fn random_password() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    }))
}

/// Why the application password cannot be used. Messages name the Secret and key, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthProblem {
    /// `spec.auth.secretRef` names a Secret that does not exist.
    #[error("Secret {0} (spec.auth.secretRef) does not exist")]
    MissingSecret(String),
    /// The Secret lacks the key.
    #[error("Secret {secret} has no key {key}")]
    MissingKey {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// The key holds an empty password.
    #[error("key {key} of Secret {secret} is empty: a password cannot be empty")]
    EmptyPassword {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
}

/// The passwords clients may use, as hashes, and where they come from. `Debug` shows no hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ApplicationPasswords {
    /// The Secret.
    pub secret: String,
    /// Its `resourceVersion` (`None` when the operator is about to create it).
    pub version: Option<String>,
    /// Hashes of `password` and, during a rotation, `previousPassword`, sorted.
    pub hashes: Vec<String>,
    /// Whether `previousPassword` is still accepted.
    pub previous: bool,
    /// The current password (`password`, or the key `spec.auth.secretRef` names), for `NAME-connection`; never
    /// shown by `Debug`.
    pub current: Vec<u8>,
}

impl fmt::Debug for ApplicationPasswords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationPasswords")
            .field("secret", &self.secret)
            .field("version", &self.version)
            .field("passwords", &self.hashes.len())
            .field("previous", &self.previous)
            .finish()
    }
}

/// Everything authentication needs for one reconcile.
#[derive(Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The application passwords; `None` when authentication is off.
    pub application: Option<ApplicationPasswords>,
    /// The operator's users' passwords by user, from `NAME-acl` (generated when missing; when authentication is
    /// off, only what `NAME-acl` already holds, to reach pods started while it was on).
    pub internal: BTreeMap<&'static str, String>,
    /// The generated application password, when `NAME-auth` is to be created.
    pub create_application_secret: Option<String>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("application", &self.application)
            .field("internal", &self.internal.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.0.clone());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.as_bytes().to_vec())
}

/// Works out the passwords from the application Secret (`app_secret`, looked up by the name
/// [`application_secret`] gives) and `NAME-acl` (`users_secret`), generating what is missing with `generate`.
pub fn resolve(
    instance: &str,
    spec: &AuthSpec,
    app_secret: Option<&Secret>,
    users_secret: Option<&Secret>,
    generate: &mut dyn FnMut() -> String,
) -> Result<Resolved, AuthProblem> {
    let known = |key: &str| {
        users_secret
            .and_then(|s| secret_value(s, key))
            .filter(|v| !v.is_empty())
            .and_then(|v| String::from_utf8(v).ok())
    };
    if !spec.enabled {
        let internal = INTERNAL_USERS
            .iter()
            .filter_map(|u| Some((u.name, known(u.key)?)))
            .collect();
        return Ok(Resolved {
            application: None,
            internal,
            create_application_secret: None,
        });
    }
    let (secret_name, key) = application_secret(instance, spec);
    let mut create = None;
    let (current, previous, version) = match app_secret {
        None if spec.secret_ref.is_some() => return Err(AuthProblem::MissingSecret(secret_name)),
        None => {
            let password = generate();
            create = Some(password.clone());
            (password.into_bytes(), None, None)
        }
        Some(secret) => {
            let current = secret_value(secret, &key).ok_or_else(|| AuthProblem::MissingKey {
                secret: secret_name.clone(),
                key: key.clone(),
            })?;
            if current.is_empty() {
                return Err(AuthProblem::EmptyPassword {
                    secret: secret_name,
                    key,
                });
            }
            let previous = secret_value(secret, PREVIOUS_PASSWORD_KEY).filter(|p| !p.is_empty());
            (current, previous, secret.metadata.resource_version.clone())
        }
    };
    let mut hashes = vec![password_hash(&current)];
    if let Some(previous) = &previous {
        hashes.push(password_hash(previous));
    }
    hashes.sort();
    hashes.dedup();
    let internal = INTERNAL_USERS
        .iter()
        .map(|u| (u.name, known(u.key).unwrap_or_else(&mut *generate)))
        .collect();
    Ok(Resolved {
        application: Some(ApplicationPasswords {
            secret: secret_name,
            version,
            hashes,
            previous: previous.is_some(),
            current: current.clone(),
        }),
        internal,
        create_application_secret: create,
    })
}

/// The ACL rule words of a user with exactly `hashes` as passwords, whatever it held before (passwords,
/// `nopass`, keys, channels, commands and `skip-sanitize-payload` reset; selectors are cleared where a server
/// has any, see [`crate::converge::auth::steps`]). No `reset`: applying them to a live user keeps its connections.
pub fn user_rules(hashes: &[String], rules: &str) -> Vec<String> {
    let mut words = vec!["on".to_string(), "resetpass".to_string()];
    words.extend(hashes.iter().map(|h| format!("#{h}")));
    words.extend(
        ["resetkeys", "resetchannels", "sanitize-payload", "-@all"]
            .iter()
            .map(ToString::to_string),
    );
    words.extend(rules.split_whitespace().map(ToString::to_string));
    words
}

/// Every user a server of the instance should have, with its desired password hashes and rule words.
/// `Debug` shows the name only.
#[derive(Clone, PartialEq, Eq)]
pub struct DesiredUser {
    /// The user name.
    pub name: &'static str,
    /// Hashes of the passwords it accepts, sorted.
    pub hashes: Vec<String>,
    /// `ACL SETUSER` words that make it so.
    pub rules: Vec<String>,
}

impl fmt::Debug for DesiredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The users of an instance with authentication on: `default` first, then the operator's.
pub fn desired_users(spec: &AuthSpec, resolved: &Resolved) -> Vec<DesiredUser> {
    let mut users = Vec::new();
    if let Some(app) = &resolved.application {
        users.push(DesiredUser {
            name: "default",
            hashes: app.hashes.clone(),
            rules: user_rules(&app.hashes, &spec.default_user_rules),
        });
    }
    for user in &INTERNAL_USERS {
        if let Some(password) = resolved.internal.get(user.name) {
            let hashes = vec![password_hash(password.as_bytes())];
            users.push(DesiredUser {
                name: user.name,
                rules: user_rules(&hashes, user.rules),
                hashes,
            });
        }
    }
    users
}

/// The ACL file: one `user` line per user (see [`desired_users`]).
pub fn render_acl_file(users: &[DesiredUser]) -> String {
    let mut out = String::new();
    for user in users {
        // The file form of the same words; `resetpass`/`reset*` are no-ops on a new user.
        let _ = writeln!(out, "user {} {}", user.name, user.rules.join(" "));
    }
    out
}

/// `auth.conf`: the ACL file and how replicas authenticate to their primary.
pub fn render_auth_conf(replication_password: &str) -> String {
    format!(
        "# Rendered by redis-operator.\naclfile {AUTH_DIR}/{ACL_FILE}\nmasteruser {REPLICATION_USER}\n\
         masterauth {replication_password}\n"
    )
}

/// The exporter's password file (`--redis.password-file`): its password for its own server's socket only.
/// redis_exporter looks a target's password up by its exact address, so every other target it is asked to
/// scrape gets none.
pub fn render_exporter_passwords(password: &str) -> String {
    serde_json::json!({ crate::names::REDIS_SOCKET_ADDR: password }).to_string()
}

/// The data of `NAME-acl`: the files the pods read and the operator's users' passwords. `None` when
/// authentication is off (the Secret is then left as it is).
pub fn users_secret_data(
    spec: &AuthSpec,
    resolved: &Resolved,
) -> Option<BTreeMap<String, ByteString>> {
    resolved.application.as_ref()?;
    let users = desired_users(spec, resolved);
    let mut data: BTreeMap<String, ByteString> = INTERNAL_USERS
        .iter()
        .filter_map(|u| {
            let password = resolved.internal.get(u.name)?;
            Some((u.key.to_string(), ByteString(password.clone().into_bytes())))
        })
        .collect();
    data.insert(
        ACL_FILE.into(),
        ByteString(render_acl_file(&users).into_bytes()),
    );
    if let Some(exporter) = resolved.internal.get(EXPORTER_USER) {
        data.insert(
            EXPORTER_PASSWORDS.into(),
            ByteString(render_exporter_passwords(exporter).into_bytes()),
        );
    }
    let replication = resolved.internal.get(REPLICATION_USER)?;
    data.insert(
        AUTH_CONF.into(),
        ByteString(render_auth_conf(replication).into_bytes()),
    );
    Some(data)
}

/// The operator's login to the instance's servers, when it has a user.
pub fn operator_login(resolved: &Resolved) -> Option<crate::redis::Login> {
    resolved
        .internal
        .get(OPERATOR_USER)
        .map(|password| crate::redis::Login {
            username: OPERATOR_USER.into(),
            password: password.clone(),
        })
}

/// The replication user's login (what a replica, and a backup, reads a server's data with), when authentication
/// is on.
pub fn replication_login(resolved: &Resolved) -> Option<crate::redis::Login> {
    resolved.application.as_ref()?;
    resolved
        .internal
        .get(REPLICATION_USER)
        .map(|password| crate::redis::Login {
            username: REPLICATION_USER.into(),
            password: password.clone(),
        })
}

/// The value of [`AUTH_ANNOTATION`] for `spec`.
pub fn template_annotation(spec: &AuthSpec) -> String {
    if !spec.enabled {
        return "off".into();
    }
    let mut rules = spec.default_user_rules.clone();
    for user in &INTERNAL_USERS {
        let _ = write!(rules, "\n{} {}", user.name, user.rules);
    }
    format!("on-{}", &password_hash(rules.as_bytes())[..16])
}

/// Whether a pod was started with authentication on (it read the ACL file and `auth.conf`).
pub fn pod_started_with_auth(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(AUTH_ANNOTATION)
        .is_some_and(|v| v.starts_with("on"))
}

/// The key of `NAME-acl` holding the readiness probe's password.
pub fn probe_password_key() -> &'static str {
    INTERNAL_USERS[2].key
}

/// The readiness probe's `redis-cli`: the probe user, its password read from the mounted file into
/// `REDISCLI_AUTH` (never on a command line).
pub fn probe_cli() -> String {
    format!(
        "REDISCLI_AUTH=\"$(cat {AUTH_DIR}/{key})\" redis-cli --no-auth-warning --user {PROBE_USER}",
        key = INTERNAL_USERS[2].key
    )
}

/// Checks `spec.auth.defaultUserRules`: ACL rules only, without passwords or user state, which the operator owns.
pub fn rules_problem(rules: &str) -> Option<String> {
    if rules.trim().is_empty() {
        return Some("must not be empty".into());
    }
    let owned = [
        "on",
        "off",
        "nopass",
        "resetpass",
        "reset",
        "skip-sanitize-payload",
    ];
    rules.split_whitespace().find_map(|word| {
        let lower = word.to_ascii_lowercase();
        if word.starts_with(['>', '<', '#', '!']) {
            Some("passwords are not set here (they come from the Secret)".to_string())
        } else if owned.contains(&lower.as_str()) {
            Some(format!("{word:?} is managed by the operator"))
        } else if !word.starts_with(['+', '-', '~', '%', '&', '('])
            && ![
                "allkeys",
                "allchannels",
                "allcommands",
                "nocommands",
                "resetkeys",
                "resetchannels",
                "sanitize-payload",
            ]
            .contains(&lower.as_str())
        {
            Some(format!("{word:?} is not an ACL rule (see ACL SETUSER)"))
        } else {
            None
        }
    })
}

/// The status summary: whether clients must authenticate, and with which Secret.
pub fn status_message(application: Option<&ApplicationPasswords>) -> String {
    match application {
        None => "authentication is off (spec.auth.enabled: false): the instance accepts unauthenticated \
                 clients, and every client may run every command"
            .into(),
        Some(app) if app.previous => format!(
            "clients authenticate with the password in Secret {} (key {PASSWORD_KEY} or the one from \
             spec.auth.secretRef); {PREVIOUS_PASSWORD_KEY} is still accepted until it is removed",
            app.secret
        ),
        Some(app) => format!(
            "clients authenticate with the password in Secret {}",
            app.secret
        ),
    }
}

#[cfg(test)]
mod tests;
