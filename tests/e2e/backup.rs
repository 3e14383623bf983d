//! Backups to the local cluster's S3-compatible server (`devcluster/cluster.sh` runs it; its endpoint and
//! credentials are in `DEVCLUSTER_DIR/s3/env`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use object_store::ObjectStoreExt;
use redis_operator::api::{BackupSpec, RedisBackup, RedisBackupSpec, RedisBackupStatus, S3Target};
use redis_operator::backup::store::{self, Credentials};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::harness::*;
use crate::replication::{labelled, wait_converged, wait_writes, Writer};

/// The local S3 server: endpoint, access key id, secret; `None` against an existing cluster.
fn s3() -> Option<(String, String, String)> {
    if std::env::var_os("REDIS_OPERATOR_E2E_KUBECONFIG").is_some() {
        return None;
    }
    // The local cluster is started (once) before its S3 server's keys are read.
    cluster();
    let file = devcluster_dir().join("s3/env");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "the local cluster has no S3 server ({}: {e})",
            file.display()
        )
    });
    let vars: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let var = |name: &str| {
        vars.get(name)
            .map(|v| v.to_string())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    Some((
        var("DEVCLUSTER_S3_ENDPOINT"),
        var("DEVCLUSTER_S3_ACCESS_KEY_ID"),
        var("DEVCLUSTER_S3_SECRET_ACCESS_KEY"),
    ))
}

/// Creates bucket `bucket` (curl signs the request).
fn create_bucket(endpoint: &str, key: &str, secret: &str, bucket: &str) {
    run_ok(
        std::process::Command::new("curl").args([
            "-sSf",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &format!("{key}:{secret}"),
            "-X",
            "PUT",
            &format!("{endpoint}/{bucket}"),
        ]),
        None,
    );
}

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
    };
    s.backup = Some(BackupSpec {
        s3: target.clone(),
        schedule: None,
        keep: 7,
        max_age_days: None,
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
    assert_eq!(Some(object.len() as u64), status.size);
    let mut rdb = Vec::new();
    async_compression::tokio::bufread::ZstdDecoder::new(&object[..])
        .read_to_end(&mut rdb)
        .await
        .unwrap();
    assert_eq!(Some(rdb.len() as u64), status.data_size);
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
    };
    let mut s = spec(1);
    s.backup = Some(BackupSpec {
        s3: target.clone(),
        schedule: Some("every minute".into()),
        keep: 1,
        max_age_days: None,
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
