//! The instance reconcile's backup pass: `status.backup` (the newest completed backup, the next run), and the
//! scheduled backups ([`super::schedule::plan`]): create the run that is due, delete what retention drops (its
//! object first). Nothing is written while nothing is due.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::{info, warn};

use super::schedule::{overdue, plan, Retention, Schedule, Scheduled};
use crate::api::{InstanceBackupStatus, RedisBackup, RedisBackupSpec, RedisInstance};
use crate::names::{INSTANCE_LABEL, SCHEDULED_FOR_ANNOTATION};
use crate::reconciler::Context;

/// What the pass found: the status to record and how soon to look again.
pub struct BackupPass {
    /// `status.backup` (`None` without `spec.backup`).
    pub status: Option<InstanceBackupStatus>,
    /// Until the schedule's next run.
    pub requeue: Option<Duration>,
}

/// The instance's backups, from the cache.
fn backups_of(ctx: &Context, ri: &RedisInstance) -> Vec<Arc<RedisBackup>> {
    let (name, namespace) = (ri.name_any(), ri.namespace());
    ctx.stores
        .backups
        .state()
        .into_iter()
        .filter(|b| b.namespace() == namespace && b.spec.instance == name)
        .collect()
}

/// Runs the pass at `now`, and sets the instance's `redis_operator_backup_overdue`.
pub async fn run(
    ri: &RedisInstance,
    ctx: &Context,
    now: k8s_openapi::jiff::Timestamp,
) -> BackupPass {
    let (mut pass, overdue) = scheduled_pass(ri, ctx, now).await;
    let previous = ri
        .status
        .as_ref()
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.archive.as_ref());
    let archive = super::archiver::pass(ri, ctx, previous).await;
    if let Some(status) = &mut pass.status {
        status.archive = archive;
    }
    ctx.metrics
        .set_backup_overdue(&ri.namespace().unwrap_or_default(), &ri.name_any(), overdue);
    pass
}

/// The pass, and whether backups are overdue (`None` without a usable schedule).
async fn scheduled_pass(
    ri: &RedisInstance,
    ctx: &Context,
    now: k8s_openapi::jiff::Timestamp,
) -> (BackupPass, Option<bool>) {
    let Some(spec) = &ri.spec.backup else {
        let none = BackupPass {
            status: None,
            requeue: None,
        };
        return (none, None);
    };
    let backups = backups_of(ctx, ri);
    let newest = backups
        .iter()
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            (status.phase == super::controller::COMPLETED)
                .then(|| Some((status.completed_at.clone()?, b.name_any())))
                .flatten()
        })
        .max();
    let mut status = InstanceBackupStatus {
        last_completed: newest.as_ref().map(|(_, name)| name.clone()),
        last_completed_at: newest.map(|(at, _)| at),
        ..Default::default()
    };
    let Some(text) = &spec.schedule else {
        let pass = BackupPass {
            status: Some(status),
            requeue: None,
        };
        return (pass, None);
    };
    let schedule = match Schedule::parse(text) {
        Ok(schedule) => schedule,
        Err(bad) => {
            status.message = bad.to_string();
            let pass = BackupPass {
                status: Some(status),
                requeue: None,
            };
            return (pass, None);
        }
    };
    let scheduled: Vec<Scheduled> = backups
        .iter()
        .filter_map(|b| {
            Some(Scheduled {
                name: b.name_any(),
                scheduled_for: b
                    .annotations()
                    .get(SCHEDULED_FOR_ANNOTATION)?
                    .parse()
                    .ok()?,
                phase: b
                    .status
                    .as_ref()
                    .map(|s| s.phase.clone())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let retention = Retention {
        keep: u32::try_from(spec.keep).unwrap_or(0),
        max_age: spec
            .max_age_days
            .and_then(|days| u64::try_from(days).ok())
            .map(|days| Duration::from_secs(days * 86_400)),
    };
    let now_s = now.as_second();
    let planned = plan(&schedule, retention, &scheduled, now_s);
    if let Some(at) = planned.create {
        create(ri, ctx, at).await;
    }
    if !planned.delete.is_empty() {
        let doomed: Vec<&Arc<RedisBackup>> = backups
            .iter()
            .filter(|b| planned.delete.contains(&b.name_any()))
            .collect();
        drop_backups(ri, ctx, &doomed).await;
    }
    status.next_scheduled_at = planned.next.map(|at| {
        k8s_openapi::jiff::Timestamp::from_second(at)
            .map(crate::status::rfc3339)
            .unwrap_or_default()
    });
    let newest_completed = status
        .last_completed_at
        .as_deref()
        .and_then(|at| at.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|at| at.as_second());
    let first_scheduled = scheduled.iter().map(|b| b.scheduled_for).min();
    let late = overdue(&schedule, now_s, newest_completed, first_scheduled);
    let pass = BackupPass {
        status: Some(status),
        requeue: planned
            .next
            .map(|at| Duration::from_secs(u64::try_from(at - now_s).unwrap_or(0) + 1)),
    };
    (pass, Some(late))
}

/// Creates the scheduled backup of time `at` (an existing one of that name is left as it is).
async fn create(ri: &RedisInstance, ctx: &Context, at: i64) {
    let name = ri.name_any();
    let stamp = k8s_openapi::jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%Y%m%d-%H%M").to_string())
        .unwrap_or_else(|_| at.to_string());
    let mut backup = RedisBackup::new(
        &format!("{name}-{stamp}"),
        RedisBackupSpec {
            instance: name.clone(),
        },
    );
    backup.metadata.labels = Some([(INSTANCE_LABEL.to_string(), name.clone())].into());
    backup.metadata.annotations =
        Some([(SCHEDULED_FOR_ANNOTATION.to_string(), at.to_string())].into());
    backup.metadata.owner_references = ri.controller_owner_ref(&()).map(|owner| vec![owner]);
    let api: Api<RedisBackup> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &backup).await {
        Ok(_) => info!(backup = %backup.name_any(), "scheduled backup created"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(error) => {
            ctx.metrics.record_api_error("create", &error);
            warn!(%error, "could not create the scheduled backup");
        }
    }
}

/// Deletes the scheduled backups retention drops: each one's object first, then the `RedisBackup`. One whose
/// object cannot be deleted is kept (and tried again at the next pass).
async fn drop_backups(ri: &RedisInstance, ctx: &Context, doomed: &[&Arc<RedisBackup>]) {
    let bucket = match super::controller::bucket_for(ctx, ri).await {
        Ok(bucket) => bucket,
        Err(refused) => {
            warn!(message = %refused.message, "retention: the bucket cannot be reached; nothing deleted");
            return;
        }
    };
    let api: Api<RedisBackup> =
        Api::namespaced(ctx.client.clone(), &ri.namespace().unwrap_or_default());
    for backup in doomed {
        let object = backup
            .status
            .as_ref()
            .map(|s| s.object.as_str())
            .unwrap_or_default();
        if let Some(key) = object_key(object) {
            if let Err(error) = delete_object(&bucket.0, key).await {
                warn!(backup = %backup.name_any(), %error, "retention: the object was not deleted; the backup is kept");
                continue;
            }
        }
        match api
            .delete(&backup.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => info!(backup = %backup.name_any(), "retention: backup deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => {
                ctx.metrics.record_api_error("delete", &error);
                warn!(%error, "retention: could not delete the backup");
            }
        }
    }
}

/// The key of `s3://BUCKET/KEY`.
fn object_key(object: &str) -> Option<&str> {
    object_parts(object).map(|(_, key)| key)
}

/// The bucket and the key of `s3://BUCKET/KEY`.
pub fn object_parts(object: &str) -> Option<(&str, &str)> {
    object
        .strip_prefix("s3://")?
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
}

async fn delete_object(bucket: &Arc<dyn ObjectStore>, key: &str) -> object_store::Result<()> {
    match bucket.delete(&object_store::path::Path::from(key)).await {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_of_an_object_is_what_follows_its_bucket() {
        assert_eq!(
            object_key("s3://b/ns/cache/base/x.rdb.zst"),
            Some("ns/cache/base/x.rdb.zst")
        );
        assert_eq!(object_key("b/x"), None);
        assert_eq!(object_key(""), None);
    }
}
