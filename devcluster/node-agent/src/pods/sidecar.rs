//! The containers after the first (sidecars, e.g. the metrics exporter): each runs as its own process next to
//! the main one, is restarted with the crash-loop back-off when it exits, and stops with the pod.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::backoff::{restart_delay, BACKOFF_RESET_AFTER};
use crate::pods::process::{self, Launch};
use crate::pods::status::SidecarState;

/// How long a sidecar gets to exit after SIGTERM.
const GRACE: Duration = Duration::from_secs(5);
/// How long a readiness connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

/// One running sidecar and the task that supervises it.
pub struct Sidecar {
    pub name: String,
    /// The first declared port: the sidecar is ready when it accepts connections there (running is enough
    /// without one).
    port: Option<u16>,
    state: Arc<Mutex<SidecarState>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sidecar {
    /// Starts the sidecar's process and keeps it running until [`Sidecar::stop`]. `restart_count` carries on
    /// from the pod's status (after an agent restart).
    pub fn start(
        name: String,
        launch: Launch,
        port: Option<u16>,
        restart_backoff: Duration,
        restart_count: i32,
    ) -> Self {
        let state = Arc::new(Mutex::new(SidecarState {
            restart_count,
            ..SidecarState::default()
        }));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            name.clone(),
            launch,
            state.clone(),
            stopped,
            restart_backoff,
        ));
        Self {
            name,
            port,
            state,
            stop,
            task,
        }
    }

    /// The state as last seen.
    pub fn state(&self) -> SidecarState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Probes readiness: running, and accepting connections on its port if it declares one.
    pub async fn probe(&self, ip: Ipv4Addr) {
        let running = self.state().running.is_some();
        let ready = running
            && match self.port {
                None => true,
                Some(port) => matches!(
                    tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        TcpStream::connect(SocketAddr::from((ip, port)))
                    )
                    .await,
                    Ok(Ok(_))
                ),
            };
        self.state.lock().unwrap_or_else(|e| e.into_inner()).ready = ready;
    }

    /// Stops the process (SIGTERM, SIGKILL after a grace period) and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            warn!(sidecar = %self.name, error = %e, "sidecar task failed");
        }
    }
}

async fn run(
    name: String,
    launch: Launch,
    state: Arc<Mutex<SidecarState>>,
    mut stopped: watch::Receiver<bool>,
    restart_backoff: Duration,
) {
    let update = |change: &dyn Fn(&mut SidecarState)| {
        change(&mut state.lock().unwrap_or_else(|e| e.into_inner()));
    };
    let mut consecutive_exits = 0;
    loop {
        let started = Instant::now();
        match process::spawn(&launch) {
            Ok(mut child) => {
                let id = format!("process://{}", child.id().unwrap_or_default());
                info!(sidecar = %name, %id, "started sidecar");
                update(&|s| {
                    s.running = Some((Timestamp::now(), id.clone()));
                    s.waiting.clear();
                });
                tokio::select! {
                    status = child.wait() => info!(sidecar = %name, ?status, "sidecar exited"),
                    _ = stopped.changed() => {
                        process::stop(&mut child, GRACE).await;
                        return;
                    }
                }
            }
            Err(e) => warn!(sidecar = %name, error = %e, "cannot start sidecar"),
        }
        if started.elapsed() >= BACKOFF_RESET_AFTER {
            consecutive_exits = 0;
        }
        consecutive_exits += 1;
        update(&|s| {
            s.running = None;
            s.ready = false;
            s.waiting = "CrashLoopBackOff".into();
            s.restart_count += 1;
        });
        tokio::select! {
            _ = tokio::time::sleep(restart_delay(restart_backoff, consecutive_exits)) => {}
            _ = stopped.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(dir: &std::path::Path, script: &str) -> Launch {
        Launch {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            mounts: Vec::new(),
            working_dir: None,
            log_path: dir.join("log"),
            pid_path: dir.join("pid-sidecar"),
        }
    }

    async fn wait_for(sidecar: &Sidecar, what: impl Fn(&SidecarState) -> bool) -> SidecarState {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = sidecar.state();
            if what(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "timed out: {state:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Mount namespaces need root: without it the test has nothing to run.
    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[tokio::test]
    async fn an_exiting_sidecar_is_restarted_and_counted() {
        if !root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("node-agent-sidecar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sidecar = Sidecar::start(
            "exits".into(),
            launch(&dir, "exit 3"),
            None,
            Duration::from_millis(10),
            1,
        );
        let state = wait_for(&sidecar, |s| s.restart_count >= 3).await;
        assert!(state.restart_count >= 3, "counting from the given 1");
        sidecar.stop().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn ready_once_its_port_accepts_and_stopped_on_request() {
        if !root() {
            return;
        }
        let dir =
            std::env::temp_dir().join(format!("node-agent-sidecar-port-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sidecar = Sidecar::start(
            "sleeps".into(),
            launch(&dir, "exec sleep 60"),
            Some(port),
            Duration::from_secs(10),
            0,
        );
        wait_for(&sidecar, |s| s.running.is_some()).await;
        sidecar.probe(Ipv4Addr::LOCALHOST).await;
        assert!(sidecar.state().ready, "the port accepts connections");
        // The same port on another loopback address, where nothing listens. The listener stays open: a port it
        // gave up could be taken at once by another test's listener, or be picked as the probe's own source port
        // and connect to itself.
        sidecar.probe(Ipv4Addr::new(127, 0, 0, 3)).await;
        assert!(!sidecar.state().ready, "nothing listens there");
        drop(listener);
        let pid: u32 = std::fs::read_to_string(dir.join("pid-sidecar"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        sidecar.stop().await;
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the process is gone once stopped"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
