use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Secret};
use k8s_openapi::ByteString;

use super::*;
use crate::api::{ExporterSpec, TlsStatus};
use crate::converge::tls::{record, serves, Outcome};
use crate::converge::Pending;
use crate::desired::children::{build, tests::instance};
use crate::desired::tls::{server_args, TLS_VOLUME};

const CA: &str = include_str!("fixtures/ca.crt");
const OTHER_CA: &str = include_str!("fixtures/other-ca.crt");
const CERT: &str = include_str!("fixtures/tls.crt");
const KEY: &str = include_str!("fixtures/tls.key");
const OTHER_KEY: &str = include_str!("fixtures/other.key");

fn spec(client_auth: ClientAuth) -> TlsSpec {
    TlsSpec {
        secret_name: "cache-tls".into(),
        client_auth,
    }
}

fn secret(entries: &[(&str, &str)]) -> Secret {
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    secret.metadata.resource_version = Some("7".into());
    secret
}

fn good() -> Secret {
    secret(&[(CERT_KEY, CERT), (KEY_KEY, KEY), (CA_KEY, CA)])
}

fn now() -> UnixTime {
    UnixTime::now()
}

fn material() -> Material {
    resolve(&spec(ClientAuth::None), Some(&good()), now()).unwrap()
}

#[test]
fn a_complete_secret_resolves_to_its_leaf_and_ca() {
    let material = material();
    assert_eq!(material.secret, "cache-tls");
    assert_eq!(material.version.as_deref(), Some("7"));
    assert_eq!(material.chain.len(), 1);
    assert_eq!(material.ca.len(), 1);
    assert!(material.key().is_some());
    assert_eq!(material.warning, None);
}

#[test]
fn bad_secrets_are_named_without_their_content() {
    let tls = spec(ClientAuth::None);
    let problem = |secret: Option<&Secret>| resolve(&tls, secret, now()).unwrap_err();
    assert_eq!(
        problem(None).to_string(),
        "Secret cache-tls (spec.tls.secretName) does not exist"
    );
    for key in [CERT_KEY, KEY_KEY, CA_KEY] {
        let mut s = good();
        s.data.as_mut().unwrap().remove(key);
        assert_eq!(
            problem(Some(&s)),
            TlsProblem::MissingKey {
                secret: "cache-tls".into(),
                key
            }
        );
    }
    let cases = [
        (
            secret(&[(CERT_KEY, "garbage"), (KEY_KEY, KEY), (CA_KEY, CA)]),
            CERT_KEY,
            "holds no PEM certificate",
        ),
        (
            secret(&[
                (
                    CERT_KEY,
                    "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                ),
                (KEY_KEY, KEY),
                (CA_KEY, CA),
            ]),
            CERT_KEY,
            "not valid PEM",
        ),
        (
            secret(&[(CERT_KEY, CERT), (KEY_KEY, CERT), (CA_KEY, CA)]),
            KEY_KEY,
            "holds no PEM private key",
        ),
        (
            secret(&[(CERT_KEY, CERT), (KEY_KEY, OTHER_KEY), (CA_KEY, CA)]),
            KEY_KEY,
            "does not belong to the certificate",
        ),
        (
            secret(&[(CERT_KEY, CERT), (KEY_KEY, KEY), (CA_KEY, OTHER_CA)]),
            CERT_KEY,
            "not a server certificate signed by ca.crt",
        ),
        (
            secret(&[(CERT_KEY, CERT), (KEY_KEY, KEY), (CA_KEY, "nothing")]),
            CA_KEY,
            "holds no PEM certificate",
        ),
    ];
    for (secret, key, why) in cases {
        let problem = problem(Some(&secret));
        let text = problem.to_string();
        assert!(
            matches!(&problem, TlsProblem::Invalid { key: k, .. } if *k == key),
            "{text}"
        );
        assert!(text.contains(why), "{text}");
        assert!(!text.contains("BEGIN"), "no PEM in messages: {text}");
    }
}

#[test]
fn an_expired_certificate_is_a_warning_not_a_problem() {
    // The fixtures are valid for a hundred years from their creation.
    let later = UnixTime::since_unix_epoch(Duration::from_secs(200 * 365 * 24 * 3600));
    let material = resolve(&spec(ClientAuth::None), Some(&good()), later).unwrap();
    let warning = material.warning.clone().unwrap();
    assert!(warning.contains("not valid now"), "{warning}");
    assert!(status_message(&material, ClientAuth::None).contains(&warning));
    // The chain is still checked: an expired certificate from another CA is refused.
    let stranger = secret(&[(CERT_KEY, CERT), (KEY_KEY, KEY), (CA_KEY, OTHER_CA)]);
    let problem = resolve(&spec(ClientAuth::None), Some(&stranger), later).unwrap_err();
    assert!(
        problem
            .to_string()
            .contains("not a server certificate signed by ca.crt"),
        "{problem}"
    );
}

#[test]
fn the_validity_start_is_read_from_the_certificate() {
    let material = material();
    let start = connect::not_before(material.leaf().as_ref()).unwrap();
    let now = UnixTime::now().as_secs();
    // The fixtures were made shortly before this test was written, and are valid from then.
    assert!(
        start.as_secs() > 1_700_000_000 && start.as_secs() <= now,
        "{start:?}"
    );
    assert_eq!(connect::not_before(b"not DER"), None);
    assert_eq!(connect::not_before(&[0x30, 0x82, 0xff]), None);
}

#[test]
fn server_arguments_turn_plain_text_off_and_map_client_auth() {
    let args = server_args(&spec(ClientAuth::None)).join(" ");
    assert!(args.starts_with("--port 0 --tls-port 6379 "), "{args}");
    assert!(args.contains("--tls-cert-file /etc/redis-tls/tls.crt"));
    assert!(args.contains("--tls-key-file /etc/redis-tls/tls.key"));
    assert!(args.contains("--tls-ca-cert-file /etc/redis-tls/ca.crt"));
    // Parked at boot (a replica of itself): replication over TLS only once pointed at a primary.
    assert!(args.contains("--tls-replication no"));
    for (client_auth, value) in [
        (ClientAuth::None, "no"),
        (ClientAuth::Optional, "optional"),
        (ClientAuth::Required, "yes"),
    ] {
        assert!(server_args(&spec(client_auth))
            .join(" ")
            .ends_with(&format!("--tls-auth-clients {value}")));
    }
}

fn container<'a>(pod: &'a k8s_openapi::api::core::v1::PodSpec, name: &str) -> &'a Container {
    pod.containers.iter().find(|c| c.name == name).unwrap()
}

fn probe_script(redis: &Container) -> String {
    redis
        .readiness_probe
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap()
        .command
        .as_ref()
        .unwrap()[2]
        .clone()
}

#[test]
fn the_pod_mounts_the_secret_and_speaks_tls_everywhere() {
    let mut ri = instance("cache");
    ri.spec.tls = Some(spec(ClientAuth::None));
    ri.spec.monitoring.exporter = ExporterSpec {
        enabled: true,
        ..Default::default()
    };
    let template = build(&ri).statefulset.spec.unwrap().template;
    let annotations = template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations[TLS_ANNOTATION], "None/cache-tls");
    assert_eq!(
        pod_started_with(&annotations),
        Some((ClientAuth::None, "cache-tls".to_string()))
    );
    let pod = template.spec.unwrap();
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == TLS_VOLUME)
        .unwrap();
    let source = volume.secret.as_ref().unwrap();
    assert_eq!(source.secret_name.as_deref(), Some("cache-tls"));
    assert_eq!(source.default_mode, Some(0o440));
    // The Secret may be any of the namespace's: its other keys never reach a pod running the creator's image.
    let items: Vec<(&str, &str)> = source
        .items
        .iter()
        .flatten()
        .map(|item| (item.key.as_str(), item.path.as_str()))
        .collect();
    assert_eq!(
        items,
        [(CERT_KEY, CERT_KEY), (KEY_KEY, KEY_KEY), (CA_KEY, CA_KEY)]
    );
    let redis = container(&pod, crate::desired::container::CONTAINER);
    let mount = redis
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == TLS_VOLUME)
        .unwrap();
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        (TLS_DIR, Some(true))
    );
    assert!(redis
        .args
        .as_ref()
        .unwrap()
        .join(" ")
        .contains("--port 0 --tls-port 6379"));
    let script = probe_script(redis);
    assert!(
        script.contains("--user probe --tls --cacert /etc/redis-tls/ca.crt -h"),
        "the probe keeps its user and verifies the server: {script}"
    );
    assert!(!script.contains("--cert "), "{script}");
    // The exporter reads its own server over the pod's Unix socket: no TLS settings, no key mounted.
    let exporter = container(&pod, crate::desired::exporter::EXPORTER_CONTAINER);
    let env: BTreeMap<&str, Option<&str>> = exporter
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_deref()))
        .collect();
    assert_eq!(env["REDIS_ADDR"], Some(crate::names::REDIS_SOCKET_ADDR));
    assert!(!env.keys().any(|k| k.contains("TLS")), "{env:?}");
    assert!(!exporter
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == TLS_VOLUME));
}

#[test]
fn required_client_certificates_make_the_probe_present_the_pods_pair() {
    let mut ri = instance("cache");
    ri.spec.tls = Some(spec(ClientAuth::Required));
    ri.spec.auth.enabled = false;
    ri.spec.monitoring.exporter.enabled = true;
    let pod = build(&ri).statefulset.spec.unwrap().template.spec.unwrap();
    let script = probe_script(container(&pod, crate::desired::container::CONTAINER));
    assert!(
        script.starts_with(
            "r=$(redis-cli --tls --cacert /etc/redis-tls/ca.crt --cert /etc/redis-tls/tls.crt \
             --key /etc/redis-tls/tls.key -h"
        ),
        "{script}"
    );
    // The exporter does not need one: it reads over the pod's Unix socket.
    let exporter = container(&pod, crate::desired::exporter::EXPORTER_CONTAINER);
    assert!(!exporter
        .env
        .iter()
        .flatten()
        .any(|v| v.name.contains("TLS")));
}

#[test]
fn turning_tls_on_or_moving_it_rolls_the_pods_and_off_leaves_no_trace() {
    let plain = instance("cache");
    let template = |ri: &crate::api::RedisInstance| build(ri).statefulset.spec.unwrap().template;
    let mut on = plain.clone();
    on.spec.tls = Some(spec(ClientAuth::None));
    assert_ne!(template(&plain), template(&on));
    let mut moved = on.clone();
    moved.spec.tls.as_mut().unwrap().secret_name = "other".into();
    assert_ne!(template(&on), template(&moved));
    assert!(!template(&plain)
        .metadata
        .unwrap()
        .annotations
        .unwrap()
        .contains_key(TLS_ANNOTATION));
}

#[test]
fn annotations_that_are_not_ours_mean_plain_text() {
    let with = |value: &str| BTreeMap::from([(TLS_ANNOTATION.to_string(), value.to_string())]);
    assert_eq!(pod_started_with(&BTreeMap::new()), None);
    assert_eq!(pod_started_with(&with("cache-tls")), None);
    assert_eq!(pod_started_with(&with("Sometimes/cache-tls")), None);
    assert_eq!(
        pod_started_with(&with("Required/cache-tls")),
        Some((ClientAuth::Required, "cache-tls".into()))
    );
}

fn outcome(serving: &[&str], pending: &[&str]) -> Outcome {
    Outcome {
        done: serving.iter().map(|p| (p.to_string(), false)).collect(),
        pending: pending
            .iter()
            .map(|p| (p.to_string(), Pending::NotYet("lags".to_string())))
            .collect(),
    }
}

#[test]
fn the_served_version_moves_only_when_every_pod_serves_the_certificate() {
    let material = material();
    let first = record(
        &material,
        ClientAuth::None,
        &outcome(&["a", "b"], &[]),
        2,
        None,
    );
    assert_eq!(first.status.served_secret_version.as_deref(), Some("7"));
    assert_eq!(first.event, None, "a first certificate is no renewal");
    assert!(!first.pending);

    let before = TlsStatus {
        served_secret_version: Some("5".into()),
        ..first.status.clone()
    };
    let renewing = record(
        &material,
        ClientAuth::None,
        &outcome(&["a"], &["b"]),
        2,
        Some(&before),
    );
    assert_eq!(renewing.status.served_secret_version.as_deref(), Some("5"));
    assert!(renewing.pending);
    assert!(renewing
        .status
        .message
        .ends_with("not serving the current certificate yet: b"));
    assert_eq!(renewing.event, None);

    let short = record(
        &material,
        ClientAuth::None,
        &outcome(&["a"], &[]),
        2,
        Some(&before),
    );
    assert_eq!(short.status.served_secret_version.as_deref(), Some("5"));

    let renewed = record(
        &material,
        ClientAuth::None,
        &outcome(&["a", "b"], &[]),
        2,
        Some(&before),
    );
    assert_eq!(renewed.status.served_secret_version.as_deref(), Some("7"));
    assert!(renewed.event.unwrap().contains("resourceVersion 7"));
    let again = record(
        &material,
        ClientAuth::None,
        &outcome(&["a", "b"], &[]),
        2,
        Some(&renewed.status),
    );
    assert_eq!(again.event, None, "announced once");
    assert_eq!(
        again.status, renewed.status,
        "a converged pass changes nothing"
    );
}

#[test]
fn a_server_serves_the_secret_only_with_its_exact_leaf() {
    let material = material();
    assert!(serves(&material, Some(material.leaf().as_ref())));
    assert!(!serves(&material, None));
    let other = certificates(OTHER_CA.as_bytes()).unwrap();
    assert!(!serves(&material, Some(other[0].as_ref())));
}

/// A TLS server on a loopback port serving the fixture certificate (named `cache.ns.svc`, not the address).
async fn server() -> u16 {
    let material = material();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(material.chain.clone(), material.key().unwrap())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn the_handshake_verifies_the_ca_but_not_the_address_and_reads_the_served_leaf() {
    let port = server().await;
    let material = material();
    let trust = connect::Trust::new(&material, ClientAuth::None).unwrap();
    let (_, served) = trust.handshake("127.0.0.1", port).await.unwrap();
    assert_eq!(served.as_ref(), Some(material.leaf()));

    let mut stranger = material.clone();
    stranger.ca = certificates(OTHER_CA.as_bytes()).unwrap();
    let distrust = connect::Trust::new(&stranger, ClientAuth::None).unwrap();
    let refused = distrust.handshake("127.0.0.1", port).await.unwrap_err();
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");

    // A server started with a Secret that is gone is not spoken to at all (no plain-text fallback).
    let gone = connect::Trust::unavailable("Secret old-tls does not exist".into());
    let refused = gone.handshake("127.0.0.1", port).await.unwrap_err();
    assert!(refused.to_string().contains("old-tls"), "{refused}");
}

#[test]
fn a_change_replicas_cannot_replicate_across_is_refused_only_with_replicas() {
    let material = material();
    let plain = vec![("cache-0".to_string(), None), ("cache-1".to_string(), None)];
    let tls = |secret: &str| {
        vec![
            ("cache-0".to_string(), Some(secret.to_string())),
            ("cache-1".to_string(), Some(secret.to_string())),
        ]
    };
    let same_ca = |_: &str| Some(material.ca.clone());
    let other_ca = |_: &str| Some(certificates(OTHER_CA.as_bytes()).unwrap());
    let gone = |_: &str| None;

    let on = change_problem(Some(&material), 2, &plain, same_ca).unwrap();
    assert!(
        on.starts_with("cache-0 serves plain text and the spec turns TLS on"),
        "{on}"
    );
    assert!(on.contains("Scale to replicas: 1"), "{on}");
    let off = change_problem(None, 3, &tls("cache-tls"), same_ca).unwrap();
    assert!(
        off.starts_with("cache-0 serves TLS and the spec turns it off"),
        "{off}"
    );
    // At one replica (or none) there is no replication to break.
    assert_eq!(change_problem(Some(&material), 1, &plain, same_ca), None);
    assert_eq!(change_problem(None, 0, &tls("cache-tls"), same_ca), None);
    // Nothing changes, or only the certificate: fine.
    assert_eq!(change_problem(None, 3, &plain, gone), None);
    assert_eq!(
        change_problem(Some(&material), 3, &tls("cache-tls"), gone),
        None
    );
    // Another Secret: fine with the same CA, refused with another or without it.
    assert_eq!(
        change_problem(Some(&material), 3, &tls("old-tls"), same_ca),
        None
    );
    for ca_of in [other_ca as fn(&str) -> _, gone] {
        let moved = change_problem(Some(&material), 3, &tls("old-tls"), ca_of).unwrap();
        assert!(
            moved.contains("Secret old-tls, whose ca.crt differs"),
            "{moved}"
        );
    }
}
