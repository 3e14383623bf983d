//! The archiver of an instance with `spec.backup.archive`: one task per instance in the leading operator that
//! follows the replication stream as a replica does and stores it in the bucket ([`super::archive`] says how).
//!
//! It connects to a replica when the instance has one (chained replication: the replica relays the primary's
//! stream with the same offsets), else to the primary, and asks to continue the newest stored timeline
//! (`PSYNC replid offset`); a server that no longer holds that history answers with a full synchronisation, which
//! becomes a new timeline's base. Received bytes are kept with their arrival time and stored every
//! `segmentSeconds` as a segment of whole commands, only when they hold a write (the primary's keep-alives alone
//! are kept until one comes, so segments follow each other without a gap and an idle instance stores nothing).
//!
//! The archiver acknowledges (`REPLCONF ACK`) only the offset stored in the bucket. A server therefore counts it
//! as a replica holding a write (`WAIT`) only once that write is in the bucket, and never sooner.
//!
//! A timeline whose base is older than `newBaseHours` is closed (its pending writes stored) and a new one
//! started at once with a full synchronisation; timelines whose newest write is older than `retentionDays` are
//! deleted when the archiver starts (never the newest one).
//!
//! The task ends at the first error (a broken connection, a refused login, a failed upload) and when it is told
//! to stop; the reconcile starts it again (at most every [`RESTART_AFTER`]), from what the bucket holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::archive::{self, BaseManifest, Segment, Timeline};
use super::rdb::{self, Sync as Psync};
use super::store::Upload;
use crate::redis::Access;
use redis_fsm::Endpoint;

/// How soon a stopped archiver is started again.
pub const RESTART_AFTER: Duration = Duration::from_secs(5);
/// The most bytes a segment holds before it is stored whatever the time.
const SEGMENT_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long the server may stay silent on the stream (it pings every 10 s by default).
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// The archivers running in this process, by instance uid.
#[derive(Default)]
pub struct Archivers {
    tasks: Mutex<HashMap<String, Handle>>,
}

struct Handle {
    /// What the task was started with (a change restarts it).
    settings: String,
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
    finished: Arc<AtomicBool>,
    ended_at: Option<Instant>,
}

/// What an archiver stored so far.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// The timeline it archives into.
    pub timeline: Option<Timeline>,
    /// The newest write stored: when it was received (Unix milliseconds).
    pub archived_ms: Option<i64>,
    /// Why it stopped, when it did.
    pub error: Option<String>,
}

/// What an archiver needs: where to read, where to write.
pub struct Job {
    /// The servers to read from, best first (replicas, then the primary).
    pub sources: Vec<Endpoint>,
    /// How the operator reaches them (the replication user's login, TLS).
    pub access: Access,
    /// The bucket.
    pub bucket: Arc<dyn ObjectStore>,
    /// The instance's prefix.
    pub prefix: String,
    /// `segmentSeconds`.
    pub segment: Duration,
    /// `newBaseHours`: how old a timeline's base may get before a new timeline starts (`None`: never).
    pub new_base_after: Option<Duration>,
    /// `retentionDays`: timelines whose newest write is older are deleted (`None`: kept).
    pub retention: Option<Duration>,
    /// Called with the time (Unix seconds) whenever the archive holds every write received.
    pub caught_up: Box<dyn Fn(i64) + Send + Sync>,
    /// Whether this process still leads (the archiver stops when it does not).
    pub leading: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Archivers {
    /// The progress of the archiver of instance `uid` if one runs or ran with these `settings`; `None` when it
    /// must be (re)started (none ran, the settings changed, or it ended more than [`RESTART_AFTER`] ago).
    pub fn progress(&self, uid: &str, settings: &str) -> Option<Progress> {
        let mut tasks = self.tasks.lock().ok()?;
        let handle = tasks.get_mut(uid)?;
        if handle.settings != settings {
            handle.stop.store(true, Ordering::Relaxed);
            tasks.remove(uid);
            return None;
        }
        let progress = handle.progress.lock().ok()?.clone();
        if handle.finished.load(Ordering::Relaxed) {
            let ended = *handle.ended_at.get_or_insert_with(Instant::now);
            if ended.elapsed() >= RESTART_AFTER {
                tasks.remove(uid);
                return None;
            }
        }
        Some(progress)
    }

    /// Starts the archiver of instance `uid`.
    pub fn start(&self, uid: &str, settings: String, job: Job) {
        let (stop, finished) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let progress = Arc::new(Mutex::new(Progress::default()));
        if let Ok(mut tasks) = self.tasks.lock() {
            if let Some(old) = tasks.insert(
                uid.to_string(),
                Handle {
                    settings,
                    stop: stop.clone(),
                    progress: progress.clone(),
                    finished: finished.clone(),
                    ended_at: None,
                },
            ) {
                old.stop.store(true, Ordering::Relaxed);
            }
        }
        tokio::spawn(async move {
            let outcome = run(&job, &stop, &progress).await;
            if let Err(error) = outcome {
                warn!(prefix = %job.prefix, %error, "archiver stopped");
                if let Ok(mut p) = progress.lock() {
                    p.error = Some(error);
                }
            }
            finished.store(true, Ordering::Relaxed);
        });
    }

    /// Stops the archiver of instance `uid`, if one runs.
    pub fn stop(&self, uid: &str) {
        if let Ok(mut tasks) = self.tasks.lock() {
            if let Some(handle) = tasks.remove(uid) {
                handle.stop.store(true, Ordering::Relaxed);
            }
        }
    }
}

fn now_ms() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

/// Lists the archive, deletes the timelines retention drops, and says where to continue (the timeline, the
/// offset of its last byte stored, when its base was taken), or `None` to start a new timeline.
async fn start_point(job: &Job) -> Result<Option<(Timeline, u64, i64)>, String> {
    let root =
        object_store::path::Path::from(format!("{}/archive", job.prefix.trim_end_matches('/')));
    let keys: Vec<String> = job
        .bucket
        .list(Some(&root))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .map_err(|e| format!("listing the archive: {e}"))?;
    let timelines = archive::parse_listing(&job.prefix, keys.iter().map(String::as_str));
    let mut stored = Vec::new();
    for (timeline, listed) in timelines.iter().filter(|(_, l)| l.complete) {
        let key = timeline.manifest_key(&job.prefix);
        let bytes = job
            .bucket
            .get(&object_store::path::Path::from(key.as_str()))
            .await
            .map_err(|e| format!("reading {key}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("reading {key}: {e}"))?;
        let manifest: BaseManifest =
            serde_json::from_slice(&bytes).map_err(|e| format!("{key}: {e}"))?;
        let plan = archive::plan(
            &std::iter::once((timeline.clone(), listed.clone())).collect(),
            |_| Some(0),
            None,
        )?;
        let (last_ms, end) = plan
            .segments
            .last()
            .map_or((manifest.time_ms, timeline.offset), |s| (s.last_ms, s.end));
        stored.push(archive::Stored {
            timeline: timeline.clone(),
            base_ms: manifest.time_ms,
            last_ms,
            end,
        });
    }
    let millis = |d: Option<Duration>| d.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let plan = archive::housekeeping(
        &stored,
        now_ms(),
        millis(job.new_base_after),
        millis(job.retention),
    );
    for timeline in &plan.expired {
        let folder = format!("{}/", timeline.folder(&job.prefix));
        for key in keys.iter().filter(|k| k.starts_with(&folder)) {
            job.bucket
                .delete(&object_store::path::Path::from(key.as_str()))
                .await
                .map_err(|e| format!("deleting {key}: {e}"))?;
        }
        info!(prefix = %job.prefix, timeline = %timeline.folder(&job.prefix), "archive timeline past retention deleted");
    }
    Ok(plan
        .resume
        .zip(plan.resume_base_ms)
        .map(|((timeline, end), base_ms)| (timeline, end, base_ms)))
}

/// Why a server was not followed: `continuation` when it offered a full synchronisation instead of continuing
/// the stored timeline (another server may still continue it).
struct Refused {
    message: String,
    continuation: bool,
}

impl From<String> for Refused {
    fn from(message: String) -> Self {
        Refused {
            message,
            continuation: false,
        }
    }
}

impl From<&str> for Refused {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// How following a server ended without an error.
enum Ended {
    /// Told to stop (or no longer leading).
    Stopped,
    /// The timeline's base is older than `new_base_after`: a new timeline starts now.
    Rebase,
}

async fn run(job: &Job, stop: &AtomicBool, progress: &Mutex<Progress>) -> Result<(), String> {
    loop {
        let resume = start_point(job).await?;
        match follow_any(job, resume, stop, progress).await? {
            Ended::Stopped => return Ok(()),
            Ended::Rebase => info!(prefix = %job.prefix, "archive starts a new base"),
        }
    }
}

async fn follow_any(
    job: &Job,
    resume: Option<(Timeline, u64, i64)>,
    stop: &AtomicBool,
    progress: &Mutex<Progress>,
) -> Result<Ended, String> {
    let mut last_error = "no pod to read from".to_string();
    // Every server is asked to continue the stored timeline before any full synchronisation is taken (which would
    // fork the archive): after a failover only the promoted primary and the replicas that followed it hold the
    // history; a replica that was re-created or fully resynchronised does not.
    let passes: &[bool] = if resume.is_some() {
        &[false, true]
    } else {
        &[true]
    };
    for &accept_full in passes {
        for source in &job.sources {
            match connect(job, source, resume.clone(), accept_full, stop, progress).await {
                Ok(ended) => return Ok(ended),
                Err(refused) => {
                    last_error = format!("{}: {}", source.host, refused.message);
                    if !refused.continuation {
                        warn!(prefix = %job.prefix, error = %last_error, "archive source failed");
                    }
                }
            }
        }
    }
    Err(last_error)
}

async fn connect(
    job: &Job,
    at: &Endpoint,
    resume: Option<(Timeline, u64, i64)>,
    accept_full: bool,
    stop: &AtomicBool,
    progress: &Mutex<Progress>,
) -> Result<Ended, Refused> {
    let timeout = job.access.timeouts.connect;
    match job.access.tls.get(&at.host) {
        Some(trust) => {
            let (stream, _) = tokio::time::timeout(timeout, trust.handshake(&at.host, at.port))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            follow(job, stream, resume, accept_full, stop, progress).await
        }
        None => {
            let stream = tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((at.host.as_str(), at.port)),
            )
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
            follow(job, stream, resume, accept_full, stop, progress).await
        }
    }
}

/// Synchronises on `stream` and archives what follows until told to stop or an error.
async fn follow<S: AsyncRead + AsyncWrite + Unpin>(
    job: &Job,
    stream: S,
    resume: Option<(Timeline, u64, i64)>,
    accept_full: bool,
    stop: &AtomicBool,
    progress: &Mutex<Progress>,
) -> Result<Ended, Refused> {
    let login = job
        .access
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()));
    let from = resume
        .as_ref()
        .map(|(t, end, _)| (t.replid.as_str(), end + 1));
    let synced = rdb::sync(stream, login, from, super::IDLE)
        .await
        .map_err(|e| e.to_string())?;
    let (stream, timeline, offset, base_ms) = match synced {
        Psync::Continue { stream, .. } => {
            let (timeline, end, base_ms) =
                resume.ok_or("the server continued a history never asked for")?;
            info!(prefix = %job.prefix, timeline = %timeline.replid, offset = end, "archive continues");
            (stream, timeline, end, base_ms)
        }
        Psync::Full(_) if !accept_full => {
            return Err(Refused {
                message: "it does not hold the archived history".into(),
                continuation: true,
            })
        }
        Psync::Full(mut snapshot) => {
            let timeline = Timeline {
                replid: snapshot.resync.replid.clone(),
                offset: snapshot.resync.offset,
            };
            let mut upload = Upload::start(job.bucket.clone(), &timeline.base_key(&job.prefix));
            let mut hasher = Sha256::new();
            let copied = async {
                while let Some(chunk) = snapshot.next_chunk().await.map_err(|e| e.to_string())? {
                    hasher.update(&chunk);
                    upload.write(&chunk).await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }
            .await;
            if let Err(error) = copied {
                upload.abort().await;
                return Err(error.into());
            }
            let stored = upload.finish().await.map_err(|e| e.to_string())?;
            let manifest = BaseManifest {
                replication_id: timeline.replid.clone(),
                replication_offset: timeline.offset,
                time_ms: now_ms(),
                data_size: stored.data_size,
                sha256: stored.sha256,
            };
            let json = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
            job.bucket
                .put(
                    &object_store::path::Path::from(timeline.manifest_key(&job.prefix)),
                    PutPayload::from(json),
                )
                .await
                .map_err(|e| format!("storing the base's manifest: {e}"))?;
            info!(prefix = %job.prefix, timeline = %timeline.replid, offset = timeline.offset, "archive starts a timeline");
            (
                snapshot.into_stream(),
                timeline,
                manifest.replication_offset,
                manifest.time_ms,
            )
        }
    };
    if let Ok(mut p) = progress.lock() {
        p.timeline = Some(timeline.clone());
        p.error = None;
    }
    // A new base is due this long after this one was taken.
    let rebase_at = job.new_base_after.map(|every| {
        let age = Duration::from_millis(u64::try_from(now_ms() - base_ms).unwrap_or(0));
        Instant::now() + every.saturating_sub(age)
    });
    Ok(stream_loop(job, stream, &timeline, offset, rebase_at, stop, progress).await?)
}

/// The bytes received and not stored yet, with the time each chunk arrived.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// (end position in `bytes`, arrival time) of each chunk.
    ends: Vec<(usize, i64)>,
    /// Where the complete commands end (everything before is whole commands).
    parsed: usize,
    /// Whether a complete command that writes is among them.
    writes: bool,
    /// When the first byte not stored yet arrived.
    since: Option<Instant>,
}

impl Pending {
    fn push(&mut self, chunk: &[u8], at: i64) -> Result<(), String> {
        self.bytes.extend_from_slice(chunk);
        self.ends.push((self.bytes.len(), at));
        self.since.get_or_insert_with(Instant::now);
        while let Some((len, name)) = archive::next_command(&self.bytes[self.parsed..])? {
            self.parsed += len;
            if !archive::is_keepalive(&name) {
                self.writes = true;
            }
        }
        Ok(())
    }

    /// Takes the whole commands out as frames, keeping what follows them.
    fn take(&mut self) -> (Vec<u8>, Segment) {
        let cut = self.parsed;
        let mut frames = Vec::new();
        let mut from = 0;
        let mut rest_ends = Vec::new();
        for &(end, at) in &self.ends {
            if from < cut {
                frames.push((at, &self.bytes[from..end.min(cut)]));
            }
            if end > cut {
                rest_ends.push((end - cut, at));
            }
            from = end;
        }
        let first_ms = frames.first().map_or(0, |(t, _)| *t);
        let last_ms = frames.last().map_or(0, |(t, _)| *t);
        let encoded = archive::encode_frames(&frames);
        self.bytes.drain(..cut);
        self.ends = rest_ends;
        self.parsed = 0;
        self.writes = false;
        self.since = (!self.bytes.is_empty()).then(Instant::now);
        (
            encoded,
            Segment {
                start: 0,
                end: cut as u64,
                first_ms,
                last_ms,
            },
        )
    }
}

async fn stream_loop<S: AsyncRead + AsyncWrite + Unpin>(
    job: &Job,
    mut stream: S,
    timeline: &Timeline,
    mut stored: u64,
    rebase_at: Option<Instant>,
    stop: &AtomicBool,
    progress: &Mutex<Progress>,
) -> Result<Ended, String> {
    let mut pending = Pending::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_read = Instant::now();
    (job.caught_up)(now_ms() / 1000);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = read.map_err(|e| format!("reading the stream: {e}"))?;
                if n == 0 {
                    return Err("the server closed the stream".into());
                }
                last_read = Instant::now();
                pending.push(&buf[..n], now_ms())?;
            }
            _ = tick.tick() => {
                let stopping = stop.load(Ordering::Relaxed) || !(job.leading)();
                let rebase = rebase_at.is_some_and(|at| Instant::now() >= at);
                let due = pending.since.is_some_and(|s| s.elapsed() >= job.segment)
                    || pending.bytes.len() >= SEGMENT_MAX_BYTES;
                if pending.writes && (due || stopping || rebase) {
                    let (data, mut segment) = pending.take();
                    segment.start = stored;
                    segment.end += stored;
                    store_segment(job, timeline, &segment, data).await?;
                    stored = segment.end;
                    if let Ok(mut p) = progress.lock() {
                        p.archived_ms = Some(segment.last_ms);
                    }
                }
                if !pending.writes {
                    // Every write received is stored.
                    (job.caught_up)(now_ms() / 1000);
                }
                // Only what the bucket holds is acknowledged (keep-alives not stored yet included, which carry no
                // write: acknowledging them is what keeps the link alive while nothing is written).
                let acked = if pending.writes { stored } else { stored + pending.parsed as u64 };
                let ack = format!("*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n${}\r\n{acked}\r\n", acked.to_string().len());
                stream.write_all(ack.as_bytes()).await.map_err(|e| format!("acknowledging: {e}"))?;
                if stopping {
                    return Ok(Ended::Stopped);
                }
                if rebase {
                    return Ok(Ended::Rebase);
                }
                if last_read.elapsed() > STREAM_IDLE {
                    return Err(format!("the server sent nothing for {} s", STREAM_IDLE.as_secs()));
                }
            }
        }
    }
}

async fn store_segment(
    job: &Job,
    timeline: &Timeline,
    segment: &Segment,
    data: Vec<u8>,
) -> Result<(), String> {
    let compressed = {
        let mut encoder = async_compression::tokio::write::ZstdEncoder::new(Vec::new());
        encoder.write_all(&data).await.map_err(|e| e.to_string())?;
        encoder.shutdown().await.map_err(|e| e.to_string())?;
        encoder.into_inner()
    };
    let key = timeline.segment_key(&job.prefix, segment);
    job.bucket
        .put(
            &object_store::path::Path::from(key.as_str()),
            PutPayload::from(compressed),
        )
        .await
        .map_err(|e| format!("storing {key}: {e}"))?;
    Ok(())
}

/// The instance reconcile's archive step: keeps the archiver of `ri` running while `spec.backup.archive` is set
/// and this process leads (stops it otherwise), and says what the archive holds (`previous`: the status as
/// recorded, kept while a restarted archiver has stored nothing yet).
pub async fn pass(
    ri: &crate::api::RedisInstance,
    ctx: &crate::reconciler::Context,
    previous: Option<&crate::api::ArchiveStatus>,
) -> Option<crate::api::ArchiveStatus> {
    use kube::ResourceExt;
    let uid = ri.uid().unwrap_or_default();
    let (name, namespace) = (ri.name_any(), ri.namespace().unwrap_or_default());
    let backup = ri.spec.backup.as_ref();
    let Some(spec) = backup.and_then(|b| b.archive.as_ref()) else {
        ctx.archivers.stop(&uid);
        ctx.metrics.set_archive_caught_up(&namespace, &name, None);
        return None;
    };
    if !ctx.leadership.is_held() {
        ctx.archivers.stop(&uid);
        return previous.cloned();
    }
    let settings = serde_json::to_string(&backup).unwrap_or_default();
    let status = |progress: Option<&Progress>| {
        let mut status = previous.cloned().unwrap_or_default();
        if let Some(progress) = progress {
            if let Some(timeline) = &progress.timeline {
                status.timeline = format!("{}-{}", timeline.replid, timeline.offset);
            }
            if let Some(at) = progress.archived_ms {
                status.archived_up_to = Some(archive::millis_rfc3339(at));
            }
            status.message = progress.error.clone().unwrap_or_default();
        }
        Some(status)
    };
    if let Some(progress) = ctx.archivers.progress(&uid, &settings) {
        return status(Some(&progress));
    }
    let Some(access) = ctx.last_access(ri) else {
        return status(None);
    };
    let (bucket, target) = match super::controller::bucket_for(ctx, ri).await {
        Ok(found) => found,
        Err(refused) => {
            let mut status = status(None).unwrap_or_default();
            status.message = format!("{}: {}", refused.reason, refused.message);
            return Some(status);
        }
    };
    // Replicas first (the primary's latency does not move), then the primary.
    let pods = ctx.instance_pods(&name, &namespace);
    let role = |pod: &k8s_openapi::api::core::v1::Pod| {
        pod.labels()
            .get(crate::names::ROLE_LABEL)
            .cloned()
            .unwrap_or_default()
    };
    let mut sources: Vec<(u8, Endpoint)> = pods
        .iter()
        .filter_map(|p| {
            let rank = match role(p).as_str() {
                "replica" => 0,
                "primary" => 1,
                _ => return None,
            };
            Some((rank, crate::converge::topology::endpoint(p)?))
        })
        .collect();
    sources.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.host.cmp(&b.1.host)));
    if sources.is_empty() {
        return status(None);
    }
    let metrics = ctx.metrics.clone();
    let (gauge_ns, gauge_name) = (namespace.clone(), name.clone());
    let leadership = ctx.leadership.clone();
    ctx.archivers.start(
        &uid,
        settings,
        Job {
            sources: sources.into_iter().map(|(_, e)| e).collect(),
            access,
            bucket,
            prefix: target
                .s3
                .prefix
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{name}")),
            segment: Duration::from_secs(u64::try_from(spec.segment_seconds).unwrap_or(60).max(1)),
            new_base_after: u64::try_from(spec.new_base_hours)
                .ok()
                .filter(|h| *h > 0)
                .map(|h| Duration::from_secs(h * 3600)),
            retention: u64::try_from(spec.retention_days)
                .ok()
                .filter(|d| *d > 0)
                .map(|d| Duration::from_secs(d * 86_400)),
            caught_up: Box::new(move |at| {
                metrics.set_archive_caught_up(&gauge_ns, &gauge_name, Some(at))
            }),
            leading: Box::new(move || leadership.is_held()),
        },
    );
    status(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::archive::tests::cmd;

    #[test]
    fn only_whole_commands_are_taken_and_keepalives_alone_are_no_write() {
        let mut pending = Pending::default();
        let ping = cmd(&["PING"]);
        pending.push(&ping, 1).unwrap();
        assert!(!pending.writes, "a keep-alive is no write");
        let set = cmd(&["SET", "k", "v"]);
        let (head, tail) = set.split_at(7);
        pending.push(head, 2).unwrap();
        assert!(!pending.writes, "half a command is no write yet");
        pending.push(tail, 3).unwrap();
        let next = cmd(&["DEL", "k"]);
        pending.push(&next[..5], 4).unwrap();
        assert!(pending.writes);
        let (data, segment) = pending.take();
        assert_eq!(segment.end, (ping.len() + set.len()) as u64);
        assert_eq!((segment.first_ms, segment.last_ms), (1, 3));
        let (bytes, ends) = archive::decode_frames(&data).unwrap();
        assert_eq!(bytes, [ping.clone(), set.clone()].concat());
        assert_eq!(
            ends,
            vec![(ping.len(), 1), (ping.len() + 7, 2), (bytes.len(), 3)]
        );
        // The start of DEL stays, with its time, and completes with what follows.
        assert_eq!(pending.bytes, next[..5]);
        assert!(!pending.writes);
        pending.push(&next[5..], 5).unwrap();
        assert!(pending.writes);
        let (data, segment) = pending.take();
        assert_eq!(segment.end, next.len() as u64);
        assert_eq!((segment.first_ms, segment.last_ms), (4, 5));
        assert_eq!(archive::decode_frames(&data).unwrap().0, next);
    }
}
