#!/usr/bin/env bash
# Build the local control plane's binaries from pinned Go modules (the Go module proxy only).
#
#   cluster/build-tools.sh [build]   build into the cache unless already there (idempotent)
#   cluster/build-tools.sh sync      rewrite cluster/gomod/go.mod and go.sum from versions.env
#   cluster/build-tools.sh bin-dir   print the directory that holds (or will hold) the binaries
#
# Versions: cluster/versions.env (the only place they are set).
# Binaries: $MOODLE_ARCHIVER_CACHE_DIR/k8s-<KUBERNETES_VERSION>/bin, reused while the stamp (a hash
# of versions.env, both go.mod/go.sum and the build flags) matches.
# A cold build first downloads every module of both wrapper modules at once (the proxy answers
# in parallel; `go build` alone fetches lazily, a package at a time), then compiles.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gomod="$here/gomod"
versions_file="$here/versions.env"
# shellcheck source=versions.env
source "$versions_file"

cache_root="${MOODLE_ARCHIVER_CACHE_DIR:-$HOME/.cache/moodle-archive-operator}"
tools_dir="$cache_root/k8s-$KUBERNETES_VERSION"
bin_dir="$tools_dir/bin"
stamp_file="$tools_dir/.stamp"

# Two wrapper modules: cluster/gomod (Kubernetes with its staging modules mapped to the
# published v0.X.Y, plus etcd, Helm, crictl and rancher's local-path-provisioner, the dynamic
# PersistentVolume provisioner of the real node's StorageClass `local-path`, whose k8s.io/*
# needs agree with it, so their shared packages compile once) and cluster/gomod/kwok (KWOK with
# the k8s.io/* versions it was released with: it does not compile against the newer ones).
# Each entry: <module dir relative to cluster/gomod>:<binary name>=<Go main package>
tools=(
  ".:kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
  ".:kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
  ".:kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
  ".:kubelet=k8s.io/kubernetes/cmd/kubelet"
  ".:kubectl=k8s.io/kubernetes/cmd/kubectl"
  ".:etcd=go.etcd.io/etcd/server/v3"
  ".:helm=helm.sh/helm/v3/cmd/helm"
  ".:crictl=sigs.k8s.io/cri-tools/cmd/crictl"
  ".:local-path-provisioner=github.com/rancher/local-path-provisioner"
  "kwok:kwok=sigs.k8s.io/kwok/cmd/kwok"
)
# Each entry: <module dir>:<module>=<version that go.mod must resolve to>
pinned_modules=(
  ".:k8s.io/kubernetes=$KUBERNETES_VERSION"
  ".:go.etcd.io/etcd/server/v3=$ETCD_VERSION"
  ".:helm.sh/helm/v3=$HELM_VERSION"
  ".:sigs.k8s.io/cri-tools=$CRI_TOOLS_VERSION"
  ".:github.com/rancher/local-path-provisioner=$LOCAL_PATH_PROVISIONER_VERSION"
  "kwok:sigs.k8s.io/kwok=$KWOK_VERSION"
)
module_dirs=(. kwok)

# helpers to split the entries above
entry_dir() { echo "${1%%:*}"; }
entry_name() { local rest="${1#*:}"; echo "${rest%%=*}"; }
entry_value() { echo "${1#*=}"; }

log() { echo "cluster-tools: $*"; }
die() { echo "cluster-tools: ERROR: $*" >&2; exit 1; }

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

ldflags() {
  local kv="${KUBERNETES_VERSION#v}" major minor
  major="${kv%%.*}"; minor="${kv#*.}"; minor="${minor%%.*}"
  local flags="-s -w"
  local pkg
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major"
    flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  flags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  flags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
  flags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major"
  flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major"
  flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  flags+=" -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
  flags+=" -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION"  # local-path-provisioner's
  echo "$flags"
}

stamp() {
  local dir
  {
    cat "$versions_file"
    for dir in "${module_dirs[@]}"; do cat "$gomod/$dir"/go.{mod,sum}; done
    ldflags
    go version
  } | sha256sum | cut -c1-64
}

new_module() {  # dir, module path: start an empty go.mod (Go 1.24 language, as Kubernetes 1.34)
  mkdir -p "$gomod/$1"
  (cd "$gomod/$1" && rm -f go.mod go.sum && go mod init "$2" >/dev/null 2>&1 && go mod edit -go=1.24.0)
}

add_pins_and_tools() {  # dir: require the pinned modules and declare the tools of that dir
  local dir="$1" entry
  for entry in "${pinned_modules[@]}"; do
    [ "$(entry_dir "$entry")" = "$dir" ] || continue
    (cd "$gomod/$dir" && go mod edit "-require=$(entry_name "$entry")@$(entry_value "$entry")")
  done
  for entry in "${tools[@]}"; do
    [ "$(entry_dir "$entry")" = "$dir" ] || continue
    (cd "$gomod/$dir" && go mod edit "-tool=$(entry_value "$entry")")
  done
  log "go mod tidy in cluster/gomod/$dir (downloads the modules once)"
  (cd "$gomod/$dir" && go mod tidy)
}

sync_gomod() {
  command -v go >/dev/null || die "go not found on PATH"
  log "rewriting cluster/gomod/{,kwok/}go.mod from $versions_file"
  local kmod staging m
  kmod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$kmod" ] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"
  # the staging modules are the ones k8s.io/kubernetes replaces with ./staging/src/...
  staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod")"
  [ -n "$staging" ] || die "no staging replace lines found in $kmod"
  new_module . moodle-archive-operator/cluster-tools
  (
    cd "$gomod"
    go mod edit -godebug=default=go1.24
    for m in $staging; do go mod edit "-replace=$m=$m@$KUBERNETES_STAGING_VERSION"; done
  )
  add_pins_and_tools .
  new_module kwok moodle-archive-operator/cluster-tools-kwok
  add_pins_and_tools kwok
  check_gomod
  log "done: commit go.mod and go.sum of cluster/gomod and cluster/gomod/kwok"
}

check_gomod() {
  local entry dir mod want got
  for entry in "${pinned_modules[@]}"; do
    dir="$(entry_dir "$entry")"; mod="$(entry_name "$entry")"; want="$(entry_value "$entry")"
    got="$(cd "$gomod/$dir" && go list -m -f '{{.Version}}' "$mod")"
    [ "$got" = "$want" ] ||
      die "cluster/gomod/$dir resolves $mod to $got, versions.env says $want: run \`cluster/build-tools.sh sync\`"
  done
  got="$(cd "$gomod" && go list -m -f '{{if .Replace}}{{.Replace.Version}}{{end}}' k8s.io/api)"
  [ "$got" = "$KUBERNETES_STAGING_VERSION" ] ||
    die "cluster/gomod maps k8s.io/api to '$got', versions.env says $KUBERNETES_STAGING_VERSION: run \`cluster/build-tools.sh sync\`"
}

all_present() {
  local entry
  for entry in "${tools[@]}"; do [ -x "$bin_dir/$(entry_name "$entry")" ] || return 1; done
}

download_modules() {  # every module of every wrapper module, all at once
  local dir pids=() pid start=$SECONDS
  log "downloading the Go modules of cluster/gomod and cluster/gomod/kwok"
  for dir in "${module_dirs[@]}"; do
    (cd "$gomod/$dir" && go mod download) & pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || die "go mod download failed (is the Go module proxy reachable?)"; done
  log "modules downloaded in $((SECONDS - start)) s"
}

build() {
  command -v go >/dev/null || die "go not found on PATH (the build needs the Go toolchain)"
  local want dir entry pkgs tmp start=$SECONDS
  want="$(stamp)"
  if all_present && [ "$(cat "$stamp_file" 2>/dev/null)" = "$want" ]; then
    log "up to date: $bin_dir"
    return 0
  fi
  check_gomod
  download_modules
  tmp="$tools_dir/bin.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "building Kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl), etcd $ETCD_VERSION, Helm $HELM_VERSION, crictl $CRI_TOOLS_VERSION, local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION, KWOK $KWOK_VERSION"
  log "into $bin_dir with $(go version | awk '{print $3}') on $(nproc) cores; a cold build takes a while"
  for dir in "${module_dirs[@]}"; do
    pkgs=()
    for entry in "${tools[@]}"; do
      [ "$(entry_dir "$entry")" = "$dir" ] && pkgs+=("$(entry_value "$entry")")
    done
    log "go build in cluster/gomod/$dir: ${pkgs[*]}"
    (cd "$gomod/$dir" && go build -trimpath -ldflags "$(ldflags)" -o "$tmp/" "${pkgs[@]}")
  done
  # `go build -o dir/` names go.etcd.io/etcd/server/v3 after its last non-version element
  [ -f "$tmp/server" ] && mv "$tmp/server" "$tmp/etcd"
  for entry in "${tools[@]}"; do
    [ -x "$tmp/$(entry_name "$entry")" ] || die "build produced no $(entry_name "$entry") in $tmp"
  done
  mkdir -p "$bin_dir"
  for entry in "${tools[@]}"; do mv -f "$tmp/$(entry_name "$entry")" "$bin_dir/"; done
  rm -rf "$tmp" "$tools_dir/.stamp-localpath"
  echo "$want" >"$stamp_file"
  log "built in $((SECONDS - start)) s: $(for entry in "${tools[@]}"; do entry_name "$entry"; done | tr '\n' ' ')"
}

case "${1:-build}" in
  build) build ;;
  sync) sync_gomod ;;
  bin-dir) echo "$bin_dir" ;;
  *) die "usage: $0 [build|sync|bin-dir]" ;;
esac
