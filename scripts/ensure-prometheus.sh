#!/usr/bin/env bash
# Make sure Debian's prometheus and promtool are installed; print nothing when they already are.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="$root/.run"

command -v prometheus >/dev/null && command -v promtool >/dev/null && exit 0

sudo=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || {
        echo "ensure-prometheus: prometheus is missing; install it as root (apt-get install prometheus)" >&2
        exit 1
    }
    sudo=sudo
fi
mkdir -p "$run_dir"
echo "ensure-prometheus: installing prometheus (Debian package; log: .run/prometheus-install.log)"
# --no-install-recommends: the exporters and the web console packages are not needed.
if ! { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus; } >"$run_dir/prometheus-install.log" 2>&1; then
    tail -n 20 "$run_dir/prometheus-install.log" >&2
    echo "ensure-prometheus: installing prometheus failed" >&2
    exit 1
fi
# The package may start its own service on :9090; tests run their own server on a free port.
echo "ensure-prometheus: $(prometheus --version 2>&1 | head -n 1)"
