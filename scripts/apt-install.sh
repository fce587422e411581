#!/usr/bin/env bash
# apt-install.sh CALLER PACKAGE [apt-get install options...]: install a Debian package,
# as root or through sudo, logging to .run/PACKAGE-install.log; one line on success, the
# log's tail and one line on failure. The ensure-*.sh scripts call it for what is missing.
set -euo pipefail

caller="$1" package="$2"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="$root/.run"
log="$run_dir/$package-install.log"

sudo=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || {
        echo "$caller: $package is missing; install it as root (apt-get install $package)" >&2
        exit 1
    }
    sudo=sudo
fi
mkdir -p "$run_dir"
echo "$caller: installing $package (Debian package; log: .run/$package-install.log)"
if ! { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "$@" "$package"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "$caller: installing $package failed" >&2
    exit 1
fi
