//! The habits of `kubectl` users: `kubectl scale` (the scale subresource) scales with replication, and
//! `kubectl get redis` / `kubectl get all` list instances (short name and categories).

use crate::harness::*;
use crate::replication::converged;

fn run(env: &TestEnv, args: &[&str]) -> String {
    let out = kubectl(env.info)
        .args(args)
        .args(["--namespace", &env.ns])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_scale_scales_with_replication_and_kubectl_get_lists_instances() {
    let env = TestEnv::new("kubectl").await;
    env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    for listing in [
        run(&env, &["get", "redis", "-o", "name"]),
        run(&env, &["get", "all", "-o", "name"]),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l == "redisinstance.redis-operator.github.io/cache"),
            "{listing}"
        );
    }
    // The scale subresource: spec.replicas, status.replicas, and the pods' selector.
    let scale = run(
        &env,
        &[
            "get",
            "--raw",
            &format!(
                "/apis/redis-operator.github.io/v1beta1/namespaces/{}/redisinstances/cache/scale",
                env.ns
            ),
        ],
    );
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 1, "{scale}");
    assert_eq!(scale["status"]["replicas"], 1, "{scale}");
    let selector = scale["status"]["selector"].as_str().unwrap().to_string();
    assert!(
        selector.contains("app.kubernetes.io/instance=cache"),
        "{scale}"
    );
    let selected = run(&env, &["get", "pods", "-l", &selector, "-o", "name"]);
    assert_eq!(selected.lines().collect::<Vec<_>>(), ["pod/cache-0"]);

    run(&env, &["scale", "redisinstance/cache", "--replicas=3"]);
    let status = env
        .wait_status("cache", "three pods replicating", |s| {
            s.status == redis_fsm::Phase::Running && converged(s, 3)
        })
        .await
        .status
        .unwrap();
    assert_eq!(status.current_primary.as_deref(), Some("cache-0"));
    assert_eq!(env.instances().get("cache").await.unwrap().spec.replicas, 3);
    run(&env, &["scale", "ri/cache", "--replicas=2"]);
    env.wait_status("cache", "two pods replicating", |s| {
        s.status == redis_fsm::Phase::Running && converged(s, 2) && s.replicas == 2
    })
    .await;
}

/// A directory holding `kubectl-redis`, a link to this build's operator binary: what a user puts on the `PATH`.
fn plugin_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kubectl-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-redis");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_redis-operator"), &link).unwrap();
    dir
}

/// `kubectl` with the plugin's directory first on the `PATH`.
fn run_with_plugin(env: &TestEnv, args: &[&str]) -> String {
    let path = format!(
        "{}:{}",
        plugin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = kubectl(env.info)
        .env("PATH", path)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl redis`: found by `kubectl plugin list`; `status` shows the instance on one screen, `connect` prints a
/// command that connects from inside the cluster (run in a pod), `switchover` moves the primary.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn the_kubectl_plugin_shows_connects_and_switches_over() {
    let env = TestEnv::new("plugin").await;
    let listed = run_with_plugin(&env, &["plugin", "list", "--name-only"]);
    assert!(listed.lines().any(|l| l == "kubectl-redis"), "{listed}");
    env.create("cache", spec(2)).await;
    env.wait_running("cache").await;
    let status = crate::replication::wait_converged(&env, "cache", 2).await;
    let primary = status.current_primary.clone().unwrap();
    let ns = env.ns.clone();

    let report = run_with_plugin(&env, &["redis", "status", "cache", "-n", &ns]);
    assert!(
        report.starts_with(&format!(
            "{ns}/cache: Running (AllReplicasReady), ready 2/2"
        )),
        "{report}"
    );
    assert!(report.contains(&format!("primary {primary}")), "{report}");
    for pod in ["cache-0", "cache-1"] {
        let row = report
            .lines()
            .find(|l| l.trim_start().starts_with(pod))
            .unwrap_or_else(|| panic!("no row for {pod}: {report}"));
        assert!(row.contains("redis 7."), "{row}");
    }
    assert!(report.contains("events (newest first):"), "{report}");
    assert!(report.contains("Running"), "{report}");

    // The printed command, run where the Service's name resolves: in a pod of the instance.
    let command = run_with_plugin(&env, &["redis", "connect", "cache", "-n", &ns]);
    assert!(
        command.contains(&format!(
            "redis-cli -h cache.{ns}.svc -p 6379 --user default"
        )),
        "{command}"
    );
    let replica = if primary == "cache-0" {
        "cache-1"
    } else {
        "cache-0"
    };
    let ping = run_with_plugin(
        &env,
        &[
            "-n",
            &ns,
            "exec",
            replica,
            "-c",
            "redis",
            "--",
            "sh",
            "-c",
            &format!("{} SET via-plugin 1", command.trim()),
        ],
    );
    assert_eq!(
        ping.trim(),
        "OK",
        "writes go to the primary through the NAME Service"
    );

    run_with_plugin(
        &env,
        &["redis", "switchover", "cache", "--to", replica, "-n", &ns],
    );
    let target = replica.to_string();
    env.wait_status("cache", "switched over", move |s| {
        s.current_primary.as_deref() == Some(target.as_str()) && crate::replication::converged(s, 2)
    })
    .await;
}
