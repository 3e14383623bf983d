//! The `RedisBackup` controller: a new backup is taken once, from a replica of its instance when there is one
//! (the primary's latency does not move), else from the primary. The status records `Running` before the data is
//! read, then `Completed` with what was written or `Failed` with why; a finished backup is never touched again.
//! A backup found `Running` that this process is not taking (the operator restarted meanwhile) is taken again,
//! to the same object.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::store::{self, Credentials, Upload};
use crate::api::{status_integer, BackupSpec, RedisBackup, RedisBackupStatus, RedisInstance};
use crate::converge::topology::endpoint;
use crate::names::ROLE_LABEL;
use crate::reconciler::Context;

/// The phases of a backup.
pub const RUNNING: &str = "Running";
/// The phases of a backup.
pub const COMPLETED: &str = "Completed";
/// The phases of a backup.
pub const FAILED: &str = "Failed";

/// The reasons a backup fails with (`status.reason`).
pub const REASONS: [&str; 6] = [
    INSTANCE_NOT_FOUND,
    NO_BACKUP_TARGET,
    CREDENTIALS_MISSING,
    CREDENTIALS_UNREADABLE,
    BUCKET_SETTINGS_INVALID,
    BACKUP_FAILED,
];
const INSTANCE_NOT_FOUND: &str = "InstanceNotFound";
const NO_BACKUP_TARGET: &str = "NoBackupTarget";
const CREDENTIALS_MISSING: &str = "CredentialsMissing";
const CREDENTIALS_UNREADABLE: &str = "CredentialsUnreadable";
const BUCKET_SETTINGS_INVALID: &str = "BucketSettingsInvalid";
const BACKUP_FAILED: &str = "BackupFailed";
/// The reasons of the Events on a `RedisBackup`.
pub const EVENT_REASONS: [&str; 2] = [BACKUP_COMPLETED, BACKUP_FAILED];
const BACKUP_COMPLETED: &str = "BackupCompleted";

/// How soon a backup waiting for its instance looks again.
const WAIT_AGAIN: Duration = Duration::from_secs(5);

/// The backup controller's state: the backups this process is taking.
#[derive(Default)]
pub struct Backups {
    running: Mutex<HashSet<String>>,
}

/// The shared state of the backup reconciles.
pub struct BackupContext {
    /// The instance controller's context (client, caches, the operator's access to each instance's servers).
    pub instances: Arc<Context>,
    /// The backups under way.
    pub backups: Backups,
}

/// Why a backup cannot be taken (recorded as `Failed` with this reason).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The reason.
    pub reason: &'static str,
    /// What is wrong, in words.
    pub message: String,
}

fn refusal(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// Reconciles one `RedisBackup`.
pub async fn reconcile(
    backup: Arc<RedisBackup>,
    ctx: Arc<BackupContext>,
) -> Result<Action, kube::Error> {
    let phase = backup
        .status
        .as_ref()
        .map(|s| s.phase.as_str())
        .unwrap_or_default();
    if phase == COMPLETED || phase == FAILED {
        return Ok(Action::await_change());
    }
    let uid = backup.uid().unwrap_or_default();
    if ctx.backups.running.lock().is_ok_and(|r| r.contains(&uid)) {
        return Ok(Action::await_change());
    }
    if !ctx.instances.leadership.is_held() {
        return Ok(Action::requeue(WAIT_AGAIN));
    }
    let namespace = backup.namespace().unwrap_or_default();
    let mut instance = ctx
        .instances
        .stores
        .instances
        .get(&ObjectRef::new(&backup.spec.instance).within(&namespace));
    if instance.as_ref().is_none_or(|ri| ri.spec.backup.is_none()) {
        // A refusal is recorded for good: it must not come from a cache that has not seen the instance, or its
        // `spec.backup`, yet (a backup created right after them). The API server is asked.
        let api: Api<RedisInstance> = Api::namespaced(ctx.instances.client.clone(), &namespace);
        match api.get_opt(&backup.spec.instance).await {
            Ok(fresh) => instance = fresh.map(Arc::new),
            Err(error) => {
                warn!(%error, "reading the backup's instance");
                return Ok(Action::requeue(WAIT_AGAIN));
            }
        }
    }
    let prepared = match instance {
        None => Err(refusal(
            INSTANCE_NOT_FOUND,
            format!(
                "RedisInstance {} does not exist in namespace {namespace}",
                backup.spec.instance
            ),
        )),
        Some(ri) => prepare(&ctx.instances, &ri, &backup).await,
    };
    let job = match prepared {
        Ok(Some(job)) => job,
        // The instance has no primary or no access yet: look again.
        Ok(None) => return Ok(Action::requeue(WAIT_AGAIN)),
        Err(refused) => {
            let base = backup.status.clone().unwrap_or_default();
            finish(&ctx.instances, &backup, failed(base, &refused)).await?;
            return Ok(Action::await_change());
        }
    };
    let running = RedisBackupStatus {
        phase: RUNNING.into(),
        message: format!("reading the data of {}", job.pod),
        started_at: Some(now()),
        pod: job.pod.clone(),
        ..Default::default()
    };
    write_status(&ctx.instances, &backup, &running).await?;
    if let Ok(mut r) = ctx.backups.running.lock() {
        r.insert(uid.clone());
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let outcome = super::take(
            &job.host,
            job.port,
            &job.access,
            Upload::start(job.bucket, &job.key),
        )
        .await;
        let status = match outcome {
            Ok(taken) => {
                info!(backup = %backup.name_any(), pod = %job.pod, size = taken.uploaded.size, "backup completed");
                RedisBackupStatus {
                    phase: COMPLETED.into(),
                    message: format!(
                        "{} bytes of data from {} stored as {} bytes",
                        taken.uploaded.data_size, job.pod, taken.uploaded.size
                    ),
                    completed_at: Some(now()),
                    object: format!("s3://{}/{}", job.bucket_name, job.key),
                    replication_id: taken.resync.replid,
                    replication_offset: Some(status_integer(taken.resync.offset)),
                    size: Some(status_integer(taken.uploaded.size)),
                    data_size: Some(status_integer(taken.uploaded.data_size)),
                    sha256: taken.uploaded.sha256,
                    ..running
                }
            }
            Err(error) => {
                warn!(backup = %backup.name_any(), %error, "backup failed");
                RedisBackupStatus {
                    completed_at: Some(now()),
                    ..failed(
                        running,
                        &refusal(BACKUP_FAILED, format!("{error}; nothing was kept")),
                    )
                }
            }
        };
        if let Err(error) = finish(&ctx.instances, &backup, status).await {
            warn!(backup = %backup.name_any(), %error, "could not record the backup's outcome");
        }
        if let Ok(mut r) = ctx.backups.running.lock() {
            r.remove(&uid);
        }
    });
    Ok(Action::await_change())
}

/// A backup's failures are retried after a while (an API error; a refused backup is recorded, not retried).
pub fn error_policy(_: Arc<RedisBackup>, error: &kube::Error, _: Arc<BackupContext>) -> Action {
    warn!(%error, "backup reconcile failed");
    Action::requeue(WAIT_AGAIN)
}

/// What one backup reads and writes.
struct Job {
    pod: String,
    host: String,
    port: u16,
    access: crate::redis::Access,
    bucket: Arc<dyn object_store::ObjectStore>,
    bucket_name: String,
    key: String,
}

/// The source pod, the access to it and the bucket; `Ok(None)` when the instance is not ready for it yet.
async fn prepare(
    ctx: &Context,
    ri: &RedisInstance,
    backup: &RedisBackup,
) -> Result<Option<Job>, Refusal> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let (bucket, target) = bucket_for(ctx, ri).await?;
    let Some(access) = ctx.last_access(ri) else {
        return Ok(None);
    };
    // A replica in sync when there is one (the primary's latency does not move), else the primary.
    let pods = ctx.instance_pods(&name, &namespace);
    let role =
        |pod: &Pod, wanted: &str| pod.labels().get(ROLE_LABEL).map(String::as_str) == Some(wanted);
    let source = pods
        .iter()
        .find(|p| role(p, "replica"))
        .or_else(|| pods.iter().find(|p| role(p, "primary")));
    let Some((pod, at)) = source.and_then(|p| Some((p.name_any(), endpoint(p)?))) else {
        return Ok(None);
    };
    let prefix = target
        .s3
        .prefix
        .clone()
        .unwrap_or_else(|| format!("{namespace}/{name}"));
    let uid = backup.uid().unwrap_or_default();
    let key = format!(
        "{}/base/{}-{}.rdb.zst",
        prefix.trim_end_matches('/'),
        backup.name_any(),
        uid.get(..8).unwrap_or(&uid)
    );
    Ok(Some(Job {
        pod,
        host: at.host,
        port: at.port,
        access,
        bucket,
        bucket_name: target.s3.bucket.clone(),
        key,
    }))
}

/// A client of the bucket `ri`'s `spec.backup` names, with its credentials read from their Secret now, and
/// that `spec.backup`.
pub async fn bucket_for<'a>(
    ctx: &Context,
    ri: &'a RedisInstance,
) -> Result<(Arc<dyn object_store::ObjectStore>, &'a BackupSpec), Refusal> {
    let (credentials, target) = credentials_for(ctx, ri).await?;
    let bucket = store::bucket(&target.s3, &credentials)
        .map_err(|e| refusal(BUCKET_SETTINGS_INVALID, e.to_string()))?;
    Ok((bucket, target))
}

/// A client of the bucket `name` at the endpoint of `ri`'s `spec.backup`, with its credentials (a restore reads
/// the bucket its backup names).
pub async fn bucket_named(
    ctx: &Context,
    ri: &RedisInstance,
    name: &str,
) -> Result<Arc<dyn object_store::ObjectStore>, Refusal> {
    let (credentials, target) = credentials_for(ctx, ri).await?;
    let target = crate::api::S3Target {
        bucket: name.to_string(),
        ..target.s3.clone()
    };
    store::bucket(&target, &credentials)
        .map_err(|e| refusal(BUCKET_SETTINGS_INVALID, e.to_string()))
}

/// The credentials of `ri`'s `spec.backup`, read from their Secret now, and that `spec.backup`.
async fn credentials_for<'a>(
    ctx: &Context,
    ri: &'a RedisInstance,
) -> Result<(Credentials, &'a BackupSpec), Refusal> {
    let (name, namespace) = (ri.name_any(), ri.namespace().unwrap_or_default());
    let Some(target) = &ri.spec.backup else {
        return Err(refusal(
            NO_BACKUP_TARGET,
            format!("RedisInstance {name} has no spec.backup: set spec.backup.s3 to say where backups go"),
        ));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets
        .get_opt(&target.s3.credentials_secret)
        .await
        .map_err(|e| {
            refusal(
                CREDENTIALS_UNREADABLE,
                format!("reading Secret {}: {e}", target.s3.credentials_secret),
            )
        })?
        .ok_or_else(|| {
            refusal(
                CREDENTIALS_MISSING,
                format!(
                    "Secret {} (spec.backup.s3.credentialsSecret) does not exist",
                    target.s3.credentials_secret
                ),
            )
        })?;
    let value = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                refusal(
                    CREDENTIALS_MISSING,
                    format!("Secret {} has no key {key}", target.s3.credentials_secret),
                )
            })
    };
    let ca_pem = match &target.s3.ca_secret {
        None => None,
        Some(name) => {
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(|e| {
                    refusal(
                        CREDENTIALS_UNREADABLE,
                        format!("reading Secret {name}: {e}"),
                    )
                })?
                .ok_or_else(|| {
                    refusal(
                        CREDENTIALS_MISSING,
                        format!("Secret {name} (spec.backup.s3.caSecret) does not exist"),
                    )
                })?;
            let ca = secret
                .data
                .as_ref()
                .and_then(|d| d.get(store::CA_KEY))
                .map(|v| v.0.clone())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    refusal(
                        CREDENTIALS_MISSING,
                        format!("Secret {name} has no key {}", store::CA_KEY),
                    )
                })?;
            Some(ca)
        }
    };
    let credentials = Credentials {
        access_key_id: value(store::ACCESS_KEY_ID_KEY)?,
        secret_access_key: value(store::SECRET_ACCESS_KEY_KEY)?,
        ca_pem,
    };
    Ok((credentials, target))
}

fn failed(base: RedisBackupStatus, refused: &Refusal) -> RedisBackupStatus {
    RedisBackupStatus {
        phase: FAILED.into(),
        reason: refused.reason.into(),
        message: refused.message.clone(),
        ..base
    }
}

fn now() -> String {
    crate::status::rfc3339(k8s_openapi::jiff::Timestamp::now())
}

async fn write_status(
    ctx: &Context,
    backup: &RedisBackup,
    status: &RedisBackupStatus,
) -> Result<(), kube::Error> {
    let api: Api<RedisBackup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    api.patch_status(
        &backup.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map(|_| ())
}

/// Records a finished backup and says so in an Event.
async fn finish(
    ctx: &Context,
    backup: &RedisBackup,
    status: RedisBackupStatus,
) -> Result<(), kube::Error> {
    write_status(ctx, backup, &status).await?;
    let (type_, reason) = if status.phase == COMPLETED {
        (EventType::Normal, BACKUP_COMPLETED)
    } else {
        (EventType::Warning, BACKUP_FAILED)
    };
    let note = if status.phase == COMPLETED {
        format!("{}: {}", status.object, status.message)
    } else {
        format!("{}: {}", status.reason, status.message)
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Backup".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &backup.object_ref(&())).await {
        warn!(%error, "could not publish the backup's Event");
    }
    Ok(())
}
