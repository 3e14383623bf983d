//! TLS (`spec.tls`): clients and replication over TLS with the plain-text port off, a renewed certificate
//! served without restarts, a malformed Secret refused. The harness's plain-text `redis_command` cannot talk
//! TLS: these tests use `redis-cli --tls` and `openssl s_client`, as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use redis_fsm::{Phase, Reason};
use redis_operator::api::{ClientAuth, TlsSpec};
use serde_json::json;

use crate::harness::*;
use redis_operator::names::ROLE_LABEL;

/// A scratch directory for one test's keys and certificates.
pub(crate) fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("redis-operator-e2e-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").current_dir(dir).args(args), None);
}

/// A CA (`ca.crt`, `ca.key`) in `dir`.
pub(crate) fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=e2e CA",
        ],
    );
}

/// A server certificate with `serial`, signed by the CA in `dir`, named as cert-manager would name it (DNS
/// names only, no pod address), usable for server and client authentication; returns (tls.crt, tls.key).
fn issue(dir: &Path, serial: &str) -> (String, String) {
    issue_for(dir, serial, "DNS:cache,DNS:cache-headless")
}

/// A certificate with `serial` for the subject alternative names `names` (e.g. `IP:127.0.0.1`), signed by the
/// CA in `dir`; returns (certificate, key), PEM.
pub(crate) fn issue_for(dir: &Path, serial: &str, names: &str) -> (String, String) {
    let (key, csr, crt) = (
        format!("{serial}.key"),
        format!("{serial}.csr"),
        format!("{serial}.crt"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=cache",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            &crt,
        ],
    );
    (
        std::fs::read_to_string(dir.join(crt)).unwrap(),
        std::fs::read_to_string(dir.join(key)).unwrap(),
    )
}

fn tls_secret(name: &str, crt: &str, key: &str, ca: &str) -> Secret {
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [("tls.crt", crt), ("tls.key", key), ("ca.crt", ca)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    secret.metadata.name = Some(name.into());
    secret
}

/// `redis-cli` against `ip`, over TLS verified with `ca` when given, with the password in `REDISCLI_AUTH`.
pub(crate) fn redis_cli(ip: &str, ca: Option<&Path>, password: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("redis-cli");
    cmd.env("REDISCLI_AUTH", password)
        .args(["--no-auth-warning", "-h", ip, "-p", "6379"]);
    if let Some(ca) = ca {
        cmd.arg("--tls").arg("--cacert").arg(ca);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs")
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The serial of the certificate `ip` serves, as `openssl s_client` sees it after verifying it against `ca`.
fn served_serial(ip: &str, ca: &Path) -> Option<String> {
    let script = format!(
        "openssl s_client -connect {ip}:6379 -CAfile {} -verify_return_error </dev/null 2>/dev/null \
         | openssl x509 -noout -serial",
        ca.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().ok()?;
    let text = stdout(&out);
    text.trim().strip_prefix("serial=").map(str::to_string)
}

/// `INFO section` of the server at `ip`, over TLS.
fn tls_info(ip: &str, ca: &Path, password: &str, section: &str) -> String {
    stdout(&redis_cli(ip, Some(ca), password, &["INFO", section]))
}

fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let waited = async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(WAIT, waited)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

pub(crate) fn with_tls(replicas: i32, secret: &str) -> redis_operator::api::RedisInstanceSpec {
    let mut s = spec(replicas);
    s.tls = Some(TlsSpec {
        secret_name: secret.into(),
        client_auth: ClientAuth::None,
    });
    s
}

/// What most tests start from: a CA and a certificate (serial 4097) in a scratch directory, and the Secret
/// `cache-tls` holding them.
pub(crate) struct Fixture {
    pub(crate) dir: PathBuf,
    pub(crate) ca_file: PathBuf,
    pub(crate) secrets: Api<Secret>,
}

pub(crate) async fn fixture(env: &TestEnv, test: &str) -> Fixture {
    let dir = scratch(test);
    make_ca(&dir);
    let ca_file = dir.join("ca.crt");
    let ca = std::fs::read_to_string(&ca_file).unwrap();
    let (crt, key) = issue(&dir, "4097");
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    secrets
        .create(
            &PostParams::default(),
            &tls_secret("cache-tls", &crt, &key, &ca),
        )
        .await
        .unwrap();
    Fixture {
        dir,
        ca_file,
        secrets,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_clients_and_replication_and_reloads_a_renewed_certificate_without_restarts() {
    let env = TestEnv::new("tls").await;
    let Fixture {
        dir,
        ca_file,
        secrets,
    } = fixture(&env, "tls").await;
    env.create("cache", with_tls(2, "cache-tls")).await;
    let ri = env.wait_running("cache").await;
    let pods = env.pods_of("cache").await;
    assert_eq!(pods.len(), 2);
    let ips: Vec<String> = pods.iter().map(pod_ip).collect();
    let password = password_for(&ips[0])
        .await
        .expect("the application password");

    let mut run_ids = Vec::new();
    for ip in &ips {
        let pong = redis_cli(ip, Some(&ca_file), &password, &["PING"]);
        assert_eq!(stdout(&pong).trim(), "PONG", "{pong:?}");
        // Plain text is refused: the only port speaks TLS.
        let plain = redis_cli(ip, None, &password, &["PING"]);
        assert!(!stdout(&plain).contains("PONG"), "{plain:?}");
        let info = tls_info(ip, &ca_file, &password, "server");
        run_ids.push(info_field(&info, "run_id").expect("run_id"));
        assert_eq!(served_serial(ip, &ca_file).as_deref(), Some("1001"));
    }
    // Replication runs over TLS (nothing else is listening).
    let replica = ips
        .iter()
        .find(|ip| {
            let info = tls_info(ip, &ca_file, &password, "replication");
            info_field(&info, "role").as_deref() == Some("slave")
        })
        .expect("a replica");
    let info = tls_info(replica, &ca_file, &password, "replication");
    assert_eq!(
        info_field(&info, "master_link_status").as_deref(),
        Some("up"),
        "{info}"
    );
    let status = ri.status.unwrap();
    let tls = status.tls.expect("status.tls");
    assert_eq!(tls.secret_name, "cache-tls");
    let first_version = secrets.get("cache-tls").await.unwrap().resource_version();
    assert_eq!(tls.served_secret_version, first_version);

    // Renewal: a new certificate (new serial, same CA) in the same Secret.
    let (crt, key) = issue(&dir, "8193");
    let patch = json!({"data": {
        "tls.crt": ByteString(crt.into_bytes()),
        "tls.key": ByteString(key.into_bytes()),
    }});
    let renewed = secrets
        .patch("cache-tls", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap()
        .resource_version();
    for ip in &ips {
        wait_until(&format!("{ip} serves the renewed certificate"), || {
            served_serial(ip, &ca_file).as_deref() == Some("2001")
        })
        .await;
    }
    let ri = env
        .wait_status("cache", "serving the renewal everywhere", |s| {
            s.tls.as_ref().and_then(|t| t.served_secret_version.clone()) == renewed
        })
        .await;
    assert_eq!(ri.status.unwrap().status, Phase::Running);
    let note = crate::wait_event(&env, "CertificateReloaded").await;
    assert!(note.contains("cache-tls"), "{note}");
    // No restarts: the same pods, the same servers.
    let after = env.pods_of("cache").await;
    assert_eq!(
        after.iter().map(|p| p.uid()).collect::<Vec<_>>(),
        pods.iter().map(|p| p.uid()).collect::<Vec<_>>()
    );
    for (ip, run_id) in ips.iter().zip(&run_ids) {
        let info = tls_info(ip, &ca_file, &password, "server");
        assert_eq!(info_field(&info, "run_id").as_ref(), Some(run_id));
    }
    let info = tls_info(replica, &ca_file, &password, "replication");
    assert_eq!(
        info_field(&info, "master_link_status").as_deref(),
        Some("up"),
        "{info}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_tls_secret_fails_touches_nothing_and_recovers_when_fixed() {
    let env = TestEnv::new("tls-bad").await;
    let dir = scratch("tls-bad");
    make_ca(&dir);
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let (crt, key) = issue(&dir, "4097");
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    secrets
        .create(
            &PostParams::default(),
            &tls_secret("cache-tls", "not a certificate", &key, &ca),
        )
        .await
        .unwrap();
    env.create("cache", with_tls(1, "cache-tls")).await;
    let ri = env
        .wait_status("cache", "Failed", |s| s.status == Phase::Failed)
        .await;
    let status = ri.status.unwrap();
    assert_eq!(status.reason, Reason::TlsSecretInvalid.as_str());
    assert!(
        status
            .last_condition_message
            .contains("key tls.crt of Secret cache-tls"),
        "{status:#?}"
    );
    // Nothing was made: no StatefulSet, no ConfigMap, no generated password.
    assert!(env.statefulsets().get_opt("cache").await.unwrap().is_none());
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    assert!(config_maps.get_opt("cache-config").await.unwrap().is_none());
    assert!(secrets.get_opt("cache-auth").await.unwrap().is_none());

    // A missing key is named too.
    let patch = json!({"data": {"tls.crt": ByteString(crt.into_bytes()), "ca.crt": null}});
    secrets
        .patch("cache-tls", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_status("cache", "Failed on ca.crt", |s| {
        s.status == Phase::Failed && s.last_condition_message.contains("has no key ca.crt")
    })
    .await;

    // Fixed: the instance comes up, over TLS.
    let patch = json!({"data": {"ca.crt": ByteString(ca.into_bytes())}});
    secrets
        .patch("cache-tls", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_running("cache").await;
    let ip = pod_ip(&env.pods_of("cache").await[0]);
    let password = password_for(&ip).await.expect("the application password");
    let pong = redis_cli(&ip, Some(&dir.join("ca.crt")), &password, &["PING"]);
    assert_eq!(stdout(&pong).trim(), "PONG", "{pong:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn turning_tls_on_is_refused_with_replicas_and_goes_through_at_one() {
    let env = TestEnv::new("tls-on").await;
    let Fixture {
        dir,
        ca_file,
        secrets: _,
    } = fixture(&env, "tls-on").await;
    env.create("cache", spec(2)).await;
    env.wait_running("cache").await;
    let uids = env.pod_uids("cache").await;
    let template = || async {
        env.statefulsets()
            .get("cache")
            .await
            .unwrap()
            .spec
            .unwrap()
            .template
    };
    let before = template().await;

    // Replicas cannot replicate across plain text and TLS: refused, nothing rolled.
    env.patch_spec("cache", json!({"tls": {"secretName": "cache-tls"}}))
        .await;
    let ri = env
        .wait_status("cache", "Failed", |s| s.status == Phase::Failed)
        .await;
    let status = ri.status.unwrap();
    assert_eq!(status.reason, Reason::TlsChangeRefused.as_str());
    assert!(
        status
            .last_condition_message
            .contains("Scale to replicas: 1"),
        "{status:#?}"
    );
    assert_eq!(template().await, before, "nothing was applied");
    let now = env.pod_uids("cache").await;
    assert_eq!(now, uids, "no pod was replaced");

    // At one replica it rolls; scaled up again, the new replica replicates over TLS.
    env.patch_spec("cache", json!({"replicas": 1})).await;
    env.wait_running("cache").await;
    let ip = pod_ip(&env.pods_of("cache").await[0]);
    let password = password_for(&ip).await.expect("the application password");
    let pong = redis_cli(&ip, Some(&ca_file), &password, &["PING"]);
    assert_eq!(stdout(&pong).trim(), "PONG", "{pong:?}");
    env.patch_spec("cache", json!({"replicas": 2})).await;
    env.wait_running("cache").await;
    let pods = env.pods_of("cache").await;
    let linked = pods.iter().map(pod_ip).any(|ip| {
        let info = tls_info(&ip, &ca_file, &password, "replication");
        info_field(&info, "master_link_status").as_deref() == Some("up")
    });
    assert!(linked, "a replica is linked over TLS");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn required_client_certificates_keep_probes_replication_operator_and_exporter_working() {
    let env = TestEnv::new("tls-mtls").await;
    let Fixture {
        dir,
        ca_file,
        secrets: _,
    } = fixture(&env, "tls-mtls").await;
    let mut s = with_tls(2, "cache-tls");
    s.tls.as_mut().unwrap().client_auth = ClientAuth::Required;
    s.monitoring.exporter.enabled = true;
    env.create("cache", s).await;
    // Running means the probes passed, the operator confirmed a primary and the replica is in sync: each of
    // them presented the Secret's certificate.
    env.wait_running("cache").await;
    let pods = env.pods_of("cache").await;
    let ip = pod_ip(&pods[0]);
    let password = password_for(&ip).await.expect("the application password");
    let without = redis_cli(&ip, Some(&ca_file), &password, &["PING"]);
    assert!(!stdout(&without).contains("PONG"), "{without:?}");
    let with = Command::new("redis-cli")
        .env("REDISCLI_AUTH", &password)
        .args([
            "--no-auth-warning",
            "-h",
            &ip,
            "-p",
            "6379",
            "--tls",
            "--cacert",
        ])
        .arg(&ca_file)
        .arg("--cert")
        .arg(dir.join("4097.crt"))
        .arg("--key")
        .arg(dir.join("4097.key"))
        .arg("PING")
        .output()
        .unwrap();
    assert_eq!(stdout(&with).trim(), "PONG", "{with:?}");
    // The exporter scrapes its server over the pod's Unix socket, which TLS does not concern.
    for pod in &pods {
        let primary = pod.labels().get(ROLE_LABEL).map(String::as_str) == Some("primary");
        let replicas = if primary { 1.0 } else { 0.0 };
        crate::knobs::wait_scrape(&pod_ip(pod), replicas).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_converged_tls_instance_writes_nothing_and_fails_over_over_tls() {
    let env = TestEnv::with_operator_args("tls-idle", &["--resync-seconds", "1"]).await;
    let Fixture {
        dir,
        ca_file,
        secrets: _,
    } = fixture(&env, "tls-idle").await;
    env.create("cache", with_tls(2, "cache-tls")).await;
    env.wait_running("cache").await;
    crate::replication::wait_converged(&env, "cache", 2).await;
    // The TLS pass (a handshake with every pod each reconcile) writes nothing once every pod serves the Secret.
    crate::assert_idle_resyncs_write_nothing(&env).await;

    let old = crate::replication::kill_primary_server(&env).await;
    let ri = env
        .wait_status("cache", "failed over", move |s| {
            s.current_primary.as_ref().is_some_and(|p| *p != old)
                && crate::replication::converged(s, 2)
                && s.status == Phase::Running
        })
        .await;
    let primary = ri.status.unwrap().current_primary.unwrap();
    let pods = env.pods_of("cache").await;
    let replica = pods.iter().find(|p| p.name_any() != primary).unwrap();
    let password = password_for(&pod_ip(replica)).await.unwrap();
    let info = tls_info(&pod_ip(replica), &ca_file, &password, "replication");
    assert_eq!(
        info_field(&info, "master_link_status").as_deref(),
        Some("up"),
        "the restarted old primary replicates from the new one over TLS: {info}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `spec.tls.secretName` may name any Secret of the namespace: the pods, which run an image the instance's
/// creator chose, get its three TLS keys and nothing else it holds.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_three_tls_keys_of_the_named_secret_reach_the_pods() {
    let env = TestEnv::new("tls-keys").await;
    let fixture = fixture(&env, "tls-keys").await;
    let patch = json!({"data": {"other-app-token": ByteString(b"not for redis".to_vec())}});
    fixture
        .secrets
        .patch("cache-tls", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.create("cache", with_tls(1, "cache-tls")).await;
    env.wait_running("cache").await;
    let pod = env.pods_of("cache").await.remove(0);
    let volume = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "tls"))
        .and_then(|v| v.secret.clone())
        .expect("the TLS volume");
    assert_eq!(volume.secret_name.as_deref(), Some("cache-tls"));
    let mut keys: Vec<String> = volume
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            assert_eq!(item.key, item.path, "each key keeps its file name");
            item.key
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    // On the local cluster the node agent keeps each pod's volumes in its state directory: the files are
    // there, and the other key is not.
    let dir = env.info.kubeconfig.parent().map(|state| {
        state
            .join("pods")
            .join(pod.uid().unwrap())
            .join("volumes/tls")
    });
    if let Some((dir, entries)) = dir.and_then(|d| Some((d.clone(), std::fs::read_dir(d).ok()?))) {
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| !name.starts_with(".."))
            .collect();
        files.sort();
        assert_eq!(files, ["ca.crt", "tls.crt", "tls.key"], "{}", dir.display());
    }
    let _ = std::fs::remove_dir_all(&fixture.dir);
}
