#!/usr/bin/env bash
# Make sure Debian's prometheus and promtool are installed; print nothing when they already are.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

command -v prometheus >/dev/null && command -v promtool >/dev/null && exit 0

# --no-install-recommends: the exporters and the web console packages are not needed.
bash "$root/scripts/apt-install.sh" ensure-prometheus prometheus --no-install-recommends
# The package may start its own service on :9090; tests run their own server on a free port.
echo "ensure-prometheus: $(prometheus --version 2>&1 | head -n 1)"
