//! Backups to the local cluster's S3-compatible server (`devcluster/cluster.sh` runs it; its endpoint and
//! credentials are in `DEVCLUSTER_DIR/s3/env`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use object_store::ObjectStoreExt;
use redis_fsm::Phase;
use redis_operator::api::{
    ArchiveSpec, BackupSpec, BootstrapSpec, FromArchive, FromBackup, RedisBackup, RedisBackupSpec,
    RedisBackupStatus, RedisInstance, S3Target,
};
use redis_operator::backup::archive;
use redis_operator::backup::store::{self, Credentials};
use redis_operator::names::ROLE_LABEL;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::harness::*;
use crate::replication::{
    converged, kill_primary_server, labelled, wait_converged, wait_writes, Writer,
};

async fn credentials_secret(env: &TestEnv, name: &str, key: &str, secret: &str) {
    let data = [
        (
            store::ACCESS_KEY_ID_KEY.to_string(),
            ByteString(key.as_bytes().to_vec()),
        ),
        (
            store::SECRET_ACCESS_KEY_KEY.to_string(),
            ByteString(secret.as_bytes().to_vec()),
        ),
    ];
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                data: Some(data.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// Creates the `RedisBackup` `name` of `instance` and waits until it finished.
async fn take_backup(env: &TestEnv, name: &str, instance: &str) -> RedisBackupStatus {
    let backups: Api<RedisBackup> = Api::namespaced(env.client.clone(), &env.ns);
    backups
        .create(
            &PostParams::default(),
            &RedisBackup::new(
                name,
                RedisBackupSpec {
                    instance: instance.into(),
                },
            ),
        )
        .await
        .unwrap();
    finished(env, name).await
}

/// Waits until the `RedisBackup` `name` finished.
async fn finished(env: &TestEnv, name: &str) -> RedisBackupStatus {
    let backups: Api<RedisBackup> = Api::namespaced(env.client.clone(), &env.ns);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = backups.get(name).await.unwrap().status.unwrap_or_default();
        if status.phase == "Completed" || status.phase == "Failed" {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backup {name} not finished: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A backup is read from a replica, stored compressed, and holds every write confirmed before it: the object,
/// downloaded and decompressed, matches the recorded size and checksum, and a `redis-server` started on it
/// serves every confirmed key. Bad credentials and an instance without a bucket fail with a reason, and the
/// instance serves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_is_taken_from_a_replica_and_restores_every_confirmed_write() {
    let Some((endpoint, key, secret)) = s3() else {
        eprintln!("no local S3 server against an existing cluster: skipped");
        return;
    };
    let env = TestEnv::new("backup").await;
    let bucket = env.ns.clone();
    create_bucket(&endpoint, &key, &secret, &bucket);
    credentials_secret(&env, "s3", &key, &secret).await;
    let mut s = spec(2);
    let target = S3Target {
        endpoint: endpoint.clone(),
        bucket: bucket.clone(),
        prefix: None,
        region: None,
        credentials_secret: "s3".into(),
        ca_secret: None,
    };
    s.backup = Some(BackupSpec {
        s3: target.clone(),
        schedule: None,
        keep: 7,
        max_age_days: None,
        archive: None,
    });
    env.create("cache", s).await;
    env.wait_running("cache").await;
    wait_converged(&env, "cache", 2).await;
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 200).await;
    let (confirmed, _) = writer.finish().await;

    // `redis-operator backup` creates the RedisBackup.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_redis-operator"))
        .env("KUBECONFIG", &env.info.kubeconfig)
        .args(["backup", "cache", "--backup-name", "first", "-n", &env.ns])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let status = finished(&env, "first").await;
    eprintln!(
        "first backup: {status:?}, {} confirmed writes",
        confirmed.len()
    );
    assert_eq!(status.phase, "Completed", "{status:?}");
    let replica = labelled(&env, "cache", "replica").await[0].name_any();
    assert_eq!(status.pod, replica, "read from the replica");
    // A backup's spec stays as created.
    let backups: Api<RedisBackup> = Api::namespaced(env.client.clone(), &env.ns);
    let refused = backups
        .patch(
            "first",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"instance": "other"}})),
        )
        .await
        .expect_err("the spec changed");
    assert!(refused.to_string().contains("cannot change"), "{refused}");
    assert_eq!(status.replication_id.len(), 40);
    assert!(status.replication_offset.unwrap() > 0);
    let prefix = format!("s3://{bucket}/");
    let object_key = status.object.strip_prefix(&prefix).unwrap().to_string();
    assert!(
        object_key.starts_with(&format!("{}/cache/base/first-", env.ns)),
        "{object_key}"
    );

    // The object: compressed, as large as recorded, the snapshot's checksum and size.
    let bucket_client = store::bucket(
        &target,
        &Credentials {
            access_key_id: key.clone(),
            secret_access_key: secret.clone(),
            ca_pem: None,
        },
    )
    .unwrap();
    let object = bucket_client
        .get(&object_store::path::Path::from(object_key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Some(object.len() as i64), status.size);
    let mut rdb = Vec::new();
    async_compression::tokio::bufread::ZstdDecoder::new(&object[..])
        .read_to_end(&mut rdb)
        .await
        .unwrap();
    assert_eq!(Some(rdb.len() as i64), status.data_size);
    assert!(rdb.starts_with(b"REDIS"), "not an RDB file");
    let digest: String = Sha256::digest(&rdb)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, status.sha256);
    assert!(
        status.size.unwrap() < status.data_size.unwrap(),
        "not compressed"
    );

    // A server started on it holds every confirmed write.
    let dir = tempdir(&env.ns);
    std::fs::write(dir.join("dump.rdb"), &rdb).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on the host");
    let url = format!("redis://127.0.0.1:{port}");
    let mut connection = loop {
        match redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        {
            Ok(c) => match redis::cmd("PING")
                .query_async::<String>(&mut c.clone())
                .await
            {
                Ok(_) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let keys: Vec<String> = confirmed.iter().map(|n| format!("k{n}")).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let missing: Vec<&String> = keys
        .iter()
        .zip(&values)
        .filter(|(k, v)| v.as_deref() != Some(&k[1..]))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} confirmed writes missing",
        missing.len(),
        keys.len()
    );

    // Bad credentials: Failed with a reason, no object, the instance serves on.
    credentials_secret(&env, "wrong", &key, "not-the-secret").await;
    env.patch_spec(
        "cache",
        serde_json::json!({"backup": {"s3": {"credentialsSecret": "wrong"}}}),
    )
    .await;
    let status = take_backup(&env, "refused", "cache").await;
    assert_eq!(status.phase, "Failed", "{status:?}");
    assert_eq!(status.reason, "BackupFailed");
    assert!(status.object.is_empty());
    crate::wait_event(&env, "BackupFailed").await;
    // An endpoint nobody answers at: the same, within the retry bound. (A missing bucket is not tried: the local
    // server creates one on a first write by its admin.)
    for (name, patch) in [(
        "no-endpoint",
        serde_json::json!({"backup": {"s3": {"credentialsSecret": "s3", "endpoint": "http://127.0.0.1:9"}}}),
    )] {
        env.patch_spec("cache", patch).await;
        let status = take_backup(&env, name, "cache").await;
        assert_eq!(
            (status.phase.as_str(), status.reason.as_str()),
            ("Failed", "BackupFailed"),
            "{name}: {status:?}"
        );
        assert!(status.object.is_empty(), "{name}");
    }
    // An instance that does not exist.
    let status = take_backup(&env, "nowhere", "other").await;
    assert_eq!(
        (status.phase.as_str(), status.reason.as_str()),
        ("Failed", "InstanceNotFound")
    );
    wait_converged(&env, "cache", 2).await;
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("redis-operator-backup-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A schedule of every minute with `keep: 1`: runs are created by themselves (`NAME-<time>`), and once a second
/// one completed the first is deleted with its object; `status.backup` names the newest completed backup and the
/// next run. A schedule that is not cron is reported in `status.backup.message` and creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_run_by_themselves_and_retention_keeps_the_newest() {
    let Some((endpoint, key, secret)) = s3() else {
        eprintln!("no local S3 server against an existing cluster: skipped");
        return;
    };
    let env = TestEnv::new("schedule").await;
    let bucket = env.ns.clone();
    create_bucket(&endpoint, &key, &secret, &bucket);
    credentials_secret(&env, "s3", &key, &secret).await;
    let target = S3Target {
        endpoint,
        bucket,
        prefix: None,
        region: None,
        credentials_secret: "s3".into(),
        ca_secret: None,
    };
    let mut s = spec(1);
    s.backup = Some(BackupSpec {
        s3: target.clone(),
        schedule: Some("every minute".into()),
        keep: 1,
        max_age_days: None,
        archive: None,
    });
    env.create("cache", s).await;
    let refused = env
        .wait_status("cache", "the bad schedule reported", |s| {
            s.backup.as_ref().is_some_and(|b| !b.message.is_empty())
        })
        .await;
    assert!(
        refused
            .status
            .unwrap()
            .backup
            .unwrap()
            .message
            .contains("five fields"),
        "the message names the problem"
    );
    env.patch_spec(
        "cache",
        serde_json::json!({"backup": {"schedule": "* * * * *"}}),
    )
    .await;
    let backups: Api<RedisBackup> = Api::namespaced(env.client.clone(), &env.ns);
    let bucket_client = store::bucket(
        &target,
        &Credentials {
            access_key_id: key,
            secret_access_key: secret,
            ca_pem: None,
        },
    )
    .unwrap();
    // Two runs completed (they are a minute apart), the first deleted by retention with its object.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(200);
    loop {
        let list = backups.list(&Default::default()).await.unwrap().items;
        for b in &list {
            if let Some(status) = b.status.as_ref().filter(|s| s.phase == "Completed") {
                seen.insert(b.name_any(), status.object.clone());
            }
        }
        let present: Vec<String> = list.iter().map(|b| b.name_any()).collect();
        let gone: Vec<&String> = seen.keys().filter(|n| !present.contains(n)).collect();
        if seen.len() >= 2 && !gone.is_empty() {
            let first = gone[0];
            assert!(first.starts_with("cache-"), "{first}");
            let key = seen[first]
                .split_once("://")
                .unwrap()
                .1
                .split_once('/')
                .unwrap()
                .1;
            let head = bucket_client
                .head(&object_store::path::Path::from(key))
                .await;
            assert!(
                matches!(head, Err(object_store::Error::NotFound { .. })),
                "the deleted backup's object is still there: {head:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no two scheduled runs with one retired within 200 s: {seen:?}, present {present:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = env
        .wait_status("cache", "the newest backup recorded", |s| {
            s.backup
                .as_ref()
                .is_some_and(|b| b.last_completed.is_some() && b.next_scheduled_at.is_some())
        })
        .await
        .status
        .unwrap()
        .backup
        .unwrap();
    let newest = status.last_completed.unwrap();
    assert!(seen.contains_key(&newest), "{newest} not among {seen:?}");
    // Backups complete on schedule: the overdue gauge says so.
    let series = format!(
        "redis_operator_backup_overdue{{namespace=\"{}\",name=\"cache\"}}",
        env.ns
    );
    assert_eq!(env.operator.metric(&series).await, Some(0.0), "{series}");
}

/// A namespace of its own with a bucket of its own on the local S3 server and the Secret `s3` holding its keys;
/// the `spec.backup` that names them, and a client of the bucket. `None` against an existing cluster.
async fn with_bucket(
    test: &str,
    archive: Option<ArchiveSpec>,
) -> Option<(
    TestEnv,
    BackupSpec,
    std::sync::Arc<dyn object_store::ObjectStore>,
)> {
    let Some((endpoint, key, secret)) = s3() else {
        eprintln!("no local S3 server against an existing cluster: skipped");
        return None;
    };
    let env = TestEnv::new(test).await;
    let bucket = env.ns.clone();
    create_bucket(&endpoint, &key, &secret, &bucket);
    credentials_secret(&env, "s3", &key, &secret).await;
    let target = BackupSpec {
        s3: S3Target {
            endpoint,
            bucket,
            prefix: None,
            region: None,
            credentials_secret: "s3".into(),
            ca_secret: None,
        },
        schedule: None,
        keep: 7,
        max_age_days: None,
        archive,
    };
    let client = store::bucket(
        &target.s3,
        &Credentials {
            access_key_id: key,
            secret_access_key: secret,
            ca_pem: None,
        },
    )
    .unwrap();
    Some((env, target, client))
}

/// The values of `keys` on `ip` (over TLS, verified with `ca`), as `redis-cli` prints them: one per line.
fn values_over_tls(ip: &str, ca: &std::path::Path, password: &str, keys: &[String]) -> Vec<String> {
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    let out = crate::tls::redis_cli(ip, Some(ca), password, &args);
    crate::tls::stdout(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

/// An instance created with `spec.bootstrap.fromBackup` starts from the backup: the operator seeds its first pod
/// before any pod serves (over TLS: the copy's servers speak TLS only), and the copy's primary and replicas hold
/// every write confirmed before the backup; `status.restore` says where the data came from. A backup whose
/// object does not match its recorded checksum is refused (`Failed`/`RestoreFailed`): that instance's pod holds
/// nothing and no pod serves. `spec.bootstrap` cannot be added or changed.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_bootstrapped_from_a_backup_starts_with_every_confirmed_write() {
    let Some((env, target, _)) = with_bucket("restore", None).await else {
        return;
    };
    let mut s = spec(2);
    s.backup = Some(target.clone());
    env.create("cache", s).await;
    env.wait_running("cache").await;
    wait_converged(&env, "cache", 2).await;
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 300).await;
    let (confirmed, _) = writer.finish().await;
    // Enough data for the snapshot to stream in several chunks of 256 KiB (the operator holds one back at a time).
    let primary_ip = pod_ip(&labelled(&env, "cache", "primary").await[0]);
    let password = password_for(&primary_ip).await.expect("cache-auth");
    let mut source = redis::Client::open(format!("redis://:{password}@{primary_ip}:6379"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut bulk = redis::pipe();
    for n in 0..20_000 {
        bulk.set(format!("bulk{n}"), format!("{n:0>120}")).ignore();
    }
    bulk.query_async::<()>(&mut source).await.unwrap();
    let source_keys: u64 = redis::cmd("DBSIZE").query_async(&mut source).await.unwrap();
    redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async::<i64>(&mut source)
        .await
        .unwrap();
    let base = take_backup(&env, "base", "cache").await;
    assert!(base.data_size.unwrap() > 300_000, "{base:?}");
    // Written after the backup: not in the copy.
    let mut later = redis::pipe();
    for n in 0..100 {
        later.set(format!("later{n}"), n).ignore();
    }
    later.query_async::<()>(&mut source).await.unwrap();
    assert_eq!(base.phase, "Completed", "{base:?}");
    let tampered = take_backup(&env, "tampered", "cache").await;
    assert_eq!(tampered.phase, "Completed", "{tampered:?}");
    let backups: Api<RedisBackup> = Api::namespaced(env.client.clone(), &env.ns);
    backups
        .patch_status(
            "tampered",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"sha256": "0".repeat(64)}})),
        )
        .await
        .unwrap();
    let from = |name: &str| {
        Some(BootstrapSpec {
            from_backup: Some(FromBackup { name: name.into() }),
            from_archive: None,
        })
    };

    // A backup whose object does not match its checksum: refused, the pod holds nothing, nothing serves.
    let mut bad = spec(1);
    bad.backup = Some(target.clone());
    bad.bootstrap = from("tampered");
    env.create("bad", bad).await;
    let refused = env
        .wait_status("bad", "Failed/RestoreFailed", |s| {
            s.reason == "RestoreFailed"
        })
        .await
        .status
        .unwrap();
    assert_eq!(refused.status, Phase::Failed);
    assert!(
        refused.last_condition_message.contains("does not match"),
        "{}",
        refused.last_condition_message
    );
    assert!(refused.restore.is_none() && refused.current_primary.is_none());
    let bad_pod = env.pods_of("bad").await.remove(0);
    assert!(bad_pod.labels().get(ROLE_LABEL).is_none(), "a role label");
    let info = redis_command(&pod_ip(&bad_pod), &["INFO", "keyspace"]).await;
    assert!(
        !info.contains("keys="),
        "the refused pod holds data: {info}"
    );

    // The copy: `redis-operator restore` prints the backed-up instance's spec bootstrapped from the backup; with
    // three pods and TLS on, it is created.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_redis-operator"))
        .env("KUBECONFIG", &env.info.kubeconfig)
        .args([
            "restore",
            "base",
            "--to",
            "copy",
            "--replicas",
            "3",
            "-n",
            &env.ns,
        ])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed: RedisInstance = serde_yaml::from_slice(&cli.stdout).unwrap();
    assert_eq!(printed.metadata.name.as_deref(), Some("copy"));
    assert_eq!(printed.spec.backup, Some(target.clone()));
    assert_eq!(printed.spec.bootstrap, from("base"));
    assert_eq!(printed.spec.replicas, 3);
    let fixture = crate::tls::fixture(&env, "restore").await;
    let mut copy = printed.spec;
    copy.tls = crate::tls::with_tls(3, "cache-tls").tls;
    env.create("copy", copy).await;
    env.wait_running("copy").await;
    let status = wait_converged(&env, "copy", 3).await;
    let restore = status.restore.clone().expect("status.restore");
    eprintln!("restored: {restore:?}");
    assert_eq!(
        (restore.backup.as_str(), restore.pod.as_str()),
        ("base", "copy-0")
    );
    assert_eq!(restore.replication_id, base.replication_id);
    assert_eq!(restore.object, base.object);
    assert_eq!(restore.data_size, base.data_size);
    assert!(restore.completed_at.is_some());
    assert_eq!(status.current_primary.as_deref(), Some("copy-0"));
    // The primary has promoted from the backup's history.
    assert_eq!(
        status.primary_replication_id2.as_deref(),
        Some(base.replication_id.as_str())
    );
    let keys: Vec<String> = confirmed.iter().map(|n| format!("k{n}")).collect();
    let password = secret_value(&env.client, &env.ns, "copy-auth", "password")
        .await
        .expect("copy-auth");
    for pod in env.pods_of("copy").await {
        let size = crate::tls::stdout(&crate::tls::redis_cli(
            &pod_ip(&pod),
            Some(&fixture.ca_file),
            &password,
            &["DBSIZE"],
        ));
        // Exactly the keys of the backup: as many as the source held then, none written after.
        assert_eq!(size.trim(), source_keys.to_string(), "{}", pod.name_any());
        let after = values_over_tls(
            &pod_ip(&pod),
            &fixture.ca_file,
            &password,
            &["later0".into(), "later99".into()],
        );
        assert_eq!(
            after,
            ["", ""],
            "{}: a key written after the backup",
            pod.name_any()
        );
        let values = values_over_tls(&pod_ip(&pod), &fixture.ca_file, &password, &keys);
        let missing: Vec<&String> = keys
            .iter()
            .zip(values.iter().map(Some).chain(std::iter::repeat(None)))
            .filter(|(k, v)| v.map(String::as_str) != Some(&k[1..]))
            .map(|(k, _)| k)
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} of {} confirmed writes missing",
            pod.name_any(),
            missing.len(),
            keys.len()
        );
    }

    // spec.bootstrap is set at creation only.
    for (name, patch) in [
        (
            "copy",
            serde_json::json!({"bootstrap": {"fromBackup": {"name": "tampered"}}}),
        ),
        (
            "cache",
            serde_json::json!({"bootstrap": {"fromBackup": {"name": "base"}}}),
        ),
    ] {
        let refused = Api::<RedisInstance>::namespaced(env.client.clone(), &env.ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": patch })),
            )
            .await
            .expect_err("spec.bootstrap changed");
        assert!(
            refused
                .to_string()
                .contains("set when an instance is created"),
            "{refused}"
        );
    }
}

/// The archive under `prefix`: its timelines, and for each the frames (arrival time, bytes) of its segments in
/// order.
async fn archived(
    bucket: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> Vec<(archive::Timeline, Vec<(i64, Vec<u8>)>)> {
    use futures::TryStreamExt;
    let root = object_store::path::Path::from(format!("{prefix}/archive"));
    let keys: Vec<String> = bucket
        .list(Some(&root))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for (timeline, listed) in archive::parse_listing(prefix, keys.iter().map(String::as_str)) {
        let mut frames = Vec::new();
        for segment in &listed.segments {
            let key = timeline.segment_key(prefix, segment);
            let compressed = bucket
                .get(&object_store::path::Path::from(key.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let mut data = Vec::new();
            async_compression::tokio::bufread::ZstdDecoder::new(&compressed[..])
                .read_to_end(&mut data)
                .await
                .unwrap();
            let (bytes, ends) = archive::decode_frames(&data).unwrap();
            let mut from = 0;
            for (end, at) in ends {
                frames.push((at, bytes[from..end].to_vec()));
                from = end;
            }
        }
        out.push((timeline, frames));
    }
    out
}

/// When the archive received the frame holding `needle`, once it holds it.
async fn archived_at(
    bucket: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &str,
    needle: &[u8],
) -> i64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        for (_, frames) in archived(bucket, prefix).await {
            if let Some((at, _)) = frames
                .iter()
                .find(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
            {
                return *at;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the archive never held {}",
            String::from_utf8_lossy(needle)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sets `keys` (value: the key) on the primary of `cache` and waits until its replica holds them.
async fn write_confirmed(env: &TestEnv, keys: &[String]) {
    let ip = pod_ip(&labelled(env, "cache", "primary").await[0]);
    let password = password_for(&ip).await.expect("cache-auth");
    let mut connection = redis::Client::open(format!("redis://:{password}@{ip}:6379"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.set(key, key).ignore();
    }
    pipe.query_async::<()>(&mut connection).await.unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(acked, 1, "the replica did not acknowledge");
}

/// `DBSIZE` of the pod labelled primary of instance `name` (the only pod of a restored one).
async fn dbsize(env: &TestEnv, name: &str) -> u64 {
    let pods = env.pods_of(name).await;
    let pod = pods
        .iter()
        .find(|p| p.labels().get(ROLE_LABEL).map(String::as_str) == Some("primary"))
        .unwrap_or_else(|| panic!("no primary of {name}"));
    let password = secret_value(&env.client, &env.ns, &format!("{name}-auth"), "password")
        .await
        .expect("auth Secret");
    let mut connection = redis::Client::open(format!("redis://:{password}@{}:6379", pod_ip(pod)))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// The values of `keys` on the (only) pod of instance `name`.
async fn values_on(env: &TestEnv, name: &str, keys: &[String]) -> Vec<Option<String>> {
    let ip = pod_ip(&env.pods_of(name).await[0]);
    let password = secret_value(&env.client, &env.ns, &format!("{name}-auth"), "password")
        .await
        .expect("auth Secret");
    let mut connection = redis::Client::open(format!("redis://:{password}@{ip}:6379"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("MGET")
        .arg(keys)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// With `spec.backup.archive`, the operator archives every write as it is replicated, and the archive continues
/// across a failover in the same timeline (the promoted replica continues the history). An instance created with
/// `spec.bootstrap.fromArchive` and a target time holds every write the archive received up to it and none
/// after; without a target, every confirmed write.
#[tokio::test(flavor = "multi_thread")]
async fn an_archived_instance_is_restored_to_a_point_in_time_across_a_failover() {
    let Some((env, target, client)) = with_bucket(
        "pitr",
        Some(ArchiveSpec {
            segment_seconds: 1,
            new_base_hours: 24,
            retention_days: 7,
        }),
    )
    .await
    else {
        return;
    };
    let prefix = format!("{}/cache", env.ns);
    let mut s = spec(2);
    s.backup = Some(target.clone());
    s.replication.failover_delay_seconds = 1;
    env.create("cache", s).await;
    env.wait_running("cache").await;
    wait_converged(&env, "cache", 2).await;

    // Phase A: a writer, then keys a0.. and the marker.
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 100).await;
    let (confirmed_a, _) = writer.finish().await;
    let keys_a: Vec<String> = (0..500).map(|n| format!("a{n}")).collect();
    write_confirmed(&env, &keys_a).await;
    write_confirmed(&env, &["marker-a".to_string()]).await;
    let keys_at_a = dbsize(&env, "cache").await;
    let at_a = archived_at(&client, &prefix, b"marker-a").await;

    // Phase B, across a failover: the writer goes on while the primary is killed.
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 50).await;
    let old = kill_primary_server(&env).await;
    env.wait_status("cache", "failed over", move |s| {
        s.current_primary.as_ref().is_some_and(|p| *p != old) && converged(s, 2)
    })
    .await;
    wait_writes(&writer, 50).await;
    let (confirmed_b, _) = writer.finish().await;
    let keys_b: Vec<String> = (0..500).map(|n| format!("b{n}")).collect();
    write_confirmed(&env, &keys_b).await;
    write_confirmed(&env, &["marker-b".to_string()]).await;
    let at_b = archived_at(&client, &prefix, b"marker-b").await;
    assert!(at_b > at_a);
    let timelines = archived(&client, &prefix).await;
    assert_eq!(
        timelines.len(),
        1,
        "the archive forked: {:?}",
        timelines.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
    let status = Api::<RedisInstance>::namespaced(env.client.clone(), &env.ns)
        .get("cache")
        .await
        .unwrap()
        .status
        .unwrap();
    let archive_status = status
        .backup
        .and_then(|b| b.archive)
        .expect("status.backup.archive");
    assert_eq!(
        archive_status.timeline,
        format!("{}-{}", timelines[0].0.replid, timelines[0].0.offset)
    );

    // To the time of marker-a: phase A and nothing of phase B.
    let from = |target_time: Option<String>| {
        let mut s = spec(1);
        s.backup = Some(BackupSpec {
            archive: None,
            ..target.clone()
        });
        s.bootstrap = Some(BootstrapSpec {
            from_backup: None,
            from_archive: Some(FromArchive {
                prefix: prefix.clone(),
                target_time,
            }),
        });
        s
    };
    let at = k8s_openapi::jiff::Timestamp::from_millisecond(at_a)
        .unwrap()
        .to_string();
    env.create("at-a", from(Some(at.clone()))).await;
    let restored = env.wait_running("at-a").await.status.unwrap();
    let record = restored.restore.expect("status.restore");
    eprintln!("restored to {at}: {record:?}");
    assert_eq!(record.target_time.as_deref(), Some(at.as_str()));
    assert!(record.restored_up_to.is_some());
    let a_values = values_on(&env, "at-a", &keys_a).await;
    assert!(a_values
        .iter()
        .zip(&keys_a)
        .all(|(v, k)| v.as_deref() == Some(k.as_str())));
    // Exactly the keys the source held at the target time.
    assert_eq!(dbsize(&env, "at-a").await, keys_at_a);
    let marker = values_on(&env, "at-a", &["marker-a".into(), "marker-b".into()]).await;
    assert_eq!(marker, vec![Some("marker-a".to_string()), None]);
    let b_values = values_on(&env, "at-a", &keys_b).await;
    assert!(
        b_values.iter().all(Option::is_none),
        "a write of after the target was restored"
    );
    let ks: Vec<String> = confirmed_a.iter().map(|n| format!("k{n}")).collect();
    let k_values = values_on(&env, "at-a", &ks).await;
    assert!(
        k_values.iter().all(Option::is_some),
        "a confirmed write of before the target is missing"
    );

    // Without a target: every confirmed write.
    env.create("latest", from(None)).await;
    env.wait_running("latest").await;
    let all: Vec<String> = keys_a
        .iter()
        .chain(&keys_b)
        .cloned()
        .chain(["marker-a".to_string(), "marker-b".to_string()])
        .chain(
            confirmed_a
                .iter()
                .chain(&confirmed_b)
                .map(|n| format!("k{n}")),
        )
        .collect();
    let values = values_on(&env, "latest", &all).await;
    let missing: Vec<&String> = all
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty(),
        "{} confirmed writes missing: {missing:?}",
        missing.len()
    );
}

/// A TLS front of the plain-text endpoint `upstream` (`host:port`) on 127.0.0.1, serving `cert` and `key` (PEM):
/// an S3 endpoint whose certificate a private CA signed. Returns its port; it serves until the test ends.
async fn tls_front(upstream: String, cert: &str, key: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

/// An endpoint whose certificate a private CA signed: a backup to it fails until `spec.backup.s3.caSecret` names
/// a Secret with that CA, then completes (the object is in the bucket).
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_signed_by_a_private_ca_is_trusted_through_ca_secret() {
    let Some((env, mut target, client)) = with_bucket("s3-ca", None).await else {
        return;
    };
    let dir = crate::tls::scratch("s3-ca");
    crate::tls::make_ca(&dir);
    let (cert, key) = crate::tls::issue_for(&dir, "9", "IP:127.0.0.1");
    let upstream = target
        .s3
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let port = tls_front(upstream, &cert, &key).await;
    target.s3.endpoint = format!("https://127.0.0.1:{port}");
    let mut s = spec(1);
    s.backup = Some(target.clone());
    env.create("cache", s).await;
    env.wait_running("cache").await;
    let refused = take_backup(&env, "untrusted", "cache").await;
    assert_eq!(
        (refused.phase.as_str(), refused.reason.as_str()),
        ("Failed", "BackupFailed"),
        "{refused:?}"
    );
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s3-ca".into()),
                    ..Default::default()
                },
                data: Some([(store::CA_KEY.to_string(), ByteString(ca.into_bytes()))].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let generation = env
        .patch_spec(
            "cache",
            serde_json::json!({"backup": {"s3": {"caSecret": "s3-ca"}}}),
        )
        .await;
    // A backup reads its instance's settings from the operator's cache: taken before the operator has seen the
    // patch, it would still use the old ones (CI once saw that: the untrusted handshake again).
    env.wait_status("cache", "the caSecret seen", |s| {
        s.observed_generation >= Some(generation)
    })
    .await;
    let trusted = take_backup(&env, "trusted", "cache").await;
    assert_eq!(trusted.phase, "Completed", "{trusted:?}");
    let (_, key) = redis_operator::backup::pass::object_parts(&trusted.object).unwrap();
    let stored = client
        .head(&object_store::path::Path::from(key))
        .await
        .unwrap();
    assert_eq!(Some(stored.size as i64), trusted.size);
}

/// A Valkey instance's backup (read as a replica reads: Valkey 9.1 streams RDB 11 to a replica that does not say it
/// is Valkey, though it writes `VALKEY080` to disk): restored into a new Valkey instance with every confirmed
/// write; restoring it into the lab's Redis image (7.0.15, which loads RDB 10 at most) is refused before anything
/// is sent (`RestoreFailed`), the pod left empty.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn a_valkey_backup_restores_into_valkey_and_is_refused_by_redis() {
    let Some((env, target, _)) = with_bucket("valkeybackup", None).await else {
        return;
    };
    let mut s = spec(2);
    s.image = "valkey/valkey:9".into();
    s.backup = Some(target.clone());
    env.create("cache", s).await;
    env.wait_running("cache").await;
    wait_converged(&env, "cache", 2).await;
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 200).await;
    let (confirmed, _) = writer.finish().await;
    let base = take_backup(&env, "base", "cache").await;
    assert_eq!(base.phase, "Completed", "{base:?}");
    let from = Some(BootstrapSpec {
        from_backup: Some(FromBackup {
            name: "base".into(),
        }),
        from_archive: None,
    });

    let mut redis_copy = spec(1);
    redis_copy.image = "redis:7.2".into();
    redis_copy.backup = Some(target.clone());
    redis_copy.bootstrap = from.clone();
    env.create("tored", redis_copy).await;
    let refused = env
        .wait_status("tored", "Failed/RestoreFailed", |s| {
            s.reason == "RestoreFailed"
        })
        .await
        .status
        .unwrap();
    let message = &refused.last_condition_message;
    assert!(
        message.contains("the snapshot's format (RDB 11) is newer than redis 7.0")
            || message.contains("written by Valkey (format VALKEY080)"),
        "{message}"
    );
    let pod = env.pods().get("tored-0").await.unwrap();
    assert_eq!(redis_command(&pod_ip(&pod), &["DBSIZE"]).await, ":0\r\n");

    let mut valkey_copy = spec(2);
    valkey_copy.image = "valkey/valkey:9".into();
    valkey_copy.backup = Some(target);
    valkey_copy.bootstrap = from;
    env.create("tovalkey", valkey_copy).await;
    let status = wait_converged(&env, "tovalkey", 2).await;
    assert_eq!(
        status.restore.as_ref().map(|r| r.backup.as_str()),
        Some("base"),
        "{status:#?}"
    );
    let primary = env
        .pods()
        .get(status.current_primary.as_deref().unwrap())
        .await
        .unwrap();
    let ip = pod_ip(&primary);
    let password = password_for(&ip).await.expect("tovalkey-auth");
    let mut copy = redis::Client::open(format!("redis://:{password}@{ip}:6379"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = confirmed.iter().map(|n| format!("k{n}")).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut copy)
        .await
        .unwrap();
    let expected: Vec<Option<String>> = confirmed.iter().map(|n| Some(n.to_string())).collect();
    assert_eq!(
        values, expected,
        "every confirmed write is in the Valkey copy"
    );
}

/// `INFO replication` of the server at `ip`, or `None` while it does not answer (not started yet).
async fn info_replication(ip: &str, password: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://:{password}@{ip}:6379")).ok()?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut connection)
        .await
        .ok()
}

/// A backup larger than the new instance's claims is refused before anything is sent. The operator is killed
/// (`SIGKILL`) while it streams the backup into a new instance's pod, at the moment the pod's server reports the
/// transfer in progress. Nothing serves meanwhile; the next operator seeds the pod again
/// from the start, and the instance then holds exactly the backup's keys.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_too_large_for_its_claims_is_refused_and_one_killed_mid_way_seeds_again() {
    let Some((mut env, target, _)) = with_bucket("restore-kill", None).await else {
        return;
    };
    let mut s = spec(1);
    s.backup = Some(target.clone());
    env.create("cache", s).await;
    env.wait_running("cache").await;
    // About 80 MB of values that compress poorly (hex of a xorshift): the transfer lasts long enough to be caught.
    let ip = pod_ip(&labelled(&env, "cache", "primary").await[0]);
    let password = password_for(&ip).await.expect("cache-auth");
    let mut source = redis::Client::open(format!("redis://:{password}@{ip}:6379"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // 1 MB pipelines: the client's default 500 ms reply timeout is too short on a busy CI machine.
    source.set_response_timeout(Duration::from_secs(60));
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for chunk in 0..80 {
        let mut pipe = redis::pipe();
        for n in 0..1000 {
            let mut value = String::with_capacity(1024);
            while value.len() < 1000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                value.push_str(&format!("{state:016x}"));
            }
            pipe.set(format!("bulk{}", chunk * 1000 + n), value)
                .ignore();
        }
        pipe.query_async::<()>(&mut source).await.unwrap();
    }
    let source_keys: u64 = redis::cmd("DBSIZE").query_async(&mut source).await.unwrap();
    let base = take_backup(&env, "base", "cache").await;
    assert_eq!(base.phase, "Completed", "{base:?}");
    redis::cmd("SET")
        .arg("later")
        .arg("1")
        .query_async::<()>(&mut source)
        .await
        .unwrap();

    let mut copy = spec(1);
    copy.backup = Some(target.clone());
    copy.bootstrap = Some(BootstrapSpec {
        from_backup: Some(FromBackup {
            name: "base".into(),
        }),
        from_archive: None,
    });
    // Onto claims smaller than the snapshot: refused before a byte is sent, with the size it needs.
    let mut small = copy.clone();
    small.storage = Some(redis_operator::api::StorageSpec {
        size: "16Mi".into(),
        storage_class_name: None,
        when_deleted: redis_operator::api::ClaimDeletePolicy::Delete,
    });
    env.create("small", small).await;
    let refused = env
        .wait_status("small", "Failed/RestoreFailed", |s| {
            s.reason == "RestoreFailed"
        })
        .await
        .status
        .unwrap();
    assert!(
        refused
            .last_condition_message
            .contains("spec.storage.size 16Mi")
            && refused.last_condition_message.contains("nothing was sent"),
        "{}",
        refused.last_condition_message
    );
    assert!(refused.restore.is_none() && refused.current_primary.is_none());
    env.delete_and_wait_gone("small").await;
    env.create("copy", copy).await;
    // The worst moment: the pod's server is receiving the snapshot from the operator.
    let deadline = std::time::Instant::now() + WAIT;
    let copy_password = loop {
        if let Some(password) = secret_value(&env.client, &env.ns, "copy-auth", "password").await {
            break password;
        }
        assert!(std::time::Instant::now() < deadline, "no copy-auth");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let copy_ip = loop {
        if let Some(pod) = env.pods_of("copy").await.into_iter().next() {
            if pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some()
            {
                break pod_ip(&pod);
            }
        }
        assert!(std::time::Instant::now() < deadline, "no copy pod");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        let info = info_replication(&copy_ip, &copy_password)
            .await
            .unwrap_or_default();
        if info.contains("master_sync_in_progress:1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy's pod never received the snapshot: {info}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.operator.kill();
    let copy_status = env
        .instances()
        .get("copy")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert_ne!(copy_status.status, Phase::Running, "{copy_status:?}");
    assert!(copy_status.restore.is_none(), "{copy_status:?}");
    let pod = env.pods_of("copy").await.remove(0);
    assert!(
        pod.labels().get(ROLE_LABEL).is_none(),
        "the half-seeded pod is labelled"
    );

    env.operator = Operator::start(env.info, &env.ns, &[]);
    env.wait_running("copy").await;
    let status = env.instances().get("copy").await.unwrap().status.unwrap();
    let restore = status.restore.expect("status.restore");
    assert_eq!(restore.backup, "base");
    assert_eq!(restore.replication_id, base.replication_id);
    assert_eq!(dbsize(&env, "copy").await, source_keys);
    assert_eq!(
        values_on(&env, "copy", &["later".into(), "bulk79999".into()])
            .await
            .into_iter()
            .map(|v| v.is_some())
            .collect::<Vec<_>>(),
        [false, true],
        "exactly the backup's keys"
    );
}
