#!/usr/bin/env bash
# Checks the devcluster's S3 store (SeaweedFS) with plain curl and AWS SigV4: a bucket is created, an object PUT,
# read back byte for byte, listed and deleted, then the bucket; a request signed with a wrong secret and an
# unsigned one are refused (403). With a real node, a pod reaches the endpoint too (and is refused unsigned).
#
# Usage: devcluster/smoke-s3.sh     (after `devcluster/cluster.sh up`; honours DEVCLUSTER_DIR)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
eval "$(bash "$REPO/devcluster/cluster.sh" env)"
export KUBECONFIG
TIMEOUT=${SMOKE_TIMEOUT:-180}

step() { echo "[smoke-s3] $*"; }
fail() { echo "[smoke-s3] FAILED: $*" >&2; exit 1; }

[ -n "${DEVCLUSTER_S3_ENDPOINT:-}" ] || fail "\`cluster.sh env\` printed no S3 endpoint: run \`devcluster/cluster.sh up\`"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BUCKET=devcluster-smoke-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
KEY=dir/object.bin
SIGV4=(--aws-sigv4 "aws:amz:$DEVCLUSTER_S3_REGION:s3" --user "$DEVCLUSTER_S3_ACCESS_KEY_ID:$DEVCLUSTER_S3_SECRET_ACCESS_KEY")

# request EXPECTED_STATUS METHOD PATH [CURL ARGS...]: a request signed with the admin keys unless the curl
# arguments carry their own; the response body lands in $WORK/body.
request() {
  local want=$1 method=$2 path=$3 got
  shift 3
  local auth=("${SIGV4[@]}")
  if [ "${1:-}" = --unsigned ]; then auth=(); shift; fi
  if [ "${1:-}" = --secret ]; then
    auth=(--aws-sigv4 "aws:amz:$DEVCLUSTER_S3_REGION:s3" --user "$DEVCLUSTER_S3_ACCESS_KEY_ID:$2")
    shift 2
  fi
  got=$(curl -s -o "$WORK/body" -w '%{http_code}' --max-time 30 -X "$method" "${auth[@]}" "$@" \
    "$DEVCLUSTER_S3_ENDPOINT$path") || true
  [ "$got" = "$want" ] || fail "$method $path: HTTP $got, expected $want: $(head -c 400 "$WORK/body" 2>/dev/null)"
  step "$method $path -> $got"
}
error_code() { sed -n 's:.*<Code>\(.*\)</Code>.*:\1:p' "$WORK/body"; }

step "endpoint $DEVCLUSTER_S3_ENDPOINT, region $DEVCLUSTER_S3_REGION, access key $DEVCLUSTER_S3_ACCESS_KEY_ID"
request 200 PUT "/$BUCKET"

head -c 1048583 /dev/urandom >"$WORK/object"
request 200 PUT "/$BUCKET/$KEY" -T "$WORK/object"
request 200 GET "/$BUCKET/$KEY"
cmp -s "$WORK/object" "$WORK/body" || fail "GET returned other bytes than were PUT"
step "GET returned the $(stat -c %s "$WORK/body") bytes PUT (sha256 $(sha256sum <"$WORK/body" | cut -c1-16)...)"

request 200 GET "/$BUCKET?list-type=2"
grep -q "<Key>$KEY</Key>" "$WORK/body" || fail "the listing lacks $KEY: $(cat "$WORK/body")"
grep -q "<Size>1048583</Size>" "$WORK/body" || fail "the listing shows another size: $(cat "$WORK/body")"
step "the listing holds $KEY, 1048583 bytes"

request 403 GET "/$BUCKET/$KEY" --secret "wrong$DEVCLUSTER_S3_SECRET_ACCESS_KEY"
step "wrong secret refused: $(error_code)"
request 403 GET "/$BUCKET/$KEY" --unsigned
step "unsigned request refused: $(error_code)"

request 204 DELETE "/$BUCKET/$KEY"
request 404 GET "/$BUCKET/$KEY"
request 200 GET "/$BUCKET?list-type=2"
! grep -q "<Key>" "$WORK/body" || fail "the bucket still lists objects: $(cat "$WORK/body")"
request 204 DELETE "/$BUCKET"
request 404 GET "/$BUCKET?list-type=2"

# A pod of a real node has its own network: it must reach the endpoint on the node's bridge address.
# (The node agent's pods are host processes and reach it as the host does.)
if [ "$(cat "$(dirname "$KUBECONFIG")/node-mode" 2>/dev/null)" = real ]; then
  POD=s3-smoke-$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
  step "pod $POD: unsigned GET $DEVCLUSTER_S3_ENDPOINT/ with busybox wget"
  kubectl run "$POD" --image=redis:7.2 --restart=Never --command -- \
    sh -c "wget -S -O /dev/null '$DEVCLUSTER_S3_ENDPOINT/' 2>&1; true" >/dev/null
  deadline=$((SECONDS + TIMEOUT))
  until [ "$(kubectl get pod "$POD" -o 'jsonpath={.status.phase}')" = Succeeded ]; do
    [ $SECONDS -lt $deadline ] || { kubectl get pod "$POD" -o wide >&2; fail "pod $POD did not complete"; }
    sleep 0.5
  done
  reply=$(kubectl logs "$POD")
  kubectl delete pod "$POD" --wait=false >/dev/null
  grep -q '403 Forbidden' <<<"$reply" || fail "the pod did not get the S3 store's 403: $reply"
  step "the pod got: $(grep -m1 'HTTP/1.1' <<<"$reply" | sed 's/^ *//')"
fi

echo "[smoke-s3] passed"
