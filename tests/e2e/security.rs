//! Secure by default: a generated password on every instance, least-privilege users, rotation without
//! restarts, the explicit opt-out, and bad password Secrets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::ByteString;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use redis_fsm::Phase;
use redis_operator::api::{AuthSpec, RedisInstanceSpec, SecretKeyRef};

use crate::harness::*;
use crate::replication::{
    finish_and_check, three_converged_with_a_writer, wait_converged, wait_writes, Writer,
};

/// The default spec: authentication on with the default least-privilege rules.
fn secure(replicas: i32) -> RedisInstanceSpec {
    RedisInstanceSpec {
        replicas,
        ..Default::default()
    }
}

fn secrets(env: &TestEnv) -> Api<Secret> {
    Api::namespaced(env.client.clone(), &env.ns)
}

pub(crate) async fn put_secret(env: &TestEnv, name: &str, data: &[(&str, &str)]) -> Secret {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    match secrets(env).get_opt(name).await.unwrap() {
        None => secrets(env)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap(),
        Some(mut live) => {
            live.data = secret.data;
            secrets(env)
                .replace(name, &PostParams::default(), &live)
                .await
                .unwrap()
        }
    }
}

async fn ips(env: &TestEnv) -> Vec<String> {
    env.pods_of("cache").await.iter().map(pod_ip).collect()
}

/// `INFO` field `name` of the server at `ip`, read as `user`.
async fn info_field(ip: &str, login: (&str, &str), section: &str, name: &str) -> String {
    let reply = redis_command_as(ip, Some(login), &["INFO", section]).await;
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_instance_requires_the_generated_password_least_privilege_and_never_shows_it() {
    let env = TestEnv::new("auth").await;
    env.create("cache", secure(2)).await;
    env.wait_running("cache").await;
    wait_converged(&env, "cache", 2).await;

    // The generated Secret, owned by the instance.
    let generated = secrets(&env).get("cache-auth").await.unwrap();
    let instance = env.instances().get("cache").await.unwrap();
    assert!(generated
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == instance.metadata.uid.as_ref() && o.controller == Some(true)));
    let password = secret_value(&env.client, &env.ns, "cache-auth", "password")
        .await
        .unwrap();
    assert!(password.len() >= 32, "a long generated password");

    for ip in ips(&env).await {
        let refused = redis_command_as(&ip, None, &["PING"]).await;
        assert!(refused.starts_with("-NOAUTH"), "{refused:?}");
        let wrong = redis_command_as(&ip, Some(("default", "guess")), &["PING"]).await;
        assert!(wrong.starts_with("-WRONGPASS"), "{wrong:?}");
        let app = ("default", password.as_str());
        assert_eq!(
            redis_command_as(&ip, Some(app), &["PING"]).await,
            "+PONG\r\n"
        );
    }
    // Replication authenticates too: the replica's link is up.
    let status = env.instances().get("cache").await.unwrap().status.unwrap();
    let primary = status.current_primary.clone().unwrap();
    let pods = env.pods_of("cache").await;
    let replica = pods.iter().find(|p| p.name_any() != primary).unwrap();
    let app = ("default", password.as_str());
    assert_eq!(
        info_field(&pod_ip(replica), app, "replication", "master_link_status").await,
        "up"
    );
    let auth = status.auth.clone().unwrap();
    assert!(auth.enabled);
    assert_eq!(auth.secret.as_deref(), Some("cache-auth"));

    // The application user: data commands yes, administrative ones no.
    let primary_ip = pod_ip(pods.iter().find(|p| p.name_any() == primary).unwrap());
    let run = |args: &'static [&'static str]| {
        let ip = primary_ip.clone();
        let password = password.clone();
        async move { redis_command_as(&ip, Some(("default", &password)), args).await }
    };
    assert_eq!(run(&["SET", "k", "v"]).await, "+OK\r\n");
    assert_eq!(run(&["GET", "k"]).await, "$1\r\nv\r\n");
    assert_eq!(run(&["EVAL", "return 1", "0"]).await, ":1\r\n");
    for admin in [
        &["CONFIG", "SET", "maxmemory", "1"][..],
        &["CONFIG", "GET", "masterauth"],
        &["DEBUG", "SLEEP", "0"],
        &["MODULE", "LOAD", "/tmp/x.so"],
        &["REPLICAOF", "127.0.0.1", "1"],
        &["SHUTDOWN", "NOSAVE"],
        &["FAILOVER"],
        &["ACL", "LIST"],
        &["CLIENT", "KILL", "TYPE", "normal"],
    ] {
        let reply = run(admin).await;
        // DEBUG and MODULE are also off for everyone (`enable-*-command no`), which Redis checks first.
        assert!(
            reply.starts_with("-NOPERM") || reply.contains("command not allowed"),
            "{admin:?}: {reply:?}"
        );
    }
    // The probe's user can read INFO and nothing else.
    let users = secrets(&env).get("cache-acl").await.unwrap();
    let probe = String::from_utf8(users.data.unwrap()["probe-password"].0.clone()).unwrap();
    let as_probe = redis_command_as(&primary_ip, Some(("probe", &probe)), &["GET", "k"]).await;
    assert!(as_probe.starts_with("-NOPERM"), "{as_probe:?}");

    // The password appears nowhere but in its Secret: ConfigMap, StatefulSet, pods, status, Events, NAME-acl
    // (hashes only), the operator's log.
    let mut places: BTreeMap<String, String> = BTreeMap::new();
    let cm: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    places.insert(
        "ConfigMap".into(),
        serde_json::to_string(&cm.get("cache-config").await.unwrap()).unwrap(),
    );
    places.insert(
        "StatefulSet".into(),
        serde_json::to_string(&env.statefulsets().get("cache").await.unwrap()).unwrap(),
    );
    places.insert(
        "pods".into(),
        serde_json::to_string(&env.pods_of("cache").await).unwrap(),
    );
    places.insert(
        "instance".into(),
        serde_json::to_string(&env.instances().get("cache").await.unwrap()).unwrap(),
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    places.insert(
        "Events".into(),
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    let users = secrets(&env).get("cache-acl").await.unwrap();
    for (key, value) in users.data.unwrap() {
        places.insert(
            format!("cache-acl/{key}"),
            String::from_utf8_lossy(&value.0).into_owned(),
        );
    }
    places.insert(
        "operator log".into(),
        std::fs::read_to_string(&env.operator.log).unwrap(),
    );
    for (place, text) in &places {
        assert!(!text.contains(&password), "the password is in the {place}");
    }
    assert!(places["cache-acl/users.acl"].contains(&sha256_hex(&password)));
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Pod uid and `run_id` of every server: equal before and after means nothing restarted.
async fn incarnations(env: &TestEnv, login: (&str, &str)) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for pod in env.pods_of("cache").await {
        let run_id = info_field(&pod_ip(&pod), login, "server", "run_id").await;
        out.insert(pod.name_any(), (pod.uid().unwrap_or_default(), run_id));
    }
    out
}

/// The primary's count of full and partial resyncs: unchanged means no replication link dropped.
async fn resyncs(ip: &str, login: (&str, &str)) -> (String, String) {
    (
        info_field(ip, login, "stats", "sync_full").await,
        info_field(ip, login, "stats", "sync_partial_ok").await,
    )
}

pub(crate) async fn wait_applied(env: &TestEnv, version: &str) {
    let version = version.to_string();
    env.wait_status("cache", "the new passwords in force", move |s| {
        s.auth
            .as_ref()
            .and_then(|a| a.applied_secret_version.as_deref())
            == Some(version.as_str())
    })
    .await;
}

async fn every_pod_answers(env: &TestEnv, password: &str, expected_prefix: &str) {
    for ip in ips(env).await {
        let reply = redis_command_as(&ip, Some(("default", password)), &["PING"]).await;
        assert!(
            reply.starts_with(expected_prefix),
            "{ip} answered {reply:?} to a login expecting {expected_prefix:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_keeps_the_previous_password_until_withdrawn_without_restarts_or_failed_writes() {
    let env = TestEnv::new("rotate").await;
    put_secret(&env, "app-creds", &[("password", "old-password-1")]).await;
    let mut spec = secure(2);
    spec.auth = AuthSpec {
        secret_ref: Some(SecretKeyRef {
            name: "app-creds".into(),
            key: "password".into(),
        }),
        // The test reads INFO stats and server as the application user (INFO is not administrative).
        ..Default::default()
    };
    env.create("cache", spec).await;
    env.wait_running("cache").await;
    let status = wait_converged(&env, "cache", 2).await;
    let primary = status.current_primary.unwrap();
    let primary_ip = pod_ip(
        &env.pods_of("cache")
            .await
            .into_iter()
            .find(|p| p.name_any() == primary)
            .unwrap(),
    );
    let old = ("default", "old-password-1");
    let before = incarnations(&env, old).await;
    let links = resyncs(&primary_ip, old).await;
    // A client writing with the old password the whole time (a new connection, so a new AUTH, per write).
    let writer = Writer::start_logging_in_per_write(env.pods());
    wait_writes(&writer, 20).await;

    // Rotate: the new password, the old one kept as previousPassword.
    let rotated = put_secret(
        &env,
        "app-creds",
        &[
            ("password", "new-password-2"),
            ("previousPassword", "old-password-1"),
        ],
    )
    .await;
    wait_applied(&env, &rotated.resource_version().unwrap()).await;
    every_pod_answers(&env, "new-password-2", "+PONG").await;
    every_pod_answers(&env, "old-password-1", "+PONG").await;
    let note = crate::wait_event(&env, "PasswordInForce").await;
    assert!(
        note.contains("previousPassword is still accepted"),
        "{note}"
    );
    wait_writes(&writer, 20).await;

    // Nothing failed while both passwords were accepted.
    let failed = writer.failed();
    assert!(
        failed.is_empty(),
        "writes failed during the rotation: {failed:?}"
    );

    // Withdraw the old one. The writer still uses it: its next write is refused, and it continues with the new
    // password (it reads the Secret again after a failure), as a client that missed the rotation would.
    let withdrawn = put_secret(&env, "app-creds", &[("password", "new-password-2")]).await;
    wait_applied(&env, &withdrawn.resource_version().unwrap()).await;
    every_pod_answers(&env, "old-password-1", "-WRONGPASS").await;
    every_pod_answers(&env, "new-password-2", "+PONG").await;

    let new = ("default", "new-password-2");
    assert_eq!(
        incarnations(&env, new).await,
        before,
        "no pod or server restarted"
    );
    assert_eq!(
        resyncs(&primary_ip, new).await,
        links,
        "no replication link dropped"
    );
    wait_writes(&writer, 20).await;
    finish_and_check(&env, writer, "password rotation").await;
    let auth = env
        .instances()
        .get("cache")
        .await
        .unwrap()
        .status
        .unwrap()
        .auth
        .unwrap();
    assert!(
        !auth.message.contains("previousPassword"),
        "{}",
        auth.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_off_accepts_unauthenticated_clients_and_the_status_says_so() {
    let env = TestEnv::new("auth-off").await;
    let mut spec = secure(1);
    spec.auth.enabled = false;
    env.create("cache", spec).await;
    let running = env.wait_running("cache").await;
    let auth = running.status.unwrap().auth.unwrap();
    assert!(!auth.enabled);
    assert!(
        auth.message.contains("accepts unauthenticated clients"),
        "{}",
        auth.message
    );
    for ip in ips(&env).await {
        assert_eq!(redis_command_as(&ip, None, &["PING"]).await, "+PONG\r\n");
    }
    assert!(secrets(&env).get_opt("cache-auth").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_password_secret_fails_the_instance_touches_nothing_and_recovers_once_fixed() {
    let env = TestEnv::new("badsecret").await;
    let mut spec = secure(1);
    spec.auth.secret_ref = Some(SecretKeyRef {
        name: "missing".into(),
        key: "pw".into(),
    });
    env.create("cache", spec).await;
    let failed = |what: &'static str| {
        move |s: &redis_operator::api::RedisInstanceStatus| {
            s.status == Phase::Failed
                && s.reason == "AuthSecretInvalid"
                && s.last_condition_message.contains(what)
        }
    };
    env.wait_status(
        "cache",
        "failed on the missing Secret",
        failed("Secret missing"),
    )
    .await;
    // Nothing was created.
    assert!(env.statefulsets().get_opt("cache").await.unwrap().is_none());
    assert!(secrets(&env).get_opt("cache-acl").await.unwrap().is_none());

    put_secret(&env, "missing", &[("other", "x")]).await;
    env.wait_status(
        "cache",
        "failed on the missing key",
        failed("has no key pw"),
    )
    .await;
    put_secret(&env, "missing", &[("pw", "")]).await;
    env.wait_status("cache", "failed on the empty password", failed("is empty"))
        .await;
    assert!(env.statefulsets().get_opt("cache").await.unwrap().is_none());

    put_secret(&env, "missing", &[("pw", "now-a-password")]).await;
    env.wait_running("cache").await;
    every_pod_answers(&env, "now-a-password", "+PONG").await;

    // A running instance pointed at a Secret that does not exist fails without touching its pods.
    let uids: Vec<String> = env
        .pods_of("cache")
        .await
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    let generation = env
        .statefulsets()
        .get("cache")
        .await
        .unwrap()
        .metadata
        .generation;
    env.patch_spec(
        "cache",
        serde_json::json!({"auth": {"secretRef": {"name": "gone", "key": "pw"}}}),
    )
    .await;
    env.wait_status(
        "cache",
        "failed on the missing Secret",
        failed("Secret gone"),
    )
    .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let now: Vec<String> = env
            .pods_of("cache")
            .await
            .iter()
            .filter_map(|p| p.uid())
            .collect();
        assert_eq!(now, uids, "the pods are untouched");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        env.statefulsets()
            .get("cache")
            .await
            .unwrap()
            .metadata
            .generation,
        generation
    );
    every_pod_answers(&env, "now-a-password", "+PONG").await;
}

/// Rolled out: the spec of `generation` is Running with one primary and in-sync replicas.
async fn wait_rolled(env: &TestEnv, generation: i64, replicas: usize) {
    env.wait_status("cache", "rolled out", move |s| {
        s.observed_generation == Some(generation)
            && s.status == Phase::Running
            && crate::replication::converged(s, replicas)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn turning_auth_on_and_off_rolls_the_pods_and_keeps_replication_and_every_confirmed_write() {
    let env = TestEnv::new("toggle").await;
    let mut spec = secure(3);
    spec.auth.enabled = false;
    let (_, writer) = three_converged_with_a_writer(&env, spec).await;

    // On: the users and masterauth reach the running servers first, so the new replicas authenticate to the
    // old primary; then the pods roll, primary last.
    let generation = env
        .patch_spec("cache", serde_json::json!({"auth": {"enabled": true}}))
        .await;
    wait_rolled(&env, generation, 3).await;
    let password = secret_value(&env.client, &env.ns, "cache-auth", "password")
        .await
        .expect("a password was generated");
    for ip in ips(&env).await {
        let refused = redis_command_as(&ip, None, &["PING"]).await;
        assert!(refused.starts_with("-NOAUTH"), "{ip}: {refused:?}");
    }
    every_pod_answers(&env, &password, "+PONG").await;
    wait_converged(&env, "cache", 3).await;
    wait_writes(&writer, 20).await;

    // Off again: open on every server at once, then the pods roll.
    let generation = env
        .patch_spec("cache", serde_json::json!({"auth": {"enabled": false}}))
        .await;
    wait_rolled(&env, generation, 3).await;
    for ip in ips(&env).await {
        assert_eq!(redis_command_as(&ip, None, &["PING"]).await, "+PONG\r\n");
    }
    wait_converged(&env, "cache", 3).await;
    wait_writes(&writer, 20).await;
    let status = env.instances().get("cache").await.unwrap().status.unwrap();
    assert!(!status.auth.unwrap().enabled);
    finish_and_check(&env, writer, "authentication turned on and off").await;
}

/// `GET path` on `ip:9121`, the whole response.
async fn exporter_get(ip: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((ip, 9121))
        .await
        .unwrap_or_else(|e| panic!("the exporter on {ip} answers: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        stream.read_to_string(&mut response),
    )
    .await;
    response
}

/// Accepts one connection on a free port of `address` and returns what the peer sent before it closed or went
/// quiet for two seconds (`None`: nobody connected within 30 s).
fn one_connection(address: &str) -> (u16, tokio::task::JoinHandle<Option<Vec<u8>>>) {
    use tokio::io::AsyncReadExt;
    let listener = std::net::TcpListener::bind((address, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .ok()?
            .ok()?;
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        Some(received)
    });
    (port, task)
}

/// The exporter is what Prometheus (and whoever reaches its port) talks to: its Redis user reads no other user's
/// secret (`CONFIG GET masterauth` would give the replication password, and with it every key through `PSYNC`),
/// and its `/scrape?target=` endpoint sends no credentials to an address the caller names. It still exports
/// its own server's metrics.
#[tokio::test(flavor = "multi_thread")]
async fn the_exporter_reads_no_secret_and_sends_no_credentials_to_a_target_a_caller_names() {
    let env = TestEnv::new("exporter-sec").await;
    let mut spec = secure(2);
    spec.monitoring.exporter.enabled = true;
    env.create("cache", spec).await;
    env.wait_running("cache").await;
    let status = wait_converged(&env, "cache", 2).await;
    let exporter = secret_value(&env.client, &env.ns, "cache-acl", "exporter-password")
        .await
        .expect("the exporter's password");
    let replication = secret_value(&env.client, &env.ns, "cache-acl", "replication-password")
        .await
        .expect("the replication password");
    let primary = status.current_primary.unwrap();
    for pod in env.pods_of("cache").await {
        let ip = pod_ip(&pod);
        let replicas = if pod.name_any() == primary { 1.0 } else { 0.0 };
        crate::knobs::wait_scrape(&ip, replicas).await;
        for args in [
            &["CONFIG", "GET", "masterauth"][..],
            &["CONFIG", "GET", "*"],
            &["ACL", "LIST"],
        ] {
            let reply = redis_command_as(&ip, Some(("exporter", &exporter)), args).await;
            assert!(reply.starts_with("-NOPERM"), "{ip} {args:?}: {reply:?}");
            assert!(!reply.contains(&replication));
        }

        // A listener the caller controls, where the pod reaches it: the node's address (the node agent's pods
        // share the host's network and its hostIP is 127.0.0.1; a real node's pods reach it on its bridge).
        let node = pod
            .status
            .as_ref()
            .and_then(|s| s.host_ip.clone())
            .expect("the pod's node address");
        let (port, received) = one_connection(&node);
        let response = exporter_get(&ip, &format!("/scrape?target=redis://{node}:{port}")).await;
        let received = received
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the exporter on {ip} never connected: {response}"));
        let text = String::from_utf8_lossy(&received);
        assert!(
            !text.contains(&exporter) && !text.to_ascii_uppercase().contains("AUTH"),
            "the exporter on {ip} sent credentials to a named target: {text:?}"
        );
    }
}

/// Rules widened on a live server through an administrative connection are put back by the operator without a
/// restart: `ACL SETUSER exporter +@all` and `ACL SETUSER default +@admin` on every pod.
#[tokio::test(flavor = "multi_thread")]
async fn widened_acl_rules_are_put_back_without_restarts() {
    let env = TestEnv::new("acl-drift").await;
    env.create("cache", secure(2)).await;
    env.wait_running("cache").await;
    wait_converged(&env, "cache", 2).await;
    let operator = secret_value(&env.client, &env.ns, "cache-acl", "operator-password")
        .await
        .expect("the operator's password");
    let password = secret_value(&env.client, &env.ns, "cache-auth", "password")
        .await
        .unwrap();
    let app = ("default", password.as_str());
    let admin = ("redis-operator", operator.as_str());
    let before = incarnations(&env, app).await;
    for ip in ips(&env).await {
        let refused = redis_command_as(&ip, Some(app), &["CONFIG", "GET", "maxmemory"]).await;
        assert!(refused.starts_with("-NOPERM"), "{refused:?}");
        for widen in [
            &["ACL", "SETUSER", "exporter", "+@all", "~*"][..],
            &["ACL", "SETUSER", "default", "+@admin"],
        ] {
            assert_eq!(redis_command_as(&ip, Some(admin), widen).await, "+OK\r\n");
        }
        let allowed = redis_command_as(&ip, Some(app), &["CONFIG", "GET", "maxmemory"]).await;
        assert!(allowed.starts_with("*2"), "widened: {allowed:?}");
    }
    // The operator reads the users back every 30 s (AUTH_RECHECK): put back well within a minute and a half.
    let deadline = Instant::now() + Duration::from_secs(90);
    for ip in ips(&env).await {
        loop {
            let app_reply = redis_command_as(&ip, Some(app), &["CONFIG", "GET", "maxmemory"]).await;
            let exporter =
                redis_command_as(&ip, Some(admin), &["ACL", "GETUSER", "exporter"]).await;
            if app_reply.starts_with("-NOPERM")
                && !exporter.contains("+@all")
                && !exporter.contains("~*")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ip} keeps the widened rules: {app_reply:?} {exporter:?}; log: {}",
                env.operator.log.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert_eq!(incarnations(&env, app).await, before, "nothing restarted");
}
