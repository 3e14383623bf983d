#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and property tests, the generated-file drift checks, and the
# end-to-end and install suites against the local cluster on the newest supported Kubernetes release with a real
# node (containers, kubelet, kube-proxy, DNS, the operator in-cluster); then the core end-to-end scenarios on the
# oldest supported release (real node too), and on the node agent (the opt-in fast mode the scale benchmark
# uses). Each stage's cluster is stopped before the next starts: they share the machine's bridge and ports.
# On the newest cluster too, before those: the server matrix, Valkey 9.1 and Redis 6.2 (see docs/user-guide.md,
# Servers and versions).
# SKIP_OLDEST=1, SKIP_AGENT=1 and SKIP_SERVERS=1 leave out those stages.
# The newest cluster is started here if needed and left running for fast re-runs; stop it with
# `bash devcluster/cluster.sh down`.
# Set REDIS_OPERATOR_E2E_KUBECONFIG to run the end-to-end suite against an existing cluster instead (then only
# that cluster is used, and the tests that need the local real node are left out).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
# End-to-end tests mostly wait on the cluster, so more of them run at once than there are cores.
THREADS=${TEST_THREADS:-4}

# The core scenarios: what runs on the oldest release and on the node agent.
CORE=(create_goes_through_creating_to_running_and_ready replicas_scale_up_and_down
  config_change_restarts_pods_with_the_new_value storage_growth_expands_claims_and_keeps_pods_and_data
  invalid_specs_fail_with_a_clear_reason_and_create_nothing delete_records_terminated_and_retains_claims
  replication::three_replicas_are_one_primary_and_two_live_replicas
  replication::failover_after_a_killed_primary_and_a_deleted_primary_loses_no_confirmed_write
  rollout::an_image_change_replaces_the_replicas_then_switches_over_once_then_the_old_primary
  security::rotation_keeps_the_previous_password_until_withdrawn_without_restarts_or_failed_writes
  admission::)

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# Tests that only a real node can run are ignored elsewhere; tests that stop the node for everyone (the kubelet)
# are named exclusive:: and run alone after the rest.
REAL=()
if [ -z "${REDIS_OPERATOR_E2E_KUBECONFIG:-}" ]; then
  echo "== local cluster: newest supported Kubernetes, real node"
  bash devcluster/cluster.sh up
  "$REPO/.devcluster/bin/kubectl" --kubeconfig "$REPO/.devcluster/kubeconfig" version
  [ "$(cat "$REPO/.devcluster/node-mode")" = real ] && REAL=(--include-ignored)
fi

echo "== tests (unit, property, drift, end-to-end, install)"
cargo test --workspace --all-targets -- --test-threads="$THREADS" "${REAL[@]}" --skip exclusive::
cargo test --test e2e -- --test-threads=1 "${REAL[@]}" exclusive::
cargo test --workspace --doc

[ -n "${REDIS_OPERATOR_E2E_KUBECONFIG:-}" ] && exit 0

if [ -z "${SKIP_SERVERS:-}" ]; then
  # The support matrix's other servers (devcluster/servers.sh installs them with the cluster): the Redis-level
  # suites (the client, the operator's passes over a fake API, the exporter) against real valkey-server 9.1
  # processes, the core scenarios with the Valkey image on the real node, and
  # Redis 6.2 reporting itself unsupported.
  echo "== the server matrix: Valkey 9.1 (Redis-level suite, core end-to-end scenarios), Redis 6.2 (refused)"
  REDIS_OPERATOR_TEST_SERVER=valkey-server cargo test --test redis_client --test reconcile --test exporter \
    -- --test-threads="$THREADS"
  REDIS_OPERATOR_TEST_SERVER=redis-server-6.2 cargo test --test redis_client the_server_reports_its_release
  REDIS_OPERATOR_E2E_IMAGE=valkey/valkey:9 cargo test --test e2e -- --test-threads="$THREADS" "${REAL[@]}" \
    "${CORE[@]}" live_config:: versions::the_suite_runs_the_server_its_image_names
fi

if [ -z "${SKIP_OLDEST:-}" ]; then
  echo "== core end-to-end scenarios on the oldest supported Kubernetes (real node)"
  bash devcluster/cluster.sh down
  (
    export DEVCLUSTER_K8S=oldest DEVCLUSTER_DIR=$REPO/.devcluster-oldest DEVCLUSTER_ETCD_PORT=12379 \
      DEVCLUSTER_ETCD_PEER_PORT=12380 DEVCLUSTER_APISERVER_PORT=16443 DEVCLUSTER_CM_PORT=20257
    bash devcluster/cluster.sh up
    "$DEVCLUSTER_DIR/bin/kubectl" --kubeconfig "$DEVCLUSTER_DIR/kubeconfig" version
    cargo test --test e2e -- --test-threads="$THREADS" --include-ignored "${CORE[@]}" real_node::
    bash devcluster/cluster.sh down
  )
fi

if [ -z "${SKIP_AGENT:-}" ]; then
  echo "== core end-to-end scenarios on the node agent (newest release)"
  bash devcluster/cluster.sh down
  (
    export DEVCLUSTER_NODE=agent DEVCLUSTER_DIR=$REPO/.devcluster-agent DEVCLUSTER_ETCD_PORT=22379 \
      DEVCLUSTER_ETCD_PEER_PORT=22380 DEVCLUSTER_APISERVER_PORT=26443 DEVCLUSTER_CM_PORT=30257
    bash devcluster/cluster.sh up
    cargo test --test e2e -- --test-threads="$THREADS" "${CORE[@]}"
    bash devcluster/cluster.sh down
  )
fi
