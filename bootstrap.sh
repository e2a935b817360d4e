#!/usr/bin/env bash
# Installs everything autofix needs on a fresh Debian machine, idempotently:
#   system packages (Docker, debootstrap), the Docker daemon, a virtual environment in .venv with
#   autofix, the bundled helpdesk example and the test tools, and the offline sandbox base image.
# Safe to run again: each step is skipped when already done. Needs root (or sudo) for apt and dockerd.
set -euo pipefail
cd "$(dirname "$0")"
log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v chromium >/dev/null || need_apt+=(chromium)  # the review page's browser test (Playwright drives it)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /tmp/dockerd.log)"
  $SUDO sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
  for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || log "dockerd did not start; Docker sandboxes will be unavailable (see /tmp/dockerd.log)"
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import autofix, helpdesk, llama_cpp, langgraph.checkpoint.sqlite, sqlalchemy, scipy, playwright, hatchling, ray" >/dev/null 2>&1; then
  log "installing Python packages (llama-cpp-python compiles from source: about 8 minutes the first time)"
  .venv/bin/pip install -q -c constraints.txt -e ".[test,ray]" -e examples/helpdesk
fi
# The built-in optimizers are plugins like a researcher's: each its own distribution under optimizers/
# (the template is not installed; its test installs a copy).
optimizers=()
for dir in optimizers/*/; do
  [ -f "$dir/pyproject.toml" ] && [ "$dir" != "optimizers/template/" ] && optimizers+=(-e "$dir")
done
if [ ${#optimizers[@]} -gt 0 ] && ! .venv/bin/python -c "import autofix_gepa, autofix_retrieval_search, autofix_code_patch" >/dev/null 2>&1; then
  log "installing the built-in optimizer plugins"
  .venv/bin/pip install -q -c constraints.txt "${optimizers[@]}"
fi

if docker info >/dev/null 2>&1; then
  sandboxes/base/build.sh
fi
log "ready: .venv/bin/autofix --help"
