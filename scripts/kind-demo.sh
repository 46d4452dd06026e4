#!/usr/bin/env bash
# `make kind-demo`: the demo of `make demo` on a kind cluster, for a machine with Docker, kind,
# kubectl, helm and the internet (it cannot run on the project's own machines: no Docker
# engine, no registry). Images are built on the public base image (debian:bookworm-slim).
#
# Layout on the one kind node: the fake Moodle runs as a host-network pod (it listens on the
# node's loopback only) from the control-plane image with this repository mounted; gateway,
# operator and job pods use the host network too, so that they reach it at 127.0.0.1 exactly
# as the local node demo does (`*.hostNetwork=true`; never on a real cluster).
#
#   KIND_CLUSTER=moodle-archiver-demo  KIND_DEMO_KEEP=1 (keep the cluster)  ATTEMPTS=5
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-moodle-archiver-demo}"
ATTEMPTS="${ATTEMPTS:-5}"
TAG=kind-demo
MOODLE_PORT=18085
GATEWAY_PORT=18080
CACHE="${MOODLE_ARCHIVER_CACHE_DIR:-$HOME/.cache/moodle-archive-operator}"
NS=moodle-archiver
JOBS_NS=moodle-archiver-jobs

say() { echo "kind-demo: $*"; }
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { say "ERROR: $tool not found (kind-demo needs docker, kind, kubectl, helm)"; exit 1; }
done
[ -d "$CACHE/npm/node_modules" ] || { say "ERROR: MathJax not in $CACHE/npm: run \`make setup\` first"; exit 1; }

say "building the images (docker build, base debian:bookworm-slim)"
docker build -q -f operator/Dockerfile -t "moodle-archive-operator:$TAG" .
docker build -q -f job-image/Dockerfile -t "moodle-archive-job:$TAG" .

if ! kind get clusters | grep -qx "$CLUSTER"; then
  say "creating kind cluster $CLUSTER"
  cat <<EOF | kind create cluster --name "$CLUSTER" --wait 120s --config -
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraMounts:
      - {hostPath: "$PWD", containerPath: /moodle-archive-operator, readOnly: true}
      - {hostPath: "$CACHE/npm", containerPath: /moodle-archiver-npm/npm, readOnly: true}
EOF
fi
cleanup() {
  if [ "${KIND_DEMO_KEEP:-0}" = 1 ]; then
    say "the cluster stays: kubectl --context kind-$CLUSTER get archivejobs -n $JOBS_NS; kind delete cluster --name $CLUSTER"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null && say "deleted kind cluster $CLUSTER"
  fi
}
trap cleanup EXIT
CTX="--context kind-$CLUSTER"
kind load docker-image --name "$CLUSTER" "moodle-archive-operator:$TAG" "moodle-archive-job:$TAG"

say "installing the chart"
# shellcheck disable=SC2086
helm $CTX upgrade --install moodle-archiver charts/moodle-archive-operator --namespace "$NS" \
  --create-namespace --wait --timeout 5m \
  --set image.repository=moodle-archive-operator --set image.tag="$TAG" \
  --set jobs.image.repository=moodle-archive-job --set jobs.image.tag="$TAG" \
  --set "gateway.allowedMoodleUrls={http://127.0.0.1:$MOODLE_PORT}" \
  --set gateway.hostNetwork=true --set gateway.host=127.0.0.1 --set gateway.port="$GATEWAY_PORT" \
  --set operator.hostNetwork=true --set operator.livenessPort=18081 --set operator.metricsPort=18082 \
  --set jobs.hostNetwork=true --set maxParallelJobs=2 \
  --set jobs.resources.requests.cpu=250m --set jobs.resources.requests.memory=512Mi

say "starting the fake Moodle (quiz of $ATTEMPTS attempts with formulas); it posts the task"
# shellcheck disable=SC2086
kubectl $CTX create namespace moodle-demo --dry-run=client -o yaml | kubectl $CTX apply -f - >/dev/null
# shellcheck disable=SC2086
kubectl $CTX -n moodle-demo delete pod fake-moodle --ignore-not-found --wait >/dev/null
cat <<EOF | kubectl $CTX apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: fake-moodle, namespace: moodle-demo}
spec:
  hostNetwork: true
  restartPolicy: Never
  containers:
    - name: moodle
      image: moodle-archive-operator:$TAG
      imagePullPolicy: Never
      workingDir: /src
      command: [python, -m, tests.fakemoodle, --port, "$MOODLE_PORT", --quiz-attempts, "$ATTEMPTS",
                --attachments, "1", --backups, quiz, --report-latency, "0.2",
                --worker-url, "http://127.0.0.1:$GATEWAY_PORT", --jobs-file, /tmp/jobs.json]
      env:
        - {name: PYTHONPATH, value: /src}
        - {name: MOODLE_ARCHIVER_CACHE_DIR, value: /cache}
      volumeMounts:
        - {name: src, mountPath: /src, readOnly: true}
        - {name: npm, mountPath: /cache, readOnly: true}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - {name: src, hostPath: {path: /moodle-archive-operator}}
    - {name: npm, hostPath: {path: /moodle-archiver-npm}}
    - {name: tmp, emptyDir: {}}
EOF

say "following the ArchiveJob"
phase=""
for _ in $(seq 1 600); do
  # shellcheck disable=SC2086
  line="$(kubectl $CTX get archivejobs -n "$JOBS_NS" --no-headers 2>/dev/null | head -1 || true)"
  [ -n "$line" ] && echo "  $line"
  phase="$(echo "$line" | awk '{print $2}')"
  case "$phase" in Succeeded|Failed|TimedOut|Cancelled) break ;; esac
  sleep 2
done
# shellcheck disable=SC2086
kubectl $CTX get archivejobs -n "$JOBS_NS"
# shellcheck disable=SC2086
kubectl $CTX -n moodle-demo logs fake-moodle | tail -n 5
[ "$phase" = Succeeded ] || { say "the task ended $phase: kubectl describe archivejob -n $JOBS_NS"; exit 1; }
say "done: the archive was accepted by the fake Moodle (its log above)"
