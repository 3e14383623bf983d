//! The support matrix on the cluster: a running Redis instance migrates to Valkey by a rolling update with no
//! confirmed write lost; the way back (Valkey to Redis), which replicas could not follow, is refused and touches
//! nothing; a release older than the matrix is refused before anything is created.

use std::time::{Duration, Instant};

use kube::ResourceExt;
use redis_fsm::{Phase, Reason};
use redis_operator::api::RedisInstanceStatus;

use crate::harness::{spec, TestEnv};
use crate::replication::{finish_and_check, three_converged_with_a_writer, wait_writes};

/// The image the migration goes to (devcluster/images.sh builds it from valkey-server 9.1).
const VALKEY: &str = "valkey/valkey:9";

/// What each pod's server reported, as the status records it (`valkey 9.1.2`).
fn servers(status: &RedisInstanceStatus) -> Vec<String> {
    status.pods.iter().map(|p| p.server.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_instance_migrates_to_valkey_under_writes_and_the_way_back_is_refused() {
    let env = TestEnv::new("migrate").await;
    let mut s = spec(3);
    s.image = "redis:7.2".into();
    let (first, writer) = three_converged_with_a_writer(&env, s).await;
    assert!(
        servers(&first).iter().all(|s| s.starts_with("redis 7.")),
        "{:?}",
        servers(&first)
    );
    let before = env.pod_uids("cache").await;
    let started = Instant::now();
    let generation = env
        .patch_spec("cache", serde_json::json!({"image": VALKEY}))
        .await;
    let done = env
        .wait_status("cache", "every pod runs Valkey", move |s| {
            s.observed_generation >= Some(generation)
                && s.status == Phase::Running
                && s.pods.len() == 3
                && s.pods.iter().all(|p| p.server.starts_with("valkey 9."))
                && crate::replication::converged(s, 3)
        })
        .await;
    let took = started.elapsed();
    for pod in env.pods_of("cache").await {
        assert!(
            !before.contains(&pod.uid().unwrap()),
            "{} kept",
            pod.name_any()
        );
        let container = &pod.spec.unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some(VALKEY));
        assert_eq!(container.command, Some(vec!["valkey-server".to_string()]));
    }
    wait_writes(&writer, 20).await;
    let gap = finish_and_check(&env, writer, "Redis 7.0 to Valkey 9.1 migration").await;
    eprintln!(
        "migration to Valkey: {took:?} from the patch to every pod on Valkey, longest write gap {gap:?}, \
         servers {:?}",
        servers(&done.status.unwrap())
    );

    // Back to Redis: a Redis replica cannot load a Valkey primary's snapshot. Refused; nothing is replaced.
    let uids = env.pod_uids("cache").await;
    env.patch_spec("cache", serde_json::json!({"image": "redis:7.2"}))
        .await;
    let refused = env
        .wait_status("cache", "the way back refused", |s| {
            s.status == Phase::Failed && s.reason == Reason::UnsupportedServer.as_str()
        })
        .await
        .status
        .unwrap();
    assert!(
        refused
            .last_condition_message
            .contains("Redis cannot load the snapshots Valkey writes"),
        "{refused:#?}"
    );
    let template = env.statefulsets().get("cache").await.unwrap();
    let image = template.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some(VALKEY), "the template is unchanged");
    // Still serving, on the same pods.
    let primary = refused.current_primary.clone().unwrap();
    let pod = env.pods().get(&primary).await.unwrap();
    let reply =
        crate::harness::redis_command(&crate::harness::pod_ip(&pod), &["SET", "after", "1"]).await;
    assert_eq!(reply, "+OK\r\n");
    let now = env.pod_uids("cache").await;
    assert_eq!(now, uids, "no pod was replaced");
    // Forward again: Running, with nothing to roll.
    env.patch_spec("cache", serde_json::json!({"image": VALKEY}))
        .await;
    env.wait_running("cache").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_older_than_the_matrix_is_refused_before_anything_is_created() {
    let env = TestEnv::new("release").await;
    let mut s = spec(1);
    s.image = "redis:6.2".into();
    env.create("old", s).await;
    let status = env
        .wait_status("old", "refused", |s| s.status == Phase::Failed)
        .await
        .status
        .unwrap();
    assert_eq!(status.reason, Reason::UnsupportedServer.as_str());
    assert!(
        status
            .last_condition_message
            .contains("redis 6.2.0 is not supported: the operator needs redis 7.0 or newer"),
        "{status:#?}"
    );
    assert!(env.statefulsets().get_opt("old").await.unwrap().is_none());
    // Fixed by the user: created as usual.
    env.patch_spec("old", serde_json::json!({"image": "redis:7.2"}))
        .await;
    tokio::time::timeout(Duration::from_secs(120), env.wait_running("old"))
        .await
        .expect("Running after the fix");
}

/// The suite's server is the one it names: with `REDIS_OPERATOR_E2E_IMAGE` (the Valkey stage of
/// `scripts/test.sh`), every pod reports that image's server; else the default image's Redis. This is what makes
/// the other scenarios of a stage count for its server.
#[tokio::test(flavor = "multi_thread")]
async fn the_suite_runs_the_server_its_image_names() {
    let env = TestEnv::new("server").await;
    let s = spec(2);
    let (family, _) = redis_fsm::image_server(&s.image);
    env.create("cache", s).await;
    let status = env.wait_running("cache").await.status.unwrap();
    let want = format!("{} ", family.as_str());
    assert_eq!(status.pods.len(), 2);
    for pod in &status.pods {
        assert!(pod.server.starts_with(&want), "{status:#?}");
    }
    let command = env.pods_of("cache").await[0]
        .spec
        .clone()
        .unwrap()
        .containers[0]
        .command
        .clone()
        .unwrap();
    assert_eq!(command, [format!("{}-server", family.as_str())]);
}

/// A server older than the matrix under a tag that tells nothing (`devcluster/images.sh` builds Redis 6.2.14 as
/// `example.com/legacy/redis:stable`): with authentication off it starts, reports its release, and the instance
/// stops with `UnsupportedServer` at first contact, no command sent (the pod stays parked, a replica of itself,
/// never promoted); with authentication on it cannot even load the operator's ACL file and its pod fails
/// (`PodsFailing`, with the server's own words). Changing the image to a supported one recovers both.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real node: DEVCLUSTER_NODE=real"]
async fn a_server_older_than_the_matrix_is_refused_at_first_contact() {
    let env = TestEnv::new("contact").await;
    let legacy = "example.com/legacy/redis:stable";
    let mut open = spec(1);
    open.image = legacy.into();
    open.auth.enabled = false;
    env.create("open", open).await;
    let mut closed = spec(1);
    closed.image = legacy.into();
    env.create("closed", closed).await;

    let status = env
        .wait_status("open", "refused at first contact", |s| {
            s.status == Phase::Failed && s.reason == Reason::UnsupportedServer.as_str()
        })
        .await
        .status
        .unwrap();
    assert!(
        status
            .last_condition_message
            .contains("pod open-0: redis 6.2.14 is not supported"),
        "{status:#?}"
    );
    assert_eq!(status.current_primary, None, "nothing was promoted");
    let pod = env.pods().get("open-0").await.unwrap();
    let role = crate::harness::redis_command(&crate::harness::pod_ip(&pod), &["ROLE"]).await;
    assert!(role.contains("slave"), "still parked: {role:?}");

    let closed = env
        .wait_status("closed", "the pod fails", |s| {
            s.status == Phase::Failed && s.reason == Reason::PodsFailing.as_str()
        })
        .await
        .status
        .unwrap();
    // The server's own words, from its log (the container's termination message).
    assert!(
        closed.last_condition_message.contains("closed-0")
            && closed.last_condition_message.contains("ACL"),
        "{closed:#?}"
    );

    for name in ["open", "closed"] {
        env.patch_spec(name, serde_json::json!({"image": "redis:7.2"}))
            .await;
    }
    for name in ["open", "closed"] {
        let ri = env.wait_running(name).await;
        let server = &ri.status.unwrap().pods[0].server;
        assert!(server.starts_with("redis 7."), "{name}: {server}");
    }
}
