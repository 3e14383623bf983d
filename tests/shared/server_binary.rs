//! The server binary the Redis-level tests start (included by each test crate that starts servers).

/// `REDIS_OPERATOR_TEST_SERVER` (a binary: `valkey-server` or `redis-server-6.2`, which `devcluster/servers.sh`
/// installs), else Debian's `redis-server`.
pub fn server_binary() -> String {
    std::env::var("REDIS_OPERATOR_TEST_SERVER")
        .ok()
        .filter(|binary| !binary.is_empty())
        .unwrap_or_else(|| "redis-server".into())
}
