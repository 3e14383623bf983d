#!/usr/bin/env bash
# Builds a release with one version everywhere: the operator binary and its image, the CRD bundle and the Helm
# chart, into dist/ with their SHA-256 sums.
#
# Usage: scripts/release.sh VERSION   sets VERSION in Cargo.toml, the chart (version and appVersion) and the
#                                     kustomize image tag, then builds dist/:
#          redis-operator-VERSION.tar          the operator image (Docker image archive: docker load, ctr import)
#          redis-operator-crds-VERSION.yaml    both CRDs
#          redis-operator-VERSION.tgz          the Helm chart (helm package)
#          SHA256SUMS
# The image is built as the Dockerfile lays it out, without a container daemon (devcluster/images.sh); helm is
# the one devcluster/cluster.sh builds (or any on the PATH). Commit the version changes and tag vVERSION.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION=${1:?usage: scripts/release.sh VERSION}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "not a semantic version: $VERSION" >&2; exit 2; }
CHART=deploy/helm/redis-operator

# One version everywhere (tests/claims.rs checks they agree).
sed -i -E "0,/^version = \".*\"/s//version = \"$VERSION\"/" Cargo.toml
sed -i -E "s/^version: .*/version: $VERSION/; s/^appVersion: .*/appVersion: \"$VERSION\"/" "$CHART/Chart.yaml"
sed -i -E "s/^    newTag: .*/    newTag: \"$VERSION\"/" deploy/base/kustomization.yaml
cargo build --release --bin redis-operator

mkdir -p dist
rm -f dist/*
DEVCLUSTER_CACHE=$PWD/dist/.cache DEVCLUSTER_OPERATOR_BINARY=$PWD/target/release/redis-operator \
  DEVCLUSTER_OPERATOR_TAG=redis-operator:$VERSION \
  bash devcluster/images.sh build redis-operator
mv dist/.cache/images/redis-operator-*.tar "dist/redis-operator-$VERSION.tar"
rm -rf dist/.cache
{ cat crds/redisinstance.yaml; echo "---"; cat crds/redisbackup.yaml; } >"dist/redis-operator-crds-$VERSION.yaml"
HELM=$(command -v helm || echo "$PWD/.devcluster/bin/helm")
"$HELM" lint --strict "$CHART"
"$HELM" package "$CHART" --destination dist >/dev/null
(cd dist && sha256sum -- * >SHA256SUMS && cat SHA256SUMS)
