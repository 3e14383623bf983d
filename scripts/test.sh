#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and property tests, the generated-file drift checks, and
# the end-to-end suite against the local cluster (started here if needed; it is left running for fast re-runs,
# stop it with `bash devcluster/cluster.sh down`). Set REDIS_OPERATOR_E2E_KUBECONFIG to run the end-to-end
# suite against an existing cluster instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

if [ -z "${REDIS_OPERATOR_E2E_KUBECONFIG:-}" ]; then
  echo "== local cluster"
  bash devcluster/cluster.sh up
fi

echo "== tests (unit, property, drift, end-to-end)"
# End-to-end tests mostly wait on the cluster, so more of them run at once than there are cores.
cargo test --workspace --all-targets -- --test-threads="${TEST_THREADS:-4}"
cargo test --workspace --doc
