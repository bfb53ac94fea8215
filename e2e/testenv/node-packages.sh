#!/usr/bin/env bash
# Installs the Debian packages a real e2e node (e2e/src/node.rs) and the images it runs
# (e2e/src/oci/) need: containerd, runc, busybox-static, musl-tools and iproute2.
# Idempotent and quiet: it does nothing when everything is installed and runs
# `apt-get update` only when something is missing. Needs root.
#
# The node starts its own containerd process with its own config, socket and state. If
# the package's systemd unit starts the system containerd, the tests neither use nor stop
# it.
set -euo pipefail

packages=(containerd runc busybox-static musl-tools iproute2)
missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "[node-packages] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
