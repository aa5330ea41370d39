#!/usr/bin/env bash
# The recipe of the grading image, run by build.sh (which caches its output by the hash of
# this file, requirements.txt and oci-pack.py): make-image.sh WORK_DIR REF OUT.tar
# Builds a root file system in WORK_DIR/rootfs and packs it as the OCI archive OUT.tar
# naming the image REF. Needs root, debootstrap, tar, python3 with pip.
set -euo pipefail

SUITE=bookworm
MIRROR="${GRADER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$1"
ref="$2"
rootfs="$work/rootfs"
log() { echo "image/make-image.sh: $*" >&2; }
cleanup() {
    for m in "$rootfs/wheels" "$rootfs/proc" "$rootfs/dev"; do
        if mountpoint -q "$m" 2>/dev/null; then umount -l "$m"; fi
    done
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
    # Bytecode for every module of the interpreter and the venv, written now: the pods run
    # as uid 1000 and cannot write __pycache__ under these root-owned dirs, so without it
    # each pod compiles all it imports (the tool, nbconvert, ipykernel: ~1900 modules,
    # about 2.4 CPU-s per pod). Hash-based (checked-hash: the source is hashed, not its
    # mtime compared): the layer is packed with every mtime set to 0 (oci-pack.py), which
    # makes timestamp-based caches (also those Debian wrote for the standard library)
    # stale in the container; -f rewrites them.
    stdlib="$(python3 -c "import sysconfig; print(sysconfig.get_path(\"stdlib\"))")"
    python3 -m compileall -q -f --invalidation-mode checked-hash \
        "$stdlib" /usr/lib/python3/dist-packages /opt/grader/lib >/dev/null
'
umount -l "$rootfs/wheels" "$rootfs/proc" "$rootfs/dev"
rmdir "$rootfs/wheels"
log "Python packages installed after $((SECONDS - start)) s ($(du -sh "$rootfs" | cut -f1))"

python3 "$here/oci-pack.py" "$rootfs" "$ref" "$3" \
    --user 1000:1000 --workdir /home/grader \
    --env PATH=/opt/grader/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env HOME=/home/grader --env PYTHONDONTWRITEBYTECODE=1 --env LANG=C.UTF-8 >/dev/null
log "packed $ref"
