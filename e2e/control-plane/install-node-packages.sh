#!/usr/bin/env bash
# Installs the Debian packages the real test node needs (see ../kube-testkit/src/real_node.rs):
#   containerd  the CRI runtime kubelet talks to (Debian bookworm: 1.6.x, CRI v1);
#   runc        the OCI runtime containerd starts containers with;
#   containernetworking-plugins  CNI plugins (bridge, host-local, loopback) for pod networks;
#   debootstrap builds the grading image's root file system (deploy/image/build.sh);
#   iptables, conntrack, ethtool, socat, kmod  what kubelet and its checks call on a node.
# Does nothing when all are present; needs root and apt-get otherwise.
set -euo pipefail

packages=(containerd runc containernetworking-plugins debootstrap iptables conntrack ethtool socat kmod)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-packages.sh: ERROR: missing Debian packages: ${missing[*]} (run as root with apt-get)" >&2
    exit 1
fi
echo "install-packages.sh: installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
{ apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; } >&2
# The kit runs its own containerd with a private configuration; the distribution's
# service (when an init system started it) is not used.
