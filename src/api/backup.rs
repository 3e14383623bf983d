//! Backups: where an instance's backups go (`spec.backup` of a `RedisInstance`) and the `RedisBackup` resource,
//! one base backup taken on demand.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an instance's backups go (`spec.backup`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// An S3-compatible bucket.
    pub s3: S3Target,

    /// When backups are taken by themselves: five cron fields in UTC (minute hour day-of-month month
    /// day-of-week), as a CronJob's, e.g. `0 3 * * *`. Each run creates a `RedisBackup` named `NAME-<time>`; a
    /// run missed by more than 5 minutes (the operator was down) is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 128))]
    pub schedule: Option<String>,

    /// How many completed scheduled backups are kept (default 7; the newest is always kept); older ones are
    /// deleted, their objects first. Backups made by hand are never deleted.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 0, max = 1000))]
    pub keep: i32,

    /// Completed scheduled backups older than this many days are deleted too (the newest never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 36500))]
    pub max_age_days: Option<i32>,

    /// Continuous archiving of every write, for point-in-time recovery: the operator follows the replication
    /// stream (from a replica when there is one) and stores it in the bucket under `PREFIX/archive/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSpec>,
}

/// Continuous archiving (`spec.backup.archive`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSpec {
    /// How often the writes received are stored as an object, in seconds (default 60; 0 or 1: every second): at
    /// most about this much of the newest writes is not in the bucket yet. Nothing is stored while nothing is
    /// written.
    #[serde(default = "default_segment_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub segment_seconds: i32,

    /// How old a timeline's base snapshot may get, in hours, before the archive starts a new timeline with a
    /// fresh one (default 24; 0: never). Restores replay from the newest base before their target, so this
    /// bounds how much of the stream a restore replays, and lets retention drop old timelines.
    #[serde(default = "default_new_base_hours")]
    #[schemars(range(min = 0, max = 8760))]
    pub new_base_hours: i32,

    /// Timelines whose newest write is older than this many days are deleted, their objects with them (default 7;
    /// 0: kept forever). The newest timeline is never deleted.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 0, max = 36500))]
    pub retention_days: i32,
}

fn default_new_base_hours() -> i32 {
    24
}

fn default_retention_days() -> i32 {
    7
}

fn default_segment_seconds() -> i32 {
    60
}

fn default_keep() -> i32 {
    7
}

/// What the instance's status says of its backups (`status.backup`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceBackupStatus {
    /// The newest completed `RedisBackup` of the instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_completed: Option<String>,
    /// When it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_completed_at: Option<String>,
    /// The schedule's next run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_scheduled_at: Option<String>,
    /// Why scheduled backups are not taken (an unusable schedule).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Continuous archiving, with `spec.backup.archive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStatus>,
}

/// What the archive holds (`status.backup.archive`). Refreshed by the instance's reconciles after a segment was
/// stored, so never while nothing is written; the metric `redis_operator_archive_caught_up_timestamp_seconds`
/// follows the archive live.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ArchiveStatus {
    /// The timeline archived into: `REPLID-OFFSET`, the full synchronisation it started from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub timeline: String,
    /// When the newest write stored was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_up_to: Option<String>,
    /// Why the archive does not follow the stream right now.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An S3-compatible bucket (`spec.backup.s3`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Target {
    /// The endpoint's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://minio.storage:9000`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: String,

    /// The bucket, which must exist.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,

    /// The prefix of every object of this instance, without a leading slash (default: `NAMESPACE/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = r"^[^/\s][^\s]*$"))]
    pub prefix: Option<String>,

    /// The region signed for (default `us-east-1`, which most S3-compatible servers accept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,

    /// A Secret in the instance's namespace with the keys `accessKeyId` and `secretAccessKey`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,

    /// A Secret in the instance's namespace whose `ca.crt` (PEM) is a CA the endpoint's certificate may be
    /// signed by, trusted besides the system's roots (a private CA of an in-cluster S3 server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_secret: Option<String>,
}

/// How a new instance's data starts (`spec.bootstrap`). Set when the instance is created; it cannot be added,
/// changed or removed afterwards.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.fromBackup) != has(self.fromArchive)",
    "message": "spec.bootstrap takes one of fromBackup and fromArchive"
}]))]
pub struct BootstrapSpec {
    /// Seed the instance from a completed base backup before any pod serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackup>,

    /// Seed the instance from the archive of an instance (`spec.backup.archive`), as of a point in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_archive: Option<FromArchive>,
}

/// The archive a new instance starts from (`spec.bootstrap.fromArchive`): the newest base snapshot taken before
/// the target time, and every write archived after it up to that time.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromArchive {
    /// The prefix the archived instance's objects are under in this instance's `spec.backup.s3` bucket: its
    /// `spec.backup.s3.prefix`, by default `NAMESPACE/NAME`.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^/\s][^\s]*$"))]
    pub prefix: String,

    /// The time to restore to (RFC 3339, e.g. `2026-12-07T07:30:00Z`): writes received by the archive up to it
    /// are restored, later ones are not. Without it, everything archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 20, max = 40))]
    pub target_time: Option<String>,
}

/// The backup a new instance starts from (`spec.bootstrap.fromBackup`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromBackup {
    /// A `Completed` `RedisBackup` of this namespace (of this or of another instance). Its object is read with
    /// the endpoint, region and credentials of this instance's `spec.backup.s3`, from the bucket the backup
    /// names.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where an instance's data came from (`status.restore`), recorded once its first pod holds the backup.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RestoreStatus {
    /// The `RedisBackup` restored (with `fromBackup`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub backup: String,
    /// The archive's prefix restored from (with `fromArchive`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub archive: String,
    /// The time restored to (with `fromArchive.targetTime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    /// When the newest write restored from the archive was received by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_up_to: Option<String>,
    /// The base snapshot's object.
    pub object: String,
    /// The replication history (`master_replid`) and offset the data covers.
    pub replication_id: String,
    /// The offset in that history.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = super::MAX_STATUS_INTEGER))]
    pub replication_offset: Option<i64>,
    /// Bytes of the snapshot loaded (uncompressed), its SHA-256 verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = super::MAX_STATUS_INTEGER))]
    pub data_size: Option<i64>,
    /// The pod seeded.
    pub pod: String,
    /// When the pod held the data; unset while a restore from an archive is under way (its history is recorded
    /// first, so a restarted operator resumes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// One base backup of an instance, taken once (`kubectl create` it, or `redis-operator backup NAME`). It is
/// read from a replica when the instance has one, streamed compressed to the instance's `spec.backup` bucket,
/// and never changed afterwards; deleting it leaves the object in the bucket.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[kube(
    group = "redis-operator.github.io",
    version = "v1beta1",
    kind = "RedisBackup",
    plural = "redisbackups",
    shortname = "rb",
    namespaced,
    status = "RedisBackupStatus",
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instance","description":"The instance backed up"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Running, Completed or Failed"}"#,
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".status.size","description":"Bytes stored (compressed)"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = super::admission::backup_spec_immutable())]
#[serde(rename_all = "camelCase")]
pub struct RedisBackupSpec {
    /// The `RedisInstance` of this namespace to back up.
    #[schemars(length(min = 1, max = 63))]
    pub instance: String,
}

/// What a backup did, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RedisBackupStatus {
    /// `Running`, `Completed` or `Failed` (absent until the operator takes it up).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// Why it failed (CamelCase), e.g. `BucketUnreachable`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What happened, in words.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the operator started reading the data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the object was complete in the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The pod the data was read from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The replication id of the history the backup belongs to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub replication_id: String,
    /// The replication offset the backup holds every write up to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = super::MAX_STATUS_INTEGER))]
    pub replication_offset: Option<i64>,
    /// Where it is: `s3://BUCKET/KEY`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// Bytes stored (the compressed object).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = super::MAX_STATUS_INTEGER))]
    pub size: Option<i64>,
    /// Bytes of the snapshot (the RDB file, uncompressed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = super::MAX_STATUS_INTEGER))]
    pub data_size: Option<i64>,
    /// SHA-256 of the snapshot (uncompressed), checked when it is restored.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}
