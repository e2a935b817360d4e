#!/usr/bin/env bash
# Builds autofix's offline sandbox base image: a minimal Debian bookworm with python3, made with
# debootstrap from the Debian mirror that apt already uses (no image registry is needed), then
# `docker import`ed. The host's CA bundle goes in so that `pip install` in derived images works
# behind TLS-intercepting proxies.
#   usage: sandboxes/base/build.sh [IMAGE_NAME]   (default autofix/base-bookworm:latest)
set -euo pipefail
image="${1:-autofix/base-bookworm:latest}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image already present"; exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
mirror=$(grep -shoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null \
         | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
mirror="${mirror:-http://deb.debian.org/debian}"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror (about a minute) ..."
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$image" >/dev/null
echo "built $image"
