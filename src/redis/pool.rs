//! Connections kept between passes. A steady instance is observed every few seconds, and each pass used to
//! open, log in on and close one connection per pod; a kept connection is taken again by the next pass to the
//! same server as the same user, so an idle instance costs its servers commands, not connections.
//!
//! A kept connection holds none of the `MAX_CONNECTIONS` (the client's) places (those bound the passes
//! running at once) and may read [`super::capped::MAX_READ_BYTES`] again in each pass that takes it. One is
//! taken again only if its connection is still open (the task reading it has not ended: a restarted or killed
//! server closed it), it was idle less than [`IDLE_TIMEOUT`], and no command on it failed other than by the
//! server's refusal (a timeout, a broken connection or an oversized reply discard it). At most
//! [`max_idle`] are kept in all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::access::{Access, Login};

/// How long a connection may wait unused before it is closed: a steady replicated instance is observed every
/// 2–5 s and a single pod at least every resync, and a server that went away closes its connection anyway.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many connections may wait unused in all: half the process's open-file limit (its soft limit, which
/// `main` raises to the hard one), less room for the API connections and the in-flight passes; at least 64.
pub fn max_idle() -> usize {
    static MAX: LazyLock<usize> = LazyLock::new(|| {
        let files = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
            .unwrap_or(1024);
        (files.saturating_sub(256) / 2).clamp(64, 100_000)
    });
    *MAX
}

/// Which connections may serve a pass: the same server, the same user and password, the same transport.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct Key {
    endpoint: String,
    user: Option<String>,
    /// SHA-256 of the password: a rotated password never takes a connection logged in with the old one.
    password: [u8; 32],
    tls: bool,
}

impl Key {
    /// The key of the operator's connections to `host:port` through `access`.
    pub(super) fn of(host: &str, port: u16, access: &Access) -> Self {
        Key::new(
            &format!("{host}:{port}"),
            access.login.as_ref(),
            access.tls.contains_key(host),
        )
    }

    pub(super) fn new(endpoint: &str, login: Option<&Login>, tls: bool) -> Self {
        Key {
            endpoint: endpoint.to_string(),
            user: login.map(|l| l.username.clone()),
            password: login
                .map(|l| Sha256::digest(l.password.as_bytes()).into())
                .unwrap_or_default(),
            tls,
        }
    }
}

/// One open, logged-in connection and what goes with it.
pub(super) struct Kept {
    pub(super) connection: MultiplexedConnection,
    pub(super) served_certificate: Option<rustls::pki_types::CertificateDer<'static>>,
    /// Set once the server sent more than the cap in one pass.
    pub(super) exceeded: Arc<AtomicBool>,
    /// What was read in the current pass (reset when a pass takes it).
    pub(super) read: Arc<AtomicUsize>,
    /// The task reading the connection: it ends when the connection closes.
    pub(super) driver: JoinHandle<()>,
}

impl Kept {
    fn usable(&self) -> bool {
        !self.driver.is_finished() && !self.exceeded.load(Ordering::SeqCst)
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // Closes the socket now rather than when the last handle of the connection goes.
        self.driver.abort();
    }
}

struct Idle {
    by_key: HashMap<Key, Vec<(Kept, Instant)>>,
    count: usize,
    swept: Instant,
}

static IDLE: LazyLock<Mutex<Idle>> = LazyLock::new(|| {
    Mutex::new(Idle {
        by_key: HashMap::new(),
        count: 0,
        swept: Instant::now(),
    })
});

/// A kept connection for `key`, if one is usable; its read count starts again at zero.
pub(super) fn take(key: &Key) -> Option<Kept> {
    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
    let idle = &mut *idle;
    let kept = idle.by_key.get_mut(key)?;
    let mut found = None;
    while let Some((connection, since)) = kept.pop() {
        idle.count -= 1;
        if since.elapsed() < IDLE_TIMEOUT && connection.usable() {
            found = Some(connection);
            break;
        }
    }
    if kept.is_empty() {
        idle.by_key.remove(key);
    }
    IDLE_GAUGE.set(i64::try_from(idle.count).unwrap_or(i64::MAX));
    let found = found?;
    found.read.store(0, Ordering::SeqCst);
    Some(found)
}

/// Keeps `connection` for the next pass to `key`, unless it is unusable or the pool is full. Closes the
/// connections that waited longer than [`IDLE_TIMEOUT`] (looked for at most once a second).
pub(super) fn put(key: Key, connection: Kept) {
    if !connection.usable() {
        return;
    }
    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
    let idle = &mut *idle;
    if idle.swept.elapsed() >= Duration::from_secs(1) {
        idle.swept = Instant::now();
        let mut count = 0;
        idle.by_key.retain(|_, kept| {
            kept.retain(|(connection, since)| {
                since.elapsed() < IDLE_TIMEOUT && connection.usable()
            });
            count += kept.len();
            !kept.is_empty()
        });
        idle.count = count;
    }
    if idle.count < max_idle() {
        idle.count += 1;
        idle.by_key
            .entry(key)
            .or_default()
            .push((connection, Instant::now()));
    }
    IDLE_GAUGE.set(i64::try_from(idle.count).unwrap_or(i64::MAX));
}

/// How many connections wait unused now.
pub fn idle_count() -> usize {
    IDLE.lock().map(|idle| idle.count).unwrap_or_default()
}

/// [`idle_count`] as a gauge, set whenever it changes.
pub static IDLE_GAUGE: LazyLock<prometheus_client::metrics::gauge::Gauge> =
    LazyLock::new(Default::default);

/// How many usable connections to `endpoint` (`host:port`) are kept now, for any user.
pub fn kept_for(endpoint: &str) -> usize {
    IDLE.lock()
        .map(|idle| {
            idle.by_key
                .iter()
                .filter(|(key, _)| key.endpoint == endpoint)
                .flat_map(|(_, kept)| kept.iter())
                .filter(|(connection, _)| connection.usable())
                .count()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_password_or_another_transport_is_another_key() {
        let login = |password: &str| Login {
            username: "redis-operator".into(),
            password: password.into(),
        };
        let key = Key::new("10.0.0.1:6379", Some(&login("a")), false);
        assert_eq!(key, Key::new("10.0.0.1:6379", Some(&login("a")), false));
        assert_ne!(key, Key::new("10.0.0.1:6379", Some(&login("b")), false));
        assert_ne!(key, Key::new("10.0.0.1:6379", Some(&login("a")), true));
        assert_ne!(key, Key::new("10.0.0.1:6379", None, false));
        assert_ne!(key, Key::new("10.0.0.2:6379", Some(&login("a")), false));
        assert!(!format!("{key:?}").contains("\"a\""));
    }
}
