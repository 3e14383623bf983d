//! The only code that speaks to Redis servers.
//!
//! One [`RedisNode`] is one connection to one pod's server. Every call is bounded: connecting by
//! [`Timeouts::connect`], every command by [`Timeouts::command`] (plus the server-side wait of
//! `WAIT`), through `tokio::time::timeout`, so a stopped or partitioned server costs at most that
//! long and never stalls another instance's reconcile. Failures are typed ([`RedisError`]) and say
//! whether trying again later can help.
//!
//! The server runs an image the tenant chose, so it may send anything. What a connection reads is capped
//! ([`MAX_READ_BYTES`], counted below the client library, which would buffer a reply of any size), at most
//! [`MAX_CONNECTIONS`] connections are open at once, and every text taken from a server into an error is cut
//! to [`MAX_ERROR_TEXT`] characters; a reply the operator cannot parse is reported as unreadable, without its
//! content.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, RedisConnectionInfo, Value};
use futures::FutureExt;
use redis_fsm::{Refusal, ServerRole, ServerState};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use super::access::{Access, Login, Timeouts};
use super::capped::Capped;
pub use super::capped::MAX_READ_BYTES;
pub use super::error::{bounded_text, is_local, RedisError, MAX_ERROR_TEXT};
use super::info::{self, AclUser, ParseError, RoleReply};
use super::pool::{self, Kept, Key};

/// How many servers the operator talks to at once (connections in use by a pass in this process; kept idle
/// connections do not count, see [`super::pool`]). More wait for one to be done; the waiting does not count
/// against a server's time bounds. With [`MAX_READ_BYTES`], what is read from
/// servers at a time is bounded by 64 MiB (parsed replies of many small elements take a few times their bytes).
pub const MAX_CONNECTIONS: usize = 64;

static CONNECTIONS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(MAX_CONNECTIONS)));

/// The refusal behind `error` from a call to `host:port`, if any (see [`RedisError::refusal`]). A server at
/// `maxclients` writes its refusal as soon as it accepts a connection and closes it, so the first command may
/// meet a closed socket (broken pipe, reset, end of stream) instead of the reply. Then, and only then, one more
/// plain connection sends nothing and reads what the server says unprompted, within the connect bound: a server
/// says nothing to a new connection unless it refuses it. Over TLS the refusal is not readable: `None`.
pub async fn refusal_of(
    error: &RedisError,
    host: &str,
    port: u16,
    access: &Access,
) -> Option<Refusal> {
    if let Some(refusal) = error.refusal() {
        return Some(refusal);
    }
    let closed_after_connect =
        matches!(error, RedisError::Connection { command, .. } if *command != "connect");
    if !closed_after_connect || access.tls.contains_key(host) {
        return None;
    }
    let _place = CONNECTIONS.clone().acquire_owned().await.ok()?;
    let listen = async {
        use tokio::io::AsyncReadExt;
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let mut said = Vec::new();
        let mut buf = [0u8; 128];
        // At most a few lines: the refusal is one short line.
        while said.len() < 512 {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            said.extend_from_slice(&buf[..n]);
            if said.ends_with(b"\r\n") {
                break;
            }
        }
        Some(said)
    };
    let said = tokio::time::timeout(access.timeouts.connect, listen)
        .await
        .ok()
        .flatten()?;
    String::from_utf8_lossy(&said)
        .contains("max number of clients reached")
        .then_some(Refusal::MaxClients)
}

/// A connection to one server. It holds one of the [`MAX_CONNECTIONS`] places while it lives. One opened with
/// [`RedisNode::open`] is kept for the next pass when dropped (see [`super::pool`]), unless a command on it
/// failed other than by the server's refusal.
pub struct RedisNode {
    endpoint: String,
    timeouts: Timeouts,
    /// The connection; taken out only on drop.
    kept: Option<Kept>,
    /// Where it is kept when dropped; `None` for connections that are closed instead.
    key: Option<Key>,
    /// A command timed out, the connection broke or read too much: it is closed, not kept.
    spoiled: AtomicBool,
    _place: OwnedSemaphorePermit,
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        if let (Some(key), Some(kept)) = (self.key.take(), self.kept.take()) {
            if !self.spoiled.load(Ordering::SeqCst) {
                pool::put(key, kept);
            }
        }
    }
}

impl std::fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNode")
            .field("endpoint", &self.endpoint)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl RedisNode {
    /// Connects as the operator's user of `access`, or without authenticating when it has none. A server
    /// that refuses the login (a pod started before authentication was turned on, whose users the operator
    /// has not created yet, or one started after it was turned off) is tried once more without it: such a
    /// server accepts unauthenticated clients anyway, so nothing is opened that was closed.
    /// Over TLS when `access` has a trust for `host`.
    ///
    /// A connection kept from an earlier pass to the same server, as the same user with the same password and
    /// transport, is taken again when there is one (see [`super::pool`]); the fallback without login is
    /// never kept.
    pub async fn open(host: &str, port: u16, access: &Access) -> Result<Self, RedisError> {
        let key = Key::of(host, port, access);
        let place = Self::place().await;
        if let Some(kept) = pool::take(&key) {
            return Ok(RedisNode {
                endpoint: format!("{host}:{port}"),
                timeouts: access.timeouts,
                kept: Some(kept),
                key: Some(key),
                spoiled: AtomicBool::new(false),
                _place: place,
            });
        }
        Self::open_new(host, port, access, key, place).await
    }

    /// As [`RedisNode::open`], through a new connection and login: what the server presents and accepts now
    /// (a reloaded certificate, a user just set), not what it did when a kept connection was opened.
    pub async fn open_fresh(host: &str, port: u16, access: &Access) -> Result<Self, RedisError> {
        let place = Self::place().await;
        Self::open_new(host, port, access, Key::of(host, port, access), place).await
    }

    /// A new connection as [`RedisNode::open`] makes it, kept under `key` when dropped (the fallback without
    /// login is not kept).
    async fn open_new(
        host: &str,
        port: u16,
        access: &Access,
        key: Key,
        place: OwnedSemaphorePermit,
    ) -> Result<Self, RedisError> {
        let tls = access.tls.get(host);
        let Some(login) = &access.login else {
            let mut node =
                Self::connect_with(host, port, None, access.timeouts, tls, place).await?;
            node.key = Some(key);
            return Ok(node);
        };
        match Self::connect_with(host, port, Some(login), access.timeouts, tls, place).await {
            Err(RedisError::Server { code, .. }) if code == "WRONGPASS" => {
                let place = Self::place().await;
                Self::connect_with(host, port, None, access.timeouts, tls, place).await
            }
            Ok(mut node) => {
                node.key = Some(key);
                Ok(node)
            }
            other => other,
        }
    }

    /// One of the [`MAX_CONNECTIONS`] places (waited for, not counted against any time bound).
    async fn place() -> OwnedSemaphorePermit {
        CONNECTIONS
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    /// Connects to `host:port`, authenticating with `password` when given (the `default` user).
    pub async fn connect(
        host: &str,
        port: u16,
        password: Option<&str>,
        timeouts: Timeouts,
    ) -> Result<Self, RedisError> {
        let login = password.map(|password| Login {
            username: "default".into(),
            password: password.into(),
        });
        Self::connect_as(host, port, login.as_ref(), timeouts).await
    }

    /// Connects to `host:port` as `login` (unauthenticated without one).
    pub async fn connect_as(
        host: &str,
        port: u16,
        login: Option<&Login>,
        timeouts: Timeouts,
    ) -> Result<Self, RedisError> {
        let place = Self::place().await;
        Self::connect_with(host, port, login, timeouts, None, place).await
    }

    /// Connects as `login`, over TLS with `tls`, in `place` (one of the [`MAX_CONNECTIONS`], waited for before:
    /// not counted against the connect timeout, it is this process that is busy, not the server).
    ///
    /// The login is `HELLO 2 AUTH user password`, sent by this client rather than the library's `AUTH`: a
    /// server busy in a script refuses `AUTH` (and, to an unauthenticated client, answers `NOAUTH` before
    /// `BUSY`) but accepts `HELLO`, so the operator still gets in to see `BUSY` and to send `SCRIPT KILL`;
    /// and the server's own refusal (`WRONGPASS`, `ERR max number of clients reached`) reaches the caller,
    /// where the library reports every failed `AUTH` alike.
    async fn connect_with(
        host: &str,
        port: u16,
        login: Option<&Login>,
        timeouts: Timeouts,
        tls: Option<&crate::tls::connect::Trust>,
        place: OwnedSemaphorePermit,
    ) -> Result<Self, RedisError> {
        let endpoint = format!("{host}:{port}");
        let connection_error = |source: ::redis::RedisError| RedisError::Connection {
            endpoint: endpoint.clone(),
            command: "connect",
            source,
        };
        let settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        // The library's own response timeout is off: `run` bounds each command, and `WAIT` needs
        // a longer bound than the others.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(None);
        let exceeded = Arc::new(AtomicBool::new(false));
        let read = Arc::new(AtomicUsize::new(0));
        // The streams are the operator's own (the TLS handshake too, see `crate::tls::connect`), each read
        // through `Capped`; the library speaks Redis over them.
        // The operator's own host refusing a socket says nothing of the server (see `RedisError::Local`).
        let socket_error = |e: std::io::Error| {
            if is_local(&e) {
                RedisError::Local {
                    endpoint: endpoint.clone(),
                    source: e,
                }
            } else {
                connection_error(e.into())
            }
        };
        let connecting = async {
            let (connection, driver, served) = match tls {
                Some(trust) => {
                    let (stream, served) =
                        trust.handshake(host, port).await.map_err(socket_error)?;
                    let (connection, driver) = MultiplexedConnection::new_with_config(
                        &settings,
                        Capped::new(stream, &exceeded, &read),
                        config,
                    )
                    .await
                    .map_err(connection_error)?;
                    (connection, driver.boxed(), served)
                }
                None => {
                    let stream = tokio::net::TcpStream::connect((host, port))
                        .await
                        .map_err(socket_error)?;
                    stream
                        .set_nodelay(true)
                        .map_err(|e| connection_error(e.into()))?;
                    let (connection, driver) = MultiplexedConnection::new_with_config(
                        &settings,
                        Capped::new(stream, &exceeded, &read),
                        config,
                    )
                    .await
                    .map_err(connection_error)?;
                    (connection, driver.boxed(), None)
                }
            };
            Ok((connection, tokio::spawn(driver), served))
        };
        let outcome = tokio::time::timeout(timeouts.connect, connecting)
            .await
            .map_err(|_| RedisError::ConnectTimeout {
                endpoint: endpoint.clone(),
                after: timeouts.connect,
            })?;
        let (connection, driver, served_certificate) = match outcome {
            Err(_) if exceeded.load(Ordering::SeqCst) => {
                return Err(RedisError::TooLarge {
                    endpoint,
                    command: "connect",
                    limit: MAX_READ_BYTES,
                })
            }
            other => other?,
        };
        super::cost::CONNECTIONS.inc();
        let node = RedisNode {
            endpoint,
            timeouts,
            kept: Some(Kept {
                connection,
                served_certificate,
                exceeded,
                read,
                driver,
            }),
            key: None,
            spoiled: AtomicBool::new(false),
            _place: place,
        };
        if let Some(login) = login {
            let mut cmd = ::redis::cmd("HELLO");
            cmd.arg(2)
                .arg("AUTH")
                .arg(&login.username)
                .arg(&login.password);
            node.command::<Value>("HELLO", Duration::ZERO, cmd).await?;
        }
        Ok(node)
    }

    /// `host:port` of the server.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Over TLS: the certificate the server presented in this connection's handshake.
    pub fn served_certificate(&self) -> Option<&rustls::pki_types::CertificateDer<'static>> {
        self.kept().served_certificate.as_ref()
    }

    fn kept(&self) -> &Kept {
        self.kept
            .as_ref()
            .expect("the connection is taken out only on drop")
    }

    /// Sends `command` and waits at most the command timeout plus `extra` (the time the server
    /// itself is asked to wait, for `WAIT`).
    async fn run<T, F>(&self, name: &'static str, extra: Duration, send: F) -> Result<T, RedisError>
    where
        F: Future<Output = ::redis::RedisResult<T>>,
    {
        let after = self.timeouts.command + extra;
        super::cost::COMMANDS.inc();
        let outcome = tokio::time::timeout(after, send).await;
        // Anything but a reply or the server's refusal leaves the connection unfit to keep.
        if !matches!(&outcome, Ok(Ok(_))) && !matches!(&outcome, Ok(Err(e)) if e.code().is_some()) {
            self.spoiled.store(true, Ordering::SeqCst);
        }
        if outcome.as_ref().is_ok_and(Result::is_err) && self.kept().exceeded.load(Ordering::SeqCst)
        {
            return Err(RedisError::TooLarge {
                endpoint: self.endpoint.clone(),
                command: name,
                limit: MAX_READ_BYTES,
            });
        }
        match outcome {
            Err(_) => Err(RedisError::CommandTimeout {
                endpoint: self.endpoint.clone(),
                command: name,
                after,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(match source.code() {
                Some(code) => RedisError::Server {
                    endpoint: self.endpoint.clone(),
                    command: name,
                    code: bounded_text(code, 32),
                    message: bounded_text(&source.to_string(), MAX_ERROR_TEXT),
                },
                None if source.is_timeout() => RedisError::CommandTimeout {
                    endpoint: self.endpoint.clone(),
                    command: name,
                    after,
                },
                None => RedisError::Connection {
                    endpoint: self.endpoint.clone(),
                    command: name,
                    source,
                },
            }),
        }
    }

    async fn command<T: ::redis::FromRedisValue>(
        &self,
        name: &'static str,
        extra: Duration,
        cmd: ::redis::Cmd,
    ) -> Result<T, RedisError> {
        let mut connection = self.kept().connection.clone();
        self.run(name, extra, async move {
            cmd.query_async(&mut connection).await
        })
        .await
    }

    fn reply_error(&self, command: &'static str, source: ParseError) -> RedisError {
        RedisError::Reply {
            endpoint: self.endpoint.clone(),
            command,
            source,
        }
    }

    /// `INFO section`, raw.
    async fn info_section(&self, section: &str) -> Result<String, RedisError> {
        let mut cmd = ::redis::cmd("INFO");
        cmd.arg(section);
        self.command("INFO", Duration::ZERO, cmd).await
    }

    /// The `INFO` sections the topology decisions need (server, replication, persistence, keyspace), asked one
    /// at a time (a single section is what every Redis version accepts, and none of the others is read),
    /// parsed. The keyspace section last: it is the one that can outgrow the read cap ([`MAX_READ_BYTES`]), with
    /// a key in each of tens of thousands of databases. Then the server counts as holding data, `keys` being
    /// the lower bound 1, and the rest of the observation stands.
    pub async fn observe(&self) -> Result<ServerState, RedisError> {
        let mut text = String::new();
        for section in ["server", "replication", "persistence"] {
            text.push_str(&self.info_section(section).await?);
        }
        let keyspace = match self.info_section("keyspace").await {
            Ok(keyspace) => Some(keyspace),
            Err(RedisError::TooLarge { .. }) => None,
            Err(error) => return Err(error),
        };
        text.push_str(keyspace.as_deref().unwrap_or_default());
        let mut state = info::server_state(&text).map_err(|e| self.reply_error("INFO", e))?;
        if keyspace.is_none() {
            state.keys = state.keys.max(1);
        }
        Ok(state)
    }

    /// `INFO server`, raw (the server's software and version).
    pub async fn info_server(&self) -> Result<String, RedisError> {
        self.info_section("server").await
    }

    /// The role and the replication offset, from `INFO replication` alone (see [`info::replication_view`]).
    pub async fn replication(&self) -> Result<(ServerRole, u64), RedisError> {
        let text = self.info_section("replication").await?;
        info::replication_view(&text).map_err(|e| self.reply_error("INFO", e))
    }

    /// `CLIENT PAUSE ms WRITE`: hold back every write (and expiry and eviction) for `pause`, or until
    /// [`RedisNode::client_unpause`]; reads and replication go on.
    pub async fn client_pause_write(&self, pause: Duration) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("CLIENT");
        cmd.arg("PAUSE")
            .arg(u64::try_from(pause.as_millis()).unwrap_or(u64::MAX))
            .arg("WRITE");
        self.command::<()>("CLIENT PAUSE", Duration::ZERO, cmd)
            .await
    }

    /// `CLIENT UNPAUSE`: the clients held back by [`RedisNode::client_pause_write`] go on.
    pub async fn client_unpause(&self) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("CLIENT");
        cmd.arg("UNPAUSE");
        self.command::<()>("CLIENT UNPAUSE", Duration::ZERO, cmd)
            .await
    }

    /// `ROLE`, parsed.
    pub async fn role(&self) -> Result<RoleReply, RedisError> {
        let value: Value = self
            .command("ROLE", Duration::ZERO, ::redis::cmd("ROLE"))
            .await?;
        info::role_reply(&value).map_err(|e| self.reply_error("ROLE", e))
    }

    /// `REPLICAOF host port`: become (or stay) a read-only replica of `host:port`. Pointing a
    /// server at itself parks it: read-only, data kept, replicating from nobody.
    pub async fn replicaof(&self, host: &str, port: u16) -> Result<(), RedisError> {
        self.tls_replication(self.endpoint != format!("{host}:{port}"))
            .await?;
        let mut cmd = ::redis::cmd("REPLICAOF");
        cmd.arg(host).arg(port);
        self.command::<()>("REPLICAOF", Duration::ZERO, cmd).await
    }

    /// `REPLICAOF NO ONE`: promote to master, starting a new replication id.
    pub async fn replicaof_no_one(&self) -> Result<(), RedisError> {
        // A primary demoted by a switchover replicates from its successor over TLS.
        self.tls_replication(true).await?;
        let mut cmd = ::redis::cmd("REPLICAOF");
        cmd.arg("NO").arg("ONE");
        self.command::<()>("REPLICAOF", Duration::ZERO, cmd).await
    }

    /// Over TLS, `CONFIG SET tls-replication`: yes towards another server; no towards itself (parked), since a
    /// TLS 1.3 server replicating from itself blocks in its own handshake (a synchronous read that only its own
    /// event loop could answer) for `repl-syncio-timeout` again and again, answering nobody meanwhile. Towards
    /// itself nothing is replicated anyway.
    async fn tls_replication(&self, yes: bool) -> Result<(), RedisError> {
        if self.served_certificate().is_none() {
            return Ok(());
        }
        self.config_set("tls-replication", if yes { "yes" } else { "no" })
            .await
    }

    /// `CONFIG GET name`: the value, or `None` when the server knows no such parameter.
    pub async fn config_get(&self, name: &str) -> Result<Option<String>, RedisError> {
        let mut cmd = ::redis::cmd("CONFIG");
        cmd.arg("GET").arg(name);
        let pairs: Vec<(String, String)> = self.command("CONFIG GET", Duration::ZERO, cmd).await?;
        Ok(pairs
            .into_iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value))
    }

    /// `CONFIG SET name value`.
    pub async fn config_set(&self, name: &str, value: &str) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("CONFIG");
        cmd.arg("SET").arg(name).arg(value);
        self.command::<()>("CONFIG SET", Duration::ZERO, cmd).await
    }

    /// Ends the script or function the server is busy with: `SCRIPT KILL`, or `FUNCTION KILL` when the
    /// server says a function runs. `Ok(true)`: killed; `Ok(false)`: none was running any more. A script that
    /// already wrote cannot be killed: the server's `UNKILLABLE` refusal is returned as the error.
    pub async fn kill_script(&self) -> Result<bool, RedisError> {
        let mut cmd = ::redis::cmd("SCRIPT");
        cmd.arg("KILL");
        let outcome = match self.command::<()>("SCRIPT KILL", Duration::ZERO, cmd).await {
            // `BUSY`: what runs is a function (`You can only call FUNCTION KILL ...`).
            Err(RedisError::Server { code, .. }) if code == "BUSY" => {
                let mut cmd = ::redis::cmd("FUNCTION");
                cmd.arg("KILL");
                self.command::<()>("FUNCTION KILL", Duration::ZERO, cmd)
                    .await
            }
            other => other,
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(RedisError::Server { code, .. }) if code == "NOTBUSY" => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `SHUTDOWN NOSAVE NOW`: stops the server without saving and without waiting for replicas (the only
    /// command besides the kills a server busy in a script accepts). The server closes the connection instead
    /// of answering; that counts as done, and the next observation shows whether it is.
    pub async fn shutdown_nosave(&self) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("SHUTDOWN");
        cmd.arg("NOSAVE").arg("NOW");
        match self.command::<()>("SHUTDOWN", Duration::ZERO, cmd).await {
            Ok(()) | Err(RedisError::Connection { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `CLIENT KILL TYPE kind` (`normal`, `pubsub`): disconnects every client of that type but this
    /// connection (`SKIPME yes` is the default). Replication links are the types `master` and `replica`. Returns
    /// how many were disconnected.
    pub async fn client_kill_type(&self, kind: &str) -> Result<u64, RedisError> {
        let mut cmd = ::redis::cmd("CLIENT");
        cmd.arg("KILL").arg("TYPE").arg(kind);
        self.command("CLIENT KILL", Duration::ZERO, cmd).await
    }

    /// `ACL GETUSER name`: the user's flags (`on`, `nopass`, ...) and password hashes, or `None` when
    /// the server has no such user.
    pub async fn acl_user(&self, name: &str) -> Result<Option<AclUser>, RedisError> {
        let mut cmd = ::redis::cmd("ACL");
        cmd.arg("GETUSER").arg(name);
        let value: Value = self.command("ACL GETUSER", Duration::ZERO, cmd).await?;
        info::acl_user(&value).map_err(|e| self.reply_error("ACL GETUSER", e))
    }

    /// `ACL SETUSER name rules...` (the rules may hold password hashes, never passwords).
    pub async fn acl_setuser(&self, name: &str, rules: &[String]) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("ACL");
        cmd.arg("SETUSER").arg(name).arg(rules);
        self.command::<()>("ACL SETUSER", Duration::ZERO, cmd).await
    }
}
