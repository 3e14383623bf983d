use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::api::SecretKeyRef;
use crate::desired::auth::AUTH_VOLUME;

fn secret(name: &str, version: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some(version.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn counter() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("generated{n}")
    }
}

fn with_ref(name: &str) -> AuthSpec {
    AuthSpec {
        secret_ref: Some(SecretKeyRef {
            name: name.into(),
            key: "pw".into(),
        }),
        ..Default::default()
    }
}

#[test]
fn without_a_secret_a_password_is_generated_for_name_auth() {
    let resolved = resolve("cache", &AuthSpec::default(), None, None, &mut counter()).unwrap();
    assert_eq!(
        resolved.create_application_secret.as_deref(),
        Some("generated1")
    );
    let app = resolved.application.unwrap();
    assert_eq!(app.secret, "cache-auth");
    assert_eq!(app.hashes, [password_hash(b"generated1")]);
    assert_eq!(app.version, None);
    assert_eq!(resolved.internal.len(), 4);
}

#[test]
fn an_existing_secret_is_used_and_its_previous_password_kept_valid() {
    let user = secret("app", "7", &[("pw", "new"), ("previousPassword", "old")]);
    let resolved = resolve("cache", &with_ref("app"), Some(&user), None, &mut counter()).unwrap();
    assert_eq!(resolved.create_application_secret, None);
    let app = resolved.application.unwrap();
    let mut expected = vec![password_hash(b"new"), password_hash(b"old")];
    expected.sort();
    assert_eq!(app.hashes, expected);
    assert!(app.previous);
    assert_eq!(app.version.as_deref(), Some("7"));
}

#[test]
fn bad_secrets_are_named_problems_without_values() {
    let problem = |spec: &AuthSpec, s: Option<&Secret>| {
        resolve("cache", spec, s, None, &mut counter()).unwrap_err()
    };
    assert_eq!(
        problem(&with_ref("app"), None),
        AuthProblem::MissingSecret("app".into())
    );
    let no_key = secret("app", "1", &[("password", "x")]);
    assert_eq!(
        problem(&with_ref("app"), Some(&no_key)).to_string(),
        "Secret app has no key pw"
    );
    let empty = secret("app", "1", &[("pw", "")]);
    assert!(matches!(
        problem(&with_ref("app"), Some(&empty)),
        AuthProblem::EmptyPassword { .. }
    ));
    // A generated Secret the user emptied is a problem too, not a reason to generate another password.
    let emptied = secret("cache-auth", "1", &[("password", "")]);
    assert!(matches!(
        problem(&AuthSpec::default(), Some(&emptied)),
        AuthProblem::EmptyPassword { .. }
    ));
}

#[test]
fn the_operators_passwords_are_kept_once_generated() {
    let app = secret("cache-auth", "1", &[("password", "p")]);
    let first = resolve(
        "cache",
        &AuthSpec::default(),
        Some(&app),
        None,
        &mut counter(),
    )
    .unwrap();
    let data = users_secret_data(&AuthSpec::default(), &first).unwrap();
    let stored = Secret {
        data: Some(data),
        ..Default::default()
    };
    let again = resolve(
        "cache",
        &AuthSpec::default(),
        Some(&app),
        Some(&stored),
        &mut || panic!("nothing is generated again"),
    )
    .unwrap();
    assert_eq!(again.internal, first.internal);
}

#[test]
fn off_uses_only_what_name_acl_already_holds() {
    let off = AuthSpec {
        enabled: false,
        ..Default::default()
    };
    let resolved = resolve("cache", &off, None, None, &mut || panic!("no generation")).unwrap();
    assert!(resolved.application.is_none());
    assert!(resolved.internal.is_empty());
    assert!(operator_login(&resolved).is_none());
    assert!(users_secret_data(&off, &resolved).is_none());
}

#[test]
fn the_files_hold_hashes_of_the_application_password_never_the_password() {
    let app = secret("cache-auth", "1", &[("password", "s3cret-app")]);
    let resolved = resolve(
        "cache",
        &AuthSpec::default(),
        Some(&app),
        None,
        &mut counter(),
    )
    .unwrap();
    let data = users_secret_data(&AuthSpec::default(), &resolved).unwrap();
    let acl = String::from_utf8(data[ACL_FILE].0.clone()).unwrap();
    assert!(!acl.contains("s3cret-app"));
    assert!(acl.contains(&format!("#{}", password_hash(b"s3cret-app"))));
    assert!(acl.starts_with("user default on resetpass #"));
    assert!(acl.contains("~* &* +@all -@admin"));
    for user in [OPERATOR_USER, REPLICATION_USER, PROBE_USER, EXPORTER_USER] {
        assert!(acl.contains(&format!("user {user} on ")), "{acl}");
    }
    let conf = String::from_utf8(data[AUTH_CONF].0.clone()).unwrap();
    let replication = &resolved.internal[REPLICATION_USER];
    assert!(conf.contains(&format!("masterauth {replication}")));
    assert!(conf.contains("masteruser replication"));
    assert!(conf.contains("aclfile /etc/redis-auth/users.acl"));
}

#[test]
fn the_pod_reads_the_files_and_the_probe_and_exporter_authenticate_without_a_literal_password() {
    let mut ri = crate::desired::children::tests::instance("cache");
    ri.spec.monitoring.exporter.enabled = true;
    let sts = crate::desired::children::build(&ri).statefulset;
    let text = serde_json::to_string(&sts).unwrap();
    let template = sts.spec.unwrap().template;
    assert!(template.metadata.unwrap().annotations.unwrap()[AUTH_ANNOTATION].starts_with("on-"));
    let pod = template.spec.unwrap();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == AUTH_VOLUME)
        .unwrap();
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("cache-acl")
    );
    let redis = &pod.containers[0];
    let args = redis.args.clone().unwrap().join(" ");
    assert!(
        args.ends_with("--include /etc/redis-auth/auth.conf"),
        "{args}"
    );
    let probe = redis
        .readiness_probe
        .clone()
        .unwrap()
        .exec
        .unwrap()
        .command
        .unwrap();
    assert!(probe[2].contains("REDISCLI_AUTH=\"$(cat /etc/redis-auth/probe-password)\""));
    assert!(probe[2].contains("--user probe"));
    // The exporter: a password file, never REDIS_PASSWORD (which it would send to any /scrape target).
    let exporter = &pod.containers[1];
    let env = exporter.env.clone().unwrap();
    assert!(!env.iter().any(|v| v.name == "REDIS_PASSWORD"));
    let file = env
        .iter()
        .find(|v| v.name == "REDIS_PASSWORD_FILE")
        .unwrap();
    assert_eq!(
        file.value.as_deref(),
        Some("/etc/redis-exporter/passwords.json")
    );
    let mount = exporter
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == EXPORTER_AUTH_DIR)
        .unwrap();
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let source = volume.secret.as_ref().unwrap();
    assert_eq!(source.secret_name.as_deref(), Some("cache-acl"));
    let items: Vec<(&str, &str)> = source
        .items
        .iter()
        .flatten()
        .map(|i| (i.key.as_str(), i.path.as_str()))
        .collect();
    assert_eq!(items, [(EXPORTER_PASSWORDS, "passwords.json")]);
    assert!(!exporter
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == AUTH_VOLUME));
    assert!(!text.contains("masterauth"));
}

#[test]
fn the_exporters_password_file_names_only_its_own_servers_socket_and_its_user_reads_no_config() {
    let resolved = resolve("cache", &AuthSpec::default(), None, None, &mut counter()).unwrap();
    let data = users_secret_data(&AuthSpec::default(), &resolved).unwrap();
    let file: BTreeMap<String, String> =
        serde_json::from_slice(&data[EXPORTER_PASSWORDS].0).unwrap();
    assert_eq!(
        file,
        BTreeMap::from([(
            "unix:///run/redis-socket/redis.sock".to_string(),
            resolved.internal[EXPORTER_USER].clone()
        )])
    );
    let exporter = INTERNAL_USERS
        .iter()
        .find(|u| u.name == EXPORTER_USER)
        .unwrap();
    assert!(!exporter.rules.contains("config"), "{}", exporter.rules);
    assert!(
        !exporter.rules.contains("slowlog|get"),
        "{}",
        exporter.rules
    );
}

#[test]
fn off_marks_the_template_and_lets_other_hosts_in() {
    let mut ri = crate::desired::children::tests::instance("cache");
    ri.spec.auth.enabled = false;
    let pod = crate::desired::children::build(&ri)
        .statefulset
        .spec
        .unwrap()
        .template;
    assert_eq!(
        pod.metadata.unwrap().annotations.unwrap()[AUTH_ANNOTATION],
        "off"
    );
    let pod = pod.spec.unwrap();
    assert!(pod.volumes.unwrap().iter().all(|v| v.name != AUTH_VOLUME));
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    assert!(!args.contains("--include"), "{args}");
    // Without a password Redis 7 would accept loopback clients only: replicas and the operator are not.
    assert!(args.ends_with("--protected-mode no"), "{args}");
    ri.spec.auth.enabled = true;
    let on = crate::desired::children::build(&ri)
        .statefulset
        .spec
        .unwrap()
        .template;
    let args = on.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ");
    assert!(!args.contains("protected-mode"), "{args}");
}

#[test]
fn rule_changes_roll_the_pods_and_nothing_about_passwords_is_in_the_template() {
    let default = template_annotation(&AuthSpec::default());
    let other = template_annotation(&AuthSpec {
        default_user_rules: "~app:* +@read".into(),
        ..Default::default()
    });
    assert_ne!(default, other);
    assert_eq!(default, template_annotation(&with_ref("anything")));
    assert!(pod_started_with_auth(
        &[(AUTH_ANNOTATION.to_string(), default)].into()
    ));
    assert!(!pod_started_with_auth(
        &[(AUTH_ANNOTATION.to_string(), "off".to_string())].into()
    ));
    assert!(!pod_started_with_auth(&BTreeMap::new()));
}

#[test]
fn default_user_rules_may_not_carry_passwords_or_user_state() {
    assert_eq!(rules_problem(crate::api::DEFAULT_USER_RULES), None);
    assert_eq!(rules_problem("~app:* &* +@read +@write -flushall"), None);
    assert!(rules_problem(">hunter2 +@all")
        .unwrap()
        .contains("passwords"));
    assert!(rules_problem("nopass +@all").unwrap().contains("managed"));
    assert!(rules_problem("off").unwrap().contains("managed"));
    assert!(rules_problem("drop-tables")
        .unwrap()
        .contains("not an ACL rule"));
    assert!(rules_problem("  ").is_some());
}

#[test]
fn generated_passwords_are_long_random_hex() {
    let a = random_password().unwrap();
    let b = random_password().unwrap();
    assert_eq!(a.len(), 64);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}
