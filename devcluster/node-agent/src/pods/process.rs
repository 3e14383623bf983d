//! Starting, stopping and tracking a pod's process.
//!
//! The process runs in a private mount namespace in which every volume is bind-mounted at its mount path, so the
//! host's view of `/etc/redis` or `/data` is untouched. Its pid and kernel start time are written to a pid file,
//! so a later agent run can kill leftovers without hitting a recycled pid.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// One bind mount inside the process's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start the process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub working_dir: Option<PathBuf>,
    /// Where stdout and stderr go (appended).
    pub log_path: PathBuf,
    /// Where the pid file goes.
    pub pid_path: PathBuf,
}

/// Runs an `exec` probe command with the container's environment, as the kubelet does: it succeeds when the
/// command exits 0 within `timeout` (a command still running then is killed and counts as a failure).
///
/// With `container` (the main process's pid) it runs in that process's mount namespace, as the kubelet runs
/// it inside the container: the container's volumes (a mounted password file, say) are where the pod spec puts
/// them. Where the namespace cannot be entered (not root), it runs on the host's view.
pub async fn probe(
    command: &[String],
    env: &[(String, String)],
    timeout: Duration,
    container: Option<u32>,
) -> bool {
    let Some((program, args)) = command.split_first() else {
        return false;
    };
    let mut builder = Command::new(program);
    builder
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // Opened before the fork; closed when this function returns (the child's copy closes on exec).
    let namespace =
        container.and_then(|pid| std::fs::File::open(format!("/proc/{pid}/ns/mnt")).ok());
    if let Some(fd) = namespace.as_ref().map(std::os::fd::AsRawFd::as_raw_fd) {
        // SAFETY: `setns` is async-signal-safe; its failure only leaves the host's view.
        unsafe {
            builder.pre_exec(move || {
                libc::setns(fd, libc::CLONE_NEWNS);
                Ok(())
            });
        }
    }
    let child = builder.spawn();
    let Ok(mut child) = child else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, child.wait()).await,
        Ok(Ok(status)) if status.success()
    )
}

/// Starts the process; the returned child is already recorded in the pid file.
pub fn spawn(launch: &Launch) -> Result<Child> {
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| Error::NotReadyToStart("container has no command".into()))?;
    for mount in &launch.mounts {
        prepare_target(mount)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log_path)
        .map_err(|e| Error::io(format!("opening {}", launch.log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("duplicating the log file", e))?;
    let mounts = MountPlan::new(&launch.mounts, launch.working_dir.as_deref())?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    // SAFETY: the closure only issues system calls on data prepared before the fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || mounts.apply());
    }
    let child = command
        .spawn()
        .map_err(|e| Error::io(format!("starting {program:?}"), e))?;
    if let Some(pid) = child.id() {
        let record = format!("{pid} {}\n", start_time(pid).unwrap_or_default());
        if let Err(e) = std::fs::write(&launch.pid_path, record) {
            warn!(error = %e, "cannot write the pid file");
        }
    }
    Ok(child)
}

/// SIGTERM, then SIGKILL once `grace` has passed; returns how the process ended.
pub async fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Some(pid) = child.id() {
        signal(pid, libc::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            warn!(pid = ?child.id(), "process ignored SIGTERM; killing it");
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    }
}

/// Kills processes recorded in `pods/*/pid` (the main container) and `pods/*/pid-<container>` (the others) by
/// an earlier agent run that are still alive.
pub fn kill_leftovers(pods_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return;
    };
    for pod_dir in entries.flatten() {
        let Ok(files) = std::fs::read_dir(pod_dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            if !is_pid_file(&file.file_name().to_string_lossy()) {
                continue;
            }
            let pid_path = file.path();
            let Ok(record) = std::fs::read_to_string(&pid_path) else {
                continue;
            };
            if let Some(pid) = live_recorded_pid(&record) {
                info!(pid, "killing a pod process left by an earlier agent run");
                signal(pid, libc::SIGKILL);
            }
            let _ = std::fs::remove_file(&pid_path);
        }
    }
}

/// Whether a file in a pod directory records a process: `pid` or `pid-<container>`.
fn is_pid_file(name: &str) -> bool {
    name == "pid" || name.starts_with("pid-")
}

/// The pid of a `"<pid> <start time>"` record if that very process still runs.
fn live_recorded_pid(record: &str) -> Option<u32> {
    let mut fields = record.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let recorded_start: u64 = fields.next()?.parse().ok()?;
    (start_time(pid) == Some(recorded_start)).then_some(pid)
}

/// The process start time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: count fields after its closing one.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// The current size of a log file: where the output of the next run starts.
pub fn log_offset(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The last `lines` lines of a log file written after byte `from`.
pub fn tail(path: &Path, from: u64, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
    let text = String::from_utf8_lossy(&text[from..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Creates the mount point on the host side (the file system is shared; only mounts are private).
fn prepare_target(mount: &Mount) -> Result<()> {
    let io = |e| {
        Error::io(
            format!("creating mount point {}", mount.target.display()),
            e,
        )
    };
    if mount.target.exists() {
        return Ok(());
    }
    if mount.source.is_dir() {
        std::fs::create_dir_all(&mount.target).map_err(io)
    } else {
        if let Some(parent) = mount.target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::File::create(&mount.target).map(drop).map_err(io)
    }
}

/// C strings for the mount system calls, built before the fork.
struct MountPlan {
    mounts: Vec<(CString, CString, bool)>,
    working_dir: Option<CString>,
}

impl MountPlan {
    fn new(mounts: &[Mount], working_dir: Option<&Path>) -> Result<Self> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| Error::NotReadyToStart(format!("path {} contains NUL", p.display())))
        };
        // Parents before children, so a nested mount point lands inside the outer mount.
        let mut sorted: Vec<&Mount> = mounts.iter().collect();
        sorted.sort_by_key(|m| m.target.components().count());
        Ok(Self {
            mounts: sorted
                .into_iter()
                .map(|m| Ok((c(&m.source)?, c(&m.target)?, m.read_only)))
                .collect::<Result<_>>()?,
            working_dir: working_dir.map(c).transpose()?,
        })
    }

    /// Runs in the child between fork and exec.
    fn apply(&self) -> std::io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: plain system calls on NUL-terminated strings owned by `self`.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            let root = c"/".as_ptr();
            check(libc::mount(
                std::ptr::null(),
                root,
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (source, target, read_only) in &self.mounts {
                // Only needed for mount points nested in another volume; harmless otherwise.
                libc::mkdir(target.as_ptr(), 0o755);
                let flags = libc::MS_BIND | libc::MS_REC;
                check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ))?;
                if *read_only {
                    let flags = flags | libc::MS_REMOUNT | libc::MS_RDONLY;
                    check(libc::mount(
                        std::ptr::null(),
                        target.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ))?;
                }
            }
            if let Some(dir) = &self.working_dir {
                check(libc::chdir(dir.as_ptr()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "1234 (redis (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 4 0 987654 1000 200";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_is_live_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert_eq!(live_recorded_pid(&format!("{me} {start}")), Some(me));
        assert_eq!(live_recorded_pid(&format!("{me} {}", start + 1)), None);
        assert_eq!(live_recorded_pid("nonsense"), None);
    }

    #[tokio::test]
    async fn an_exec_probe_passes_only_on_exit_0_within_its_timeout() {
        let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let env = vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("POD_IP".to_string(), "127.9.9.9".to_string()),
        ];
        let second = Duration::from_secs(1);
        assert!(probe(&sh("test \"$POD_IP\" = 127.9.9.9"), &env, second, None).await);
        assert!(!probe(&sh("exit 1"), &env, second, None).await);
        assert!(!probe(&sh("sleep 5"), &env, Duration::from_millis(200), None).await);
        assert!(!probe(&["/nonexistent/probe".to_string()], &env, second, None).await);
        assert!(!probe(&[], &env, second, None).await);
        // In a process's mount namespace (our own here): the same view, so the same answers.
        let me = Some(std::process::id());
        assert!(probe(&sh("test -d /proc"), &env, second, me).await);
        assert!(!probe(&sh("exit 1"), &env, second, me).await);
    }

    #[test]
    fn every_container_pid_file_is_found() {
        assert!(is_pid_file("pid"));
        assert!(is_pid_file("pid-metrics"));
        assert!(!is_pid_file("redis.log"));
        assert!(!is_pid_file("pidgin"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let path =
            std::env::temp_dir().join(format!("node-agent-tail-test-{}", std::process::id()));
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 0, 2), "c\nd");
        assert_eq!(tail(&path, 0, 10), "a\nb\nc\nd");
        assert_eq!(tail(&path, 4, 10), "c\nd", "only output after the offset");
        assert_eq!(tail(&path, 99, 10), "");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(tail(&path, 0, 2), "");
    }

    #[tokio::test]
    async fn runs_with_bind_mounts_when_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let base =
            std::env::temp_dir().join(format!("node-agent-mount-test-{}", std::process::id()));
        let source = base.join("source");
        let target = base.join("target");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("hello"), "from the volume").unwrap();
        let launch = Launch {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("cat {}/hello", target.display()),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            mounts: vec![Mount {
                source: source.clone(),
                target: target.clone(),
                read_only: true,
            }],
            working_dir: None,
            log_path: base.join("log"),
            pid_path: base.join("pid"),
        };
        let mut child = spawn(&launch).unwrap();
        assert!(child.wait().await.unwrap().success());
        assert_eq!(tail(&base.join("log"), 0, 1), "from the volume");
        assert!(
            !target.join("hello").exists(),
            "the mount must not leak into the host namespace"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
