//! Which server software an instance runs, which of it is supported, and which image changes a running instance
//! may take: pure rules over what a server reported (`INFO server`) and what an image reference says.
//!
//! The support matrix: Redis 7.0 or newer, Valkey 7.2 or newer. Older servers lack what the operator relies on:
//! ACL selectors and key permissions (`%R~`, Redis 7.0), `FUNCTION` (a busy function is ended with
//! `FUNCTION KILL`), `CONFIG SET` of several directives at once. An image change is refused when the new
//! servers could not load what the running ones write: a replica of an older format than its primary cannot
//! load the primary's snapshot (Valkey 9 writes `VALKEY080`, which no Redis reads; Redis 7.2 writes RDB 11,
//! which Redis 7.0 does not; Redis 7.4 writes RDB 12, which Valkey 9 does not).

use std::fmt;

/// The server family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerName {
    /// Redis (`redis_version`, no `server_name`, or `server_name:redis`).
    #[default]
    Redis,
    /// Valkey (`server_name:valkey`, `valkey_version`).
    Valkey,
}

impl ServerName {
    /// Lower case, as `INFO server_name` and the status write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerName::Redis => "redis",
            ServerName::Valkey => "valkey",
        }
    }

    /// The oldest supported release of this family.
    pub fn minimum(self) -> Version {
        match self {
            ServerName::Redis => Version(7, 0, 0),
            ServerName::Valkey => Version(7, 2, 0),
        }
    }
}

/// A release number: major, minor, patch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parses `7`, `7.2`, `7.2.4` (missing parts are 0); anything after the numbers (`-alpine`, `-rc1`) is
    /// ignored. `None` when it does not start with a number.
    pub fn parse(text: &str) -> Option<Version> {
        Version::parse_parts(text).map(|(version, _)| version)
    }

    /// [`Version::parse`], with how many parts the text gave (1 to 3): a tag `7` stands for any 7.x.
    pub fn parse_parts(text: &str) -> Option<(Version, usize)> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = [0u32; 3];
        let mut rest = text;
        let mut given = 0;
        for part in parts.iter_mut() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                break;
            }
            *part = rest[..digits].parse().ok()?;
            given += 1;
            rest = &rest[digits..];
            match rest.strip_prefix('.') {
                Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => rest = after,
                _ => break,
            }
        }
        (given > 0).then_some((Version(parts[0], parts[1], parts[2]), given))
    }

    /// Major and minor only: what decides the snapshot format.
    pub fn minor(self) -> (u32, u32) {
        (self.0, self.1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What a server is: its family and release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerSoftware {
    /// The family.
    pub name: ServerName,
    /// The release.
    pub version: Version,
}

impl Default for ServerSoftware {
    /// The oldest supported Redis.
    fn default() -> Self {
        ServerSoftware {
            name: ServerName::Redis,
            version: ServerName::Redis.minimum(),
        }
    }
}

impl fmt::Display for ServerSoftware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name.as_str(), self.version)
    }
}

impl ServerSoftware {
    /// From `INFO server` fields: `server_name` and `valkey_version` mark Valkey (whose `redis_version` is the
    /// Redis release it is compatible with, 7.2.4), else `redis_version`. `None` without a readable version.
    pub fn from_info<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Option<ServerSoftware> {
        match (field("server_name"), field("valkey_version")) {
            (Some("valkey"), version) | (_, version @ Some(_)) => Some(ServerSoftware {
                name: ServerName::Valkey,
                version: Version::parse(version?)?,
            }),
            _ => Some(ServerSoftware {
                name: ServerName::Redis,
                version: Version::parse(field("redis_version")?)?,
            }),
        }
    }

    /// Why the operator does not run this server, if it does not.
    pub fn unsupported(&self) -> Option<String> {
        let minimum = self.name.minimum();
        (self.version < minimum).then(|| {
            let (mine, theirs) = (self.name, other(self.name));
            format!(
                "{self} is not supported: the operator needs {} {} or newer (ACL selectors, FUNCTION), or {} {} \
                 or newer",
                mine.as_str(),
                minor_text(mine.minimum()),
                theirs.as_str(),
                minor_text(theirs.minimum()),
            )
        })
    }
}

fn minor_text(version: Version) -> String {
    format!("{}.{}", version.0, version.1)
}

fn other(name: ServerName) -> ServerName {
    match name {
        ServerName::Redis => ServerName::Valkey,
        ServerName::Valkey => ServerName::Redis,
    }
}

/// What an image reference says about its server: the family from the repository's name (`valkey/valkey`,
/// `bitnami/valkey`, `example.com/mirror/valkey`: a name containing `valkey`; anything else is taken for Redis)
/// and the release from the tag when it starts with a number (`7.2`, `9.0.1-alpine`); `None` for a digest, a
/// tag like `latest` or `stable`, or no tag.
pub fn image_server(image: &str) -> (ServerName, Option<Version>) {
    let (name, tag) = image_tag(image);
    (name, tag.map(|(version, _)| version))
}

/// [`image_server`], with how many parts of the release the tag gave.
fn image_tag(image: &str) -> (ServerName, Option<(Version, usize)>) {
    let without_digest = image.split('@').next().unwrap_or_default();
    let last = without_digest.rsplit('/').next().unwrap_or_default();
    let (repository, tag) = match last.split_once(':') {
        Some((repository, tag)) => (repository, Some(tag)),
        None => (last, None),
    };
    let name = if repository.to_ascii_lowercase().contains("valkey") {
        ServerName::Valkey
    } else {
        ServerName::Redis
    };
    (name, tag.and_then(Version::parse_parts))
}

/// Why `image` cannot be run at all, judged from its reference alone: a tag naming a release older than the
/// family's minimum.
pub fn image_problem(image: &str) -> Option<String> {
    let (name, version) = image_server(image);
    let software = ServerSoftware {
        name,
        version: version?,
    };
    software
        .unsupported()
        .map(|why| format!("image {image:?}: {why}"))
}

/// Why a running instance whose servers are `running` may not move to `image`: replicas of the new image
/// would have to load snapshots from a primary of the old one (or the reverse, mid-rollout) that they cannot
/// read. Valkey to Redis is refused (no Redis loads a Valkey 9 snapshot, `VALKEY080`; an older Valkey is not
/// told apart by tag alone), as is a lower Redis or Valkey release (older releases refuse newer RDB formats). A tag without a release number cannot be
/// judged and is let through; the servers report their release once they run.
pub fn image_change_problem(running: &[ServerSoftware], image: &str) -> Option<String> {
    let newest = running.iter().max_by_key(|s| (s.name, s.version))?;
    let (name, version) = image_tag(image);
    if newest.name == ServerName::Valkey && name == ServerName::Redis {
        return Some(format!(
            "image {image:?} is Redis and the instance runs {newest}: Redis cannot load the snapshots Valkey \
             writes to disk (VALKEY080), so a pod restarted on the new image could not load its own data; \
             migrate by restoring a backup into a new instance instead"
        ));
    }
    if newest.name == ServerName::Redis
        && name == ServerName::Valkey
        && newest.version.minor() >= (7, 4)
    {
        return Some(format!(
            "image {image:?} is Valkey and the instance runs {newest}: Redis 7.4 and newer write snapshots (RDB \
             12) Valkey does not load, so a replica on the new image could not copy the primary"
        ));
    }
    let (version, given) = version?;
    // A tag `7` floats over every 7.x: only the parts a tag gives are compared.
    let wanted = (version.0, if given >= 2 { version.1 } else { u32::MAX });
    (name == newest.name && wanted < newest.version.minor()).then(|| {
        format!(
            "image {image:?} is {}, older than the {newest} the instance runs: an older release cannot load the \
             snapshots a newer one writes, so a replica on the new image could not copy the primary; restore a \
             backup into a new instance to go back",
            name.as_str(),
        )
    })
}

/// What a pod's status recorded (`redis 7.0.15`, see [`ServerSoftware`]'s `Display`), read back.
pub fn parse_recorded(text: &str) -> Option<ServerSoftware> {
    let (name, version) = text.split_once(' ')?;
    let name = match name {
        "redis" => ServerName::Redis,
        "valkey" => ServerName::Valkey,
        _ => return None,
    };
    Some(ServerSoftware {
        name,
        version: Version::parse(version)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(name: ServerName, a: u32, b: u32, c: u32) -> ServerSoftware {
        ServerSoftware {
            name,
            version: Version(a, b, c),
        }
    }

    #[test]
    fn versions_parse_from_tags_and_info() {
        assert_eq!(Version::parse("7"), Some(Version(7, 0, 0)));
        assert_eq!(Version::parse("7.2"), Some(Version(7, 2, 0)));
        assert_eq!(Version::parse("7.2.4"), Some(Version(7, 2, 4)));
        assert_eq!(Version::parse("9.0.1-alpine"), Some(Version(9, 0, 1)));
        assert_eq!(Version::parse("v6.2"), Some(Version(6, 2, 0)));
        assert_eq!(Version::parse("7-rollout"), Some(Version(7, 0, 0)));
        assert_eq!(Version::parse("7.2-rolled"), Some(Version(7, 2, 0)));
        assert_eq!(Version::parse("latest"), None);
        assert_eq!(Version::parse(""), None);
        assert_eq!(Version::parse("7.x"), Some(Version(7, 0, 0)));
        assert_eq!(Version::parse_parts("7"), Some((Version(7, 0, 0), 1)));
        assert_eq!(Version::parse_parts("9.1.2"), Some((Version(9, 1, 2), 3)));
    }

    #[test]
    fn the_family_comes_from_the_repository_name_and_the_release_from_the_tag() {
        use ServerName::*;
        assert_eq!(image_server("redis:7.2"), (Redis, Some(Version(7, 2, 0))));
        assert_eq!(
            image_server("valkey/valkey:9"),
            (Valkey, Some(Version(9, 0, 0)))
        );
        assert_eq!(
            image_server("example.com:5000/mirror/valkey"),
            (Valkey, None)
        );
        assert_eq!(image_server("example.com:5000/redis:stable"), (Redis, None));
        assert_eq!(
            image_server("redis:6.2@sha256:abc"),
            (Redis, Some(Version(6, 2, 0)))
        );
        assert_eq!(image_server("redis@sha256:abc"), (Redis, None));
        // A registry host naming valkey does not make a Redis image Valkey.
        assert_eq!(
            image_server("valkey.example.com/redis:7"),
            (Redis, Some(Version(7, 0, 0)))
        );
    }

    #[test]
    fn info_tells_valkey_from_redis() {
        let valkey: &'static [(&str, &str)] = &[
            ("redis_version", "7.2.4"),
            ("server_name", "valkey"),
            ("valkey_version", "9.1.2"),
        ];
        let get = |fields: &'static [(&'static str, &'static str)]| {
            move |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
        };
        assert_eq!(
            ServerSoftware::from_info(get(valkey)),
            Some(sw(ServerName::Valkey, 9, 1, 2))
        );
        let redis: &'static [(&str, &str)] = &[("redis_version", "7.0.15")];
        assert_eq!(
            ServerSoftware::from_info(get(redis)),
            Some(sw(ServerName::Redis, 7, 0, 15))
        );
        // extended-redis-compatibility may hide server_name; valkey_version still tells.
        let hidden: &'static [(&str, &str)] =
            &[("redis_version", "7.2.4"), ("valkey_version", "8.1.0")];
        assert_eq!(
            ServerSoftware::from_info(get(hidden)),
            Some(sw(ServerName::Valkey, 8, 1, 0))
        );
        assert_eq!(ServerSoftware::from_info(get(&[])), None);
    }

    #[test]
    fn support_starts_at_redis_7_0_and_valkey_7_2() {
        use ServerName::*;
        assert!(sw(Redis, 7, 0, 0).unsupported().is_none());
        assert!(sw(Redis, 8, 2, 1).unsupported().is_none());
        assert!(sw(Valkey, 7, 2, 5).unsupported().is_none());
        let why = sw(Redis, 6, 2, 14).unsupported().unwrap();
        assert!(why.contains("redis 6.2.14 is not supported"), "{why}");
        assert!(why.contains("redis 7.0 or newer"), "{why}");
        assert!(sw(Valkey, 7, 0, 0).unsupported().is_some());
        assert!(image_problem("redis:6.2").is_some());
        assert!(image_problem("redis:5").is_some());
        assert!(image_problem("redis:7.0.1").is_none());
        assert!(image_problem("redis:latest").is_none());
        assert!(image_problem("valkey/valkey:9").is_none());
    }

    #[test]
    fn image_changes_that_replicas_could_not_follow_are_refused() {
        use ServerName::*;
        let redis70 = [sw(Redis, 7, 0, 15), sw(Redis, 7, 0, 15)];
        assert_eq!(image_change_problem(&redis70, "valkey/valkey:9"), None);
        // valkey-server 9.1.2 refuses RDB 12 ("Can't handle RDB format version 12"), which Redis 7.4 writes.
        let why = image_change_problem(&[sw(Redis, 7, 4, 1)], "valkey/valkey:9").unwrap();
        assert!(why.contains("RDB 12"), "{why}");
        assert_eq!(
            image_change_problem(&[sw(Redis, 7, 2, 4)], "valkey/valkey:9"),
            None
        );
        assert_eq!(image_change_problem(&redis70, "redis:7.2"), None);
        assert_eq!(image_change_problem(&redis70, "redis:7.0.2"), None);
        assert_eq!(image_change_problem(&redis70, "redis:latest"), None);
        let valkey = [sw(Valkey, 9, 1, 2)];
        assert!(image_change_problem(&valkey, "redis:7.2").is_some());
        assert!(image_change_problem(&valkey, "example.com/cache:stable").is_some());
        assert!(image_change_problem(&valkey, "valkey/valkey:8").is_some());
        assert_eq!(image_change_problem(&valkey, "valkey/valkey:9.1.5"), None);
        let redis72 = [sw(Redis, 7, 2, 4), sw(Redis, 7, 0, 15)];
        let why = image_change_problem(&redis72, "redis:7.0").unwrap();
        assert!(why.contains("older than the redis 7.2.4"), "{why}");
        // A tag of the major release alone floats over its minors.
        assert_eq!(image_change_problem(&redis72, "redis:7"), None);
        assert_eq!(image_change_problem(&valkey, "valkey/valkey:9"), None);
        assert!(image_change_problem(&valkey, "valkey/valkey:8").is_some());
        assert_eq!(parse_recorded(&valkey[0].to_string()), Some(valkey[0]));
        assert_eq!(parse_recorded("memcached 1.6"), None);
        // Nothing observed yet: nothing to judge against.
        assert_eq!(image_change_problem(&[], "redis:7.0"), None);
    }
}
