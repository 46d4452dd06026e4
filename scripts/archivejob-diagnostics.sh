#!/bin/sh
# Copy the diagnostics of an ArchiveJob's failed attempts out of its work volume.
#
#   scripts/archivejob-diagnostics.sh <archivejob name> [-n <namespace>] [--image <image>]
#
# Needs a work volume (a PersistentVolumeClaim, status.workVolume): starts a pod that mounts
# the claim read-only under the restricted security profile, copies
# job-<jobid>/diagnostics to ./diagnostics-<jobid>/ with kubectl cp, and deletes the pod.
# The image, node selector, tolerations and host network are the job pod's (from the
# ArchiveJob's Job); once the Job is gone, any image with tar and sleep will do (--image).
set -eu

name=""
namespace=""
image=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--namespace) namespace="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) name="$1"; shift ;;
  esac
done
[ -n "$name" ] || { echo "usage: $0 <archivejob> [-n namespace] [--image image]" >&2; exit 2; }
ns=${namespace:+-n "$namespace"}

get() { kubectl $ns get archivejob "$name" -o "jsonpath=$1"; }
job_id=$(get '{.spec.jobId}')
claim=$(get '{.status.workVolume}')
if [ -z "$claim" ]; then
  echo "$name has no work volume (status.workVolume): its diagnostics lived in the job pod's" \
       "emptyDir and ended with its container; the pod log has the reason:" >&2
  echo "  kubectl $ns logs job/$(get '{.status.jobName}')" >&2
  exit 1
fi
# The job pod's template, while its Job is kept: the image, and where and how such pods run
# (a ReadWriteOnce volume's node may be tainted for archive jobs: jobs.nodeSelector and
# tolerations; jobs.hostNetwork where pods have no pod network).
job=$(get '{.status.jobName}')
template() {
  [ -n "$job" ] || return 0
  kubectl $ns get job "$job" -o "jsonpath={.spec.template.spec.$1}" 2>/dev/null || true
}
[ -n "$image" ] || image=$(template 'containers[0].image')
[ -n "$image" ] || { echo "the Job is gone: name an image with tar and sleep (--image)" >&2; exit 2; }
tolerations=$(template tolerations)
[ -n "$tolerations" ] || tolerations='[]'
node_selector=$(template nodeSelector)
[ -n "$node_selector" ] || node_selector='{}'
host_network=$(template hostNetwork)
[ "$host_network" = true ] || host_network=false

pod="diagnostics-${job_id%%-*}"
overrides=$(cat <<EOF
{"spec": {
  "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                      "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
  "nodeSelector": $node_selector, "tolerations": $tolerations, "hostNetwork": $host_network,
  "terminationGracePeriodSeconds": 1,
  "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": "$claim", "readOnly": true}}],
  "containers": [{"name": "copy", "image": "$image", "command": ["sleep", "600"],
    "volumeMounts": [{"name": "work", "mountPath": "/work", "readOnly": true}],
    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": true}}]}}
EOF
)
kubectl $ns run "$pod" --restart=Never --image="$image" --overrides="$overrides" >/dev/null
trap 'kubectl $ns delete pod "$pod" --wait=false >/dev/null 2>&1 || true' EXIT
kubectl $ns wait --for=condition=Ready "pod/$pod" --timeout=120s >/dev/null
kubectl $ns cp "$pod:/work/job-$job_id/diagnostics" "./diagnostics-$job_id"
echo "diagnostics of $name in ./diagnostics-$job_id/:"
ls "./diagnostics-$job_id"
