#!/usr/bin/env bash
# Debian packages of the local node and the image builds: containerd (with its CRI plugin),
# runc, the CNI plugins, debootstrap and buildah. Idempotent.
set -euo pipefail
packages=(containerd runc containernetworking-plugins debootstrap buildah openssl gcc libc6-dev)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "node-deps: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts containerd as a service where systemd runs; the node starts its own instance.
echo "node-deps: ready ($(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), buildah $(buildah --version | awk '{print $3}'))"
