#!/usr/bin/env bash
# Builds the grading image of deploy/image/Containerfile without a registry or a container
# engine, for the real-node e2e tests (and for operators without docker/podman):
#   1. a root file system from Debian's packages: debootstrap --variant=minbase bookworm,
#      plus python3, python3-venv and ca-certificates;
#   2. the Python packages of requirements.txt downloaded from PyPI by the host's pip
#      (`pip download`) and installed inside the root file system (chroot) into the venv
#      /opt/grader, offline from those files; the `python3` kernel spec; user grader, uid 1000;
#   3. packed as an OCI image archive by oci-pack.py (one layer, config, manifest, index).
# The recipe is make-image.sh. Cached by content: the name carries a hash of make-image.sh,
# requirements.txt and oci-pack.py, so a changed recipe builds a new image and an unchanged one is instant:
#   ${GRADER_CACHE:-$HOME/.cache/grader}/image/grading-<hash>.oci.tar
# Prints GRADER_GRADING_IMAGE=<reference> and GRADER_GRADING_IMAGE_ARCHIVE=<path>.
# With --print it only prints them when the image is built, and exits 3 (building nothing)
# when it is not.
# Import it with: ctr -n k8s.io images import <archive> (kube-testkit does it for its node).
# Needs root (debootstrap, chroot), debootstrap, tar, python3 with pip on the host.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${GRADER_CACHE:-${HOME:?HOME is not set}/.cache/grader}/image"
hash="$(cat "$here/make-image.sh" "$here/requirements.txt" "$here/oci-pack.py" | sha256sum | cut -c1-16)"
ref="grader.invalid/grading:$hash"
archive="$cache/grading-$hash.oci.tar"

log() { echo "image/build.sh: $*" >&2; }

if [[ -f "$archive" ]]; then
    echo "GRADER_GRADING_IMAGE=$ref"
    echo "GRADER_GRADING_IMAGE_ARCHIVE=$archive"
    exit 0
fi
if [[ "${1:-}" == --print ]]; then
    log "not built yet: $archive"
    exit 3
fi
if [[ $EUID -ne 0 ]]; then
    log "ERROR: building the image needs root (debootstrap, chroot)"; exit 1
fi
for tool in debootstrap tar python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "ERROR: '$tool' is missing (bash e2e/control-plane/install-node-packages.sh installs debootstrap)"
        exit 1
    fi
done

mkdir -p "$cache"
exec 9>"$cache/grading.lock"
flock 9
[[ -f "$archive" ]] && { echo "GRADER_GRADING_IMAGE=$ref"; echo "GRADER_GRADING_IMAGE_ARCHIVE=$archive"; exit 0; }

work="$(mktemp -d "$cache/build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$SECONDS
bash "$here/make-image.sh" "$work" "$ref" "$archive.tmp"

mv -f "$archive.tmp" "$archive"
log "built $ref as $archive in $((SECONDS - start)) s ($(du -h "$archive" | cut -f1))"
echo "GRADER_GRADING_IMAGE=$ref"
echo "GRADER_GRADING_IMAGE_ARCHIVE=$archive"
