#!/usr/bin/env bash
# What the browser tests (tests/browser) need from the system: Debian's Chromium, driven by
# Playwright for Python through its executable path (Playwright's own browser downloads are
# never used). Idempotent: does nothing when chromium is already on PATH. Run as root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    echo "browser tests: $(chromium --version 2>/dev/null | head -n 1)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "browser tests: chromium is missing; install it as root: bash $0" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
echo "browser tests: installed $(chromium --version 2>/dev/null | head -n 1)"
