#!/usr/bin/env bash
# Installs Debian's `chromium` package for the status page test (grader-bin/tests/serve.rs,
# the_status_page_..., which runs it headless against `grader serve`; set CHROMIUM to use
# another binary). Idempotent: does nothing when chromium is on PATH. Prints the path of the
# browser on its last line.
#
#   bash scripts/install-chromium.sh
#
# Needs root (apt-get). Without it, or without network, it fails with a message; the page test
# then skips loudly (and fails under CI=true).
set -euo pipefail

if browser=$(command -v chromium 2>/dev/null); then
    echo "install-chromium.sh: already installed: $browser" >&2
    echo "$browser"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-chromium.sh: chromium is missing and this is not root; run: apt-get install chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# Fonts so that the screenshot shows text; no recommends (no desktop stack).
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
browser=$(command -v chromium)
echo "install-chromium.sh: installed $("$browser" --version 2>/dev/null || echo chromium)" >&2
echo "$browser"
