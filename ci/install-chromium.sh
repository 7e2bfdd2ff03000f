#!/usr/bin/env bash
# Headless Chromium for tests/report_html.rs (the report page rendered and screenshotted).
# Debian's package; the test fails, with this script's name in its message, when it is missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    chromium --version
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
chromium --version
