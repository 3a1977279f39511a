#!/usr/bin/env bash
# Set up a fresh machine for tcpteardown: system tools (when root), then a
# virtualenv in .venv with the package and its test dependencies.
# Idempotent: a second run installs nothing that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests and live capture use. libpcap0.8 lets scapy put
# the BPF filter in the kernel; tcpdump and tshark are the reference tools the
# tests compare against; strace, golang-go, curl and nginx-light are the real
# programs whose failures the tests explain; iproute2 drives namespaces (and
# gives ss); chromium and chromium-driver open the interactive HTML ladder
# headless (through selenium) to step through it as a reader would; plantuml
# draws every `plot -o ladder.puml` diagram in the tests (PlantUML's own
# parser); chromium also runs the notebooks in JupyterLab
# (tests/test_browser.py). nodejs, default-jdk-headless, haproxy and
# redis-server are real programs too: tests/test_program_logs.py makes each
# fail and links its own log line to the frame (issue 14). gcc and python3-dev
# build the optional compiled loops (src/tcpteardown/_speedups.c); without them pip
# skips them and census uses its Python code (same results, slower).
# systemd gives systemd-journald, journalctl and systemd-cat: tests/test_sources.py
# reads journald's timestamp forms as journalctl prints them (its own journald, in
# a private mount namespace).
# bpftrace is `record --calls ebpf` (issue 30): socket calls traced on the
# syscall tracepoints without stopping the program, at its own pace
# (tests/test_record_backends.py compares its links with strace's).
APT_PACKAGES="libpcap0.8 tcpdump tshark strace golang-go curl iproute2 nginx-light iptables chromium chromium-driver plantuml nodejs default-jdk-headless haproxy redis-server gcc python3-dev systemd bpftrace"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
  done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "setup: not root, skipping system packages:$missing (tests that need them will say so)" >&2
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.tcpteardown-installed
# Reinstalled when the dependencies or the compiled engine's source change.
want="$(cat pyproject.toml src/tcpteardown/_speedups.c | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log=.venv/pip-install.log
  echo "setup: installing Python packages into .venv (log: $log)" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip &&
         .venv/bin/python -m pip install -e '.[test,notebooks,bench]'; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup: pip install failed; the whole log is in $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# Mermaid's own parser and renderer (one self-contained file from the npm
# package), so the tests check in headless Chromium that every diagram
# `plot -o ladder.mmd` writes parses and shows its labels as GitHub will.
# Pinned: GitHub's renderer follows Mermaid's releases.
MERMAID_VERSION=12.3.0
mermaid_js=.node/mermaid-$MERMAID_VERSION.min.js
if [ ! -f "$mermaid_js" ]; then
  if command -v npm >/dev/null 2>&1; then
    mkdir -p .node
    tarball="$(cd .node && npm pack --silent "mermaid@$MERMAID_VERSION")"
    tar -xzf ".node/$tarball" -C .node package/dist/mermaid.min.js
    mv .node/package/dist/mermaid.min.js "$mermaid_js"
    rm -rf ".node/$tarball" .node/package
  else
    echo "setup: npm not found, skipping Mermaid (the test that renders diagrams will say so)" >&2
  fi
fi

# Notebook outputs never reach a commit: .gitattributes runs notebooks
# through the nbstripout filter (installed above with the test extra); git
# needs the filter's command in the repository's config. --keep-id keeps the
# committed cell ids, so a clean notebook passes through unchanged.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  nbstripout="\"$PWD/.venv/bin/python\" -m nbstripout --keep-id"
  git config filter.nbstripout.clean "$nbstripout"
  git config filter.nbstripout.smudge cat
  git config filter.nbstripout.required true
  git config diff.ipynb.textconv "$nbstripout --textconv"
fi
