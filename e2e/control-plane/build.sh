#!/usr/bin/env bash
# Provides the binaries of the grader's test control plane (see README.md):
#   kube-apiserver  built from k8s.io/kubernetes (Go module proxy), module ./kube-apiserver;
#   etcd            Debian's etcd-server package (installed with apt-get when missing and
#                   running as root), else built from go.etcd.io/etcd/server/v3, module ./etcd
#                   (also when GRADER_ETCD_FROM_SOURCE=1).
# Outputs are cached outside the repository, by version, so a second run is a no-op:
#   ${GRADER_CACHE:-$HOME/.cache/grader}/control-plane/{kube-apiserver-vX,etcd-vY}
# Prints the paths as GRADER_KUBE_APISERVER=... and GRADER_ETCD=... lines.
# kube-testkit (e2e/kube-testkit) finds them there by the same versions.
#
# With --node it also builds the binaries of the real node (kubelet, kube-scheduler,
# kube-controller-manager) from the same k8s.io/kubernetes release, module ./kube-node,
# cached as {kubelet,kube-scheduler,kube-controller-manager}-vX, and prints
# GRADER_KUBELET=..., GRADER_KUBE_SCHEDULER=..., GRADER_KUBE_CONTROLLER_MANAGER=... lines;
# and the node's sandbox image (module ./pause, packed as an OCI archive by
# deploy/image/oci-pack.py), cached as pause-P.oci.tar, printed as GRADER_PAUSE_IMAGE=<ref>
# and GRADER_PAUSE_IMAGE_ARCHIVE=<path>.
set -euo pipefail

with_node=0
for arg in "$@"; do
    case "$arg" in
        --node) with_node=1 ;;
        *) echo "build.sh: unknown argument '$arg' (expected --node)" >&2; exit 2 ;;
    esac
done

KUBE_VERSION=v1.34.4
# Debian bookworm's etcd-server; kube-apiserver v1.34 accepts it (it only turns off
# RequestWatchProgress, which etcd < 3.4.31 lacks).
ETCD_VERSION=v3.4.23
# The node's sandbox image (module ./pause); bump when pause/main.go changes.
PAUSE_VERSION=1
# The fallback, built from source: the etcd release Kubernetes v1.34 is tested with.
ETCD_SOURCE_VERSION=v3.6.4

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${GRADER_CACHE:-${HOME:?HOME is not set}/.cache/grader}/control-plane"
apiserver="$cache/kube-apiserver-$KUBE_VERSION"
etcd_debian="$cache/etcd-$ETCD_VERSION"
etcd_source="$cache/etcd-$ETCD_SOURCE_VERSION"

need_go() {
    if ! command -v go >/dev/null 2>&1; then
        echo "build.sh: ERROR: 'go' is not on PATH; Go >= 1.24 is needed to build $1." >&2
        echo "build.sh: put a Go toolchain on PATH (e.g. /usr/local/go/bin) and re-run." >&2
        exit 1
    fi
    local version
    version="$(go env GOVERSION)"
    if [[ "$(printf '%s\n' go1.24 "$version" | sort -V | head -n1)" != go1.24 ]]; then
        echo "build.sh: ERROR: $version is too old; Go >= 1.24 is needed to build $1." >&2
        exit 1
    fi
}

# go_build DIR OUTPUT [LDFLAGS...]: builds the main package in DIR into OUTPUT (atomically).
go_build() {
    local dir="$1" out="$2" ldflags="$3"
    local tmp="$out.tmp.$$"
    echo "build.sh: building $(basename "$out") in $dir (slow on 2 cores: several minutes) ..." >&2
    local start=$SECONDS
    (cd "$dir" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" \
        go build -trimpath -ldflags="-s -w $ldflags" -o "$tmp" .)
    mv -f "$tmp" "$out"
    echo "build.sh: built $out in $((SECONDS - start)) s ($(du -h "$out" | cut -f1))" >&2
}

mkdir -p "$cache"

v="${KUBE_VERSION#v}"
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
    -X k8s.io/component-base/version.gitMajor=${v%%.*} \
    -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$v") \
    -X k8s.io/component-base/version.gitTreeState=clean"

if [[ ! -x "$apiserver" ]]; then
    need_go kube-apiserver
    go_build "$here/kube-apiserver" "$apiserver" "$kube_ldflags"
fi

node_binaries=(kubelet kube-scheduler kube-controller-manager)
if [[ $with_node == 1 ]]; then
    for name in "${node_binaries[@]}"; do
        if [[ ! -x "$cache/$name-$KUBE_VERSION" ]]; then
            need_go "$name"
            go_build "$here/kube-node/$name" "$cache/$name-$KUBE_VERSION" "$kube_ldflags"
        fi
    done
    pause_archive="$cache/pause-$PAUSE_VERSION.oci.tar"
    if [[ ! -f "$pause_archive" ]]; then
        need_go pause
        pause_root="$(mktemp -d "$cache/pause-root-XXXXXX")"
        go_build "$here/pause" "$pause_root/pause" ""
        python3 "$here/../../deploy/image/oci-pack.py" "$pause_root" \
            "grader.invalid/pause:$PAUSE_VERSION" "$pause_archive" --cmd /pause --user 65535:65535 >/dev/null
        rm -rf "$pause_root"
    fi
fi

debian_etcd_version() {
    if [[ -x /usr/bin/etcd ]]; then
        /usr/bin/etcd --version 2>/dev/null | sed -n 's/^etcd Version: /v/p'
    fi
}

etcd=""
if [[ "${GRADER_ETCD_FROM_SOURCE:-}" != 1 ]]; then
    if [[ -x "$etcd_debian" ]]; then
        etcd="$etcd_debian"
    else
        if [[ "$(debian_etcd_version)" != "$ETCD_VERSION" && $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "build.sh: installing Debian's etcd-server ..." >&2
            export DEBIAN_FRONTEND=noninteractive
            { apt-get install -y -qq etcd-server || { apt-get update -qq && apt-get install -y -qq etcd-server; }; } >&2 || true
        fi
        if [[ "$(debian_etcd_version)" == "$ETCD_VERSION" ]]; then
            ln -sfn /usr/bin/etcd "$etcd_debian"
            etcd="$etcd_debian"
        else
            echo "build.sh: Debian's etcd-server $ETCD_VERSION is not available (found: '$(debian_etcd_version)'); building etcd from source" >&2
        fi
    fi
fi
if [[ -z "$etcd" ]]; then
    if [[ ! -x "$etcd_source" ]]; then
        need_go etcd
        go_build "$here/etcd" "$etcd_source" ""
    fi
    etcd="$etcd_source"
fi

echo "GRADER_KUBE_APISERVER=$apiserver"
echo "GRADER_ETCD=$etcd"
if [[ $with_node == 1 ]]; then
    echo "GRADER_KUBELET=$cache/kubelet-$KUBE_VERSION"
    echo "GRADER_KUBE_SCHEDULER=$cache/kube-scheduler-$KUBE_VERSION"
    echo "GRADER_KUBE_CONTROLLER_MANAGER=$cache/kube-controller-manager-$KUBE_VERSION"
    echo "GRADER_PAUSE_IMAGE=grader.invalid/pause:$PAUSE_VERSION"
    echo "GRADER_PAUSE_IMAGE_ARCHIVE=$pause_archive"
fi
