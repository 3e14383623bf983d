#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and property tests, the generated-file drift checks, the
# end-to-end and install suites against the local cluster on the newest supported Kubernetes release (first with
# the node agent, then again on a real node: containers, kubelet, kube-proxy, DNS, the operator in-cluster), and
# the core end-to-end scenarios on the oldest supported release (a second local cluster beside the first).
# SKIP_REAL_NODE=1 and SKIP_OLDEST=1 leave out those stages.
# Clusters are started here if needed and left running for fast re-runs; stop them with
# `bash devcluster/cluster.sh down` (and the same with the DEVCLUSTER_* settings of the oldest one, below).
# Set REDIS_OPERATOR_E2E_KUBECONFIG to run the end-to-end suite against an existing cluster instead (then only
# that cluster is used).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
# End-to-end tests mostly wait on the cluster, so more of them run at once than there are cores.
THREADS=${TEST_THREADS:-4}

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

if [ -z "${REDIS_OPERATOR_E2E_KUBECONFIG:-}" ]; then
  echo "== local cluster (newest supported Kubernetes)"
  bash devcluster/cluster.sh up
  "$REPO/.devcluster/bin/kubectl" --kubeconfig "$REPO/.devcluster/kubeconfig" version
fi

echo "== tests (unit, property, drift, end-to-end, install)"
cargo test --workspace --all-targets -- --test-threads="$THREADS"
cargo test --workspace --doc

# The real node's settings: its own state directory, ports, bridge and ranges (beside the node agent's cluster).
REAL_NODE_ENV=(DEVCLUSTER_NODE=real DEVCLUSTER_DIR="$REPO/.devcluster-real" DEVCLUSTER_ETCD_PORT=22379
  DEVCLUSTER_ETCD_PEER_PORT=22380 DEVCLUSTER_APISERVER_PORT=26443 DEVCLUSTER_CM_PORT=30257)

if [ -z "${REDIS_OPERATOR_E2E_KUBECONFIG:-}" ] && [ -z "${SKIP_REAL_NODE:-}" ]; then
  echo "== the real node: containers, kubelet, kube-proxy, DNS, the operator in-cluster (newest release)"
  # The node agent's cluster is stopped first to free the machine.
  bash devcluster/cluster.sh down
  env "${REAL_NODE_ENV[@]}" bash devcluster/cluster.sh up
  # Every end-to-end and install test, and those that only the real node can run (ignored elsewhere).
  env "${REAL_NODE_ENV[@]}" cargo test --test e2e -- --test-threads="$THREADS" --include-ignored
  env "${REAL_NODE_ENV[@]}" cargo test --test install -- --test-threads="$THREADS" --include-ignored
  env "${REAL_NODE_ENV[@]}" bash devcluster/cluster.sh down
fi

if [ -z "${REDIS_OPERATOR_E2E_KUBECONFIG:-}" ] && [ -z "${SKIP_OLDEST:-}" ]; then
  echo "== core end-to-end scenarios on the oldest supported Kubernetes"
  # Its own state directory, ports and pod addresses; the newest cluster is stopped first to free the machine.
  bash devcluster/cluster.sh down
  export DEVCLUSTER_K8S=oldest DEVCLUSTER_DIR=$REPO/.devcluster-oldest DEVCLUSTER_ETCD_PORT=12379 \
    DEVCLUSTER_ETCD_PEER_PORT=12380 DEVCLUSTER_APISERVER_PORT=16443 DEVCLUSTER_CM_PORT=20257 \
    DEVCLUSTER_POD_CIDR_PREFIX=127.2
  bash devcluster/cluster.sh up
  "$DEVCLUSTER_DIR/bin/kubectl" --kubeconfig "$DEVCLUSTER_DIR/kubeconfig" version
  cargo test --test e2e -- --test-threads="$THREADS" \
    create_goes_through_creating_to_running_and_ready replicas_scale_up_and_down \
    config_change_restarts_pods_with_the_new_value storage_growth_expands_claims_and_keeps_pods_and_data \
    invalid_specs_fail_with_a_clear_reason_and_create_nothing delete_records_terminated_and_retains_claims \
    replication::three_replicas_are_one_primary_and_two_live_replicas \
    replication::failover_after_a_killed_primary_and_a_deleted_primary_loses_no_confirmed_write \
    rollout::an_image_change_replaces_the_replicas_then_switches_over_once_then_the_old_primary \
    security::rotation_keeps_the_previous_password_until_withdrawn_without_restarts_or_failed_writes \
    admission::
  bash devcluster/cluster.sh down
fi
