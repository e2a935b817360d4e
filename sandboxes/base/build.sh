#!/usr/bin/env bash
# Builds autofix's offline sandbox base image unless it is already there: a minimal Debian bookworm
# with python3, venv, pip and the host's CA bundle (so `pip install` in derived images works behind
# TLS-intercepting proxies), made with debootstrap from the Debian mirror apt already uses and
# `docker import`ed, so no image registry is needed. The work is done in Python by
# src/autofix/sandbox/image.py (`python -m autofix.sandbox.image base`); this wrapper is what
# bootstrap.sh calls.
#   usage: sandboxes/base/build.sh [IMAGE_NAME]   (default autofix/base-bookworm:latest)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m autofix.sandbox.image base ${1:+--tag "$1"}
