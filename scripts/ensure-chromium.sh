#!/usr/bin/env bash
# Make sure Debian's chromium is installed (the scorecard page's test renders it headless);
# print nothing when it already is.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

command -v chromium >/dev/null && exit 0

# --no-install-recommends: fonts, drivers and desktop integration are not needed headless.
bash "$root/scripts/apt-install.sh" ensure-chromium chromium --no-install-recommends
echo "ensure-chromium: $(chromium --version 2>/dev/null | head -n 1)"
