//! The exporter sidecar as the operator builds it, run for real: Debian's `prometheus-redis-exporter` (1.45)
//! with the container's environment and mounts, beside a `redis-server` holding the instance's ACL file. The
//! container's paths are mapped into a temporary directory and `$(POD_IP)` is a loopback address of the test's
//! own; nothing else is changed.
//!
//! The exporter serves `/scrape?target=ADDRESS` to whoever reaches its port. It must export its own server's
//! metrics, and never hand its credentials to another address.

#[path = "shared/server_binary.rs"]
mod server_binary;
use server_binary::server_binary;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use redis_operator::api::{AuthSpec, RedisInstance, RedisInstanceSpec};
use redis_operator::auth;
use redis_operator::desired::children::build;
use redis_operator::desired::exporter::EXPORTER_CONTAINER;
use redis_operator::names::users_secret_name;

const REDIS_PORT: u16 = 6379;
const METRICS_PORT: u16 = 9121;

/// A loopback address no other test process uses: the exporter listens on `$(POD_IP):9121` and Redis on
/// `$(POD_IP):6379`, as in a pod.
fn pod_ip() -> String {
    let pid = std::process::id();
    format!("127.0.{}.{}", 200 + (pid / 250) % 50, 1 + pid % 250)
}

/// Child processes and a directory, removed on drop.
struct Scene {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Scene {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn instance(spec: RedisInstanceSpec) -> RedisInstance {
    let mut ri = RedisInstance::new("cache", spec);
    ri.metadata.namespace = Some("shop".into());
    ri.metadata.uid = Some("5d1f2c3e-0000-4000-8000-000000000001".into());
    ri
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Where each of `container`'s mount paths lives in `dir`: one directory per volume, holding the Secret keys the
/// volume selects (from `secrets`, by Secret name; container paths in them mapped as in the environment) or
/// nothing (an emptyDir).
fn mount(
    pod: &PodSpec,
    container: &Container,
    dir: &Path,
    ip: &str,
    secrets: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
) -> Vec<(String, PathBuf)> {
    let volume = |name: &str| {
        pod.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .expect("a mounted volume exists")
    };
    let mapped: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.clone(), dir.join(&m.name)))
        .collect();
    for m in container.volume_mounts.iter().flatten() {
        let volume = volume(&m.name);
        let at = dir.join(&volume.name);
        std::fs::create_dir_all(&at).unwrap();
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.as_deref().unwrap_or_default();
            let data = secrets.get(name).unwrap_or_else(|| panic!("Secret {name}"));
            let items: Vec<(String, String)> = match &secret.items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in items {
                let content = String::from_utf8(data[&key].clone()).unwrap();
                std::fs::write(at.join(path), localise(&content, ip, &mapped)).unwrap();
            }
        }
    }
    mapped
}

/// A container value with `$(POD_IP)` expanded and mount paths mapped.
fn localise(value: &str, ip: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = value.replace("$(POD_IP)", ip);
    for (path, at) in mounts {
        out = out.replace(path.as_str(), &at.display().to_string());
    }
    out
}

/// The container's environment as the kubelet would give it: values, `status.podIP`, Secret keys.
fn environment(
    env: &[EnvVar],
    ip: &str,
    mounts: &[(String, PathBuf)],
    secrets: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
) -> Vec<(String, String)> {
    env.iter()
        .map(|var| {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => localise(value, ip, mounts),
                (None, Some(from)) => {
                    if let Some(field) = &from.field_ref {
                        assert_eq!(field.field_path, "status.podIP");
                        ip.to_string()
                    } else {
                        let key = from.secret_key_ref.as_ref().expect("a Secret key");
                        String::from_utf8(secrets[&key.name][&key.key].clone()).unwrap()
                    }
                }
                (None, None) => String::new(),
            };
            (var.name.clone(), value)
        })
        .collect()
}

fn wait_listening(address: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` on the exporter, the body.
fn http_get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("the exporter answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// Starts Redis with the instance's ACL file and `auth.conf` plus the built Redis container's own socket
/// arguments, and the exporter container; returns the scene, the exporter's address and its password.
fn start(ri: &RedisInstance) -> (Scene, String, String) {
    let ip = pod_ip();
    let dir = std::env::temp_dir().join(format!("exporter-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut scene = Scene {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let mut n = 0;
    let resolved = auth::resolve("cache", &ri.spec.auth, None, None, &mut || {
        n += 1;
        format!("generated-{n}")
    })
    .unwrap();
    let acl: BTreeMap<String, Vec<u8>> = auth::users_secret_data(&ri.spec.auth, &resolved)
        .expect("authentication is on")
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let secrets = BTreeMap::from([(users_secret_name("cache"), acl.clone())]);
    let pod = build(ri).statefulset.spec.unwrap().template.spec.unwrap();

    let redis = &pod.containers[0];
    let redis_mounts = mount(&pod, redis, &dir.join("redis"), &ip, &secrets);
    // The files of NAME-acl (ACL file, auth.conf), and whatever the container's own arguments add beyond
    // the configuration file and the addresses (the socket the exporter uses).
    let acl_file = dir.join("users.acl");
    std::fs::write(&acl_file, &acl[auth::ACL_FILE]).unwrap();
    let args = redis.args.clone().unwrap_or_default();
    let mut extra = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word.starts_with("--unixsocket") {
            extra.push(word.clone());
            extra.push(localise(words.next().unwrap(), &ip, &redis_mounts));
        }
    }
    let replication = &resolved.internal[auth::REPLICATION_USER];
    scene.children.push(
        Command::new(server_binary())
            .args(["--bind", &ip, "--port", &REDIS_PORT.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--aclfile")
            .arg(&acl_file)
            .args([
                "--masteruser",
                auth::REPLICATION_USER,
                "--masterauth",
                replication,
            ])
            .args(&extra)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_binary())),
    );
    wait_listening(&format!("{ip}:{REDIS_PORT}"), "redis-server");

    let exporter = container(&pod, EXPORTER_CONTAINER);
    let exporter_mounts = mount(&pod, exporter, &dir.join("exporter"), &ip, &secrets);
    // The pod's emptyDirs are shared: the exporter sees the directory Redis created its socket in.
    for (path, at) in &exporter_mounts {
        if let Some((_, shared)) = redis_mounts.iter().find(|(p, _)| p == path) {
            std::fs::remove_dir_all(at).unwrap();
            std::os::unix::fs::symlink(shared, at).unwrap();
        }
    }
    let env = environment(
        exporter.env.as_deref().unwrap_or_default(),
        &ip,
        &exporter_mounts,
        &secrets,
    );
    let mut command = Command::new("prometheus-redis-exporter");
    command.env_clear().envs(env).args(
        exporter
            .args
            .iter()
            .flatten()
            .map(|a| localise(a, &ip, &exporter_mounts)),
    );
    scene.children.push(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-redis-exporter must be installed (apt-get install prometheus-redis-exporter)"),
    );
    let address = format!("{ip}:{METRICS_PORT}");
    wait_listening(&address, "the exporter");
    let password = String::from_utf8(acl["exporter-password"].clone()).unwrap();
    (scene, address, password)
}

/// Accepts one connection on a loopback port and returns everything the peer sent before it closed (or went
/// quiet for two seconds).
fn listener() -> (u16, std::thread::JoinHandle<Option<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return None,
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        Some(received)
    });
    (port, handle)
}

#[test]
fn the_exporter_exports_its_own_server_and_sends_no_credentials_to_a_target_a_caller_names() {
    let mut spec = RedisInstanceSpec {
        replicas: 1,
        auth: AuthSpec::default(),
        ..Default::default()
    };
    spec.monitoring.exporter.enabled = true;
    let ri = instance(spec);
    let (_scene, address, password) = start(&ri);

    // Its own server: up, and every metric the alert rules need of a primary (tests/monitoring_rules.rs). A scrape
    // of a server that has just started can lack a field (seen with valkey-server 9.1 at uptime 0: no
    // `redis_memory_used_bytes` in one scrape, there in the next), so the exporter is scraped until one has them all.
    let needed = [
        "redis_instance_info",
        "redis_memory_max_bytes",
        "redis_memory_used_bytes",
        "redis_evicted_keys_total",
        "redis_rejected_connections_total",
        "redis_connected_clients",
    ];
    let exported = |body: &str, name: &str| {
        body.lines()
            .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let body = http_get(&address, "/metrics");
        let up = body.lines().any(|l| l == "redis_up 1");
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|n| !exported(&body, n))
            .collect();
        if up && missing.is_empty() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the exporter never reached its server or never exported {missing:?}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // What its user may not read (CONFIG GET, SLOWLOG GET) is not exported (tests/data/redis-exporter-metrics.txt).
    for name in [
        "redis_config_maxmemory",
        "redis_config_maxclients",
        "redis_config_io_threads",
        "redis_slowlog_last_id",
        "redis_last_slow_execution_duration_seconds",
    ] {
        assert!(
            !metrics.lines().any(|l| l.starts_with(name)),
            "{name} is exported: its user reads what it should not"
        );
    }

    // Another address, named by whoever reaches the exporter's port: it gets a connection, and no password.
    let (port, received) = listener();
    let _ = http_get(
        &address,
        &format!("/scrape?target=redis://127.0.0.1:{port}"),
    );
    let received = received
        .join()
        .unwrap()
        .expect("the exporter connected to the named target");
    let text = String::from_utf8_lossy(&received);
    assert!(
        !text.contains(&password) && !text.to_ascii_uppercase().contains("AUTH"),
        "the exporter sent its credentials to a target a caller named: {text:?}"
    );
}
