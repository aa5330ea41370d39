#!/usr/bin/env bash
# Builds the grading image of deploy/image/Containerfile without a registry or a container
# engine, for the real-node e2e tests (and for operators without docker/podman):
#   1. a root file system from Debian's packages: debootstrap --variant=minbase bookworm,
#      plus python3, python3-venv and ca-certificates;
#   2. the Python packages of requirements.txt downloaded from PyPI by the host's pip
#      (`pip download`) and installed inside the root file system (chroot) into the venv
#      /opt/grader, offline from those files; the `python3` kernel spec; user grader, uid 1000;
#   3. packed as an OCI image archive by oci-pack.py (one layer, config, manifest, index).
# Cached by content: the name carries a hash of this script, requirements.txt and
# oci-pack.py, so a changed recipe builds a new image and an unchanged one is instant:
#   ${GRADER_CACHE:-$HOME/.cache/grader}/image/grading-<hash>.oci.tar
# Prints GRADER_GRADING_IMAGE=<reference> and GRADER_GRADING_IMAGE_ARCHIVE=<path>.
# Import it with: ctr -n k8s.io images import <archive> (kube-testkit does it for its node).
# Needs root (debootstrap, chroot), debootstrap, tar, python3 with pip on the host.
set -euo pipefail

SUITE=bookworm
MIRROR="${GRADER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${GRADER_CACHE:-${HOME:?HOME is not set}/.cache/grader}/image"
hash="$(cat "$here/build.sh" "$here/requirements.txt" "$here/oci-pack.py" | sha256sum | cut -c1-16)"
ref="grader.invalid/grading:$hash"
archive="$cache/grading-$hash.oci.tar"

log() { echo "image/build.sh: $*" >&2; }

if [[ -f "$archive" ]]; then
    echo "GRADER_GRADING_IMAGE=$ref"
    echo "GRADER_GRADING_IMAGE_ARCHIVE=$archive"
    exit 0
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
rootfs="$work/rootfs"
cleanup() {
    for m in "$rootfs/wheels" "$rootfs/proc" "$rootfs/dev"; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    rm -rf "$work"
}
trap cleanup EXIT

start=$SECONDS
log "debootstrap $SUITE (minbase + python3) from $MIRROR ..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -30 "$work/debootstrap.log" >&2; log "ERROR: debootstrap failed"; exit 1; }
log "root file system ready after $((SECONDS - start)) s"

# The Python packages, fetched by the host's pip for the image's interpreter (cp311, glibc
# of bookworm), then installed offline inside the root file system.
py_version="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
mkdir -p "$work/wheels" "$rootfs/wheels"
log "pip download for Python $py_version ..."
python3 -m pip download --quiet --dest "$work/wheels" --python-version "$py_version" \
    --platform manylinux_2_36_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform linux_x86_64 --only-binary=:all: \
    -r "$here/requirements.txt" pip
mount --bind "$work/wheels" "$rootfs/wheels"
mount -t proc proc "$rootfs/proc"
mount --bind /dev "$rootfs/dev"
cp "$here/requirements.txt" "$rootfs/tmp/requirements.txt"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 sh -euc '
    python3 -m venv /opt/grader
    /opt/grader/bin/pip install --quiet --no-index --find-links /wheels --no-cache-dir \
        --disable-pip-version-check -r /tmp/requirements.txt
    /opt/grader/bin/python -m ipykernel install --prefix /opt/grader --name python3 >/dev/null
    /opt/grader/bin/grader-convert --help >/dev/null
    useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin grader
    rm -f /tmp/requirements.txt
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/* /root/.cache
    find /opt/grader -name __pycache__ -type d -prune -exec rm -rf {} +
'
umount -l "$rootfs/wheels" "$rootfs/proc" "$rootfs/dev"
rmdir "$rootfs/wheels"
log "Python packages installed after $((SECONDS - start)) s ($(du -sh "$rootfs" | cut -f1))"

python3 "$here/oci-pack.py" "$rootfs" "$ref" "$archive.tmp" \
    --user 1000:1000 --workdir /home/grader \
    --env PATH=/opt/grader/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env HOME=/home/grader --env PYTHONDONTWRITEBYTECODE=1 --env LANG=C.UTF-8 >/dev/null
mv -f "$archive.tmp" "$archive"
log "built $ref as $archive in $((SECONDS - start)) s ($(du -h "$archive" | cut -f1))"
echo "GRADER_GRADING_IMAGE=$ref"
echo "GRADER_GRADING_IMAGE_ARCHIVE=$archive"
