#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/browser): Playwright drives this binary, so no browser is
# downloaded. Idempotent: does nothing when chromium is already installed.
#
#   deploy/local/browser.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A Chrome or Chromium already there (FEASTFLOW_CHROMIUM, or the one CI runners ship) will do.
if [[ -z ${FEASTFLOW_CHROMIUM:-} ]] && ! command -v chromium chromium-browser google-chrome >/dev/null; then
    take_lock browser
    # A font, so pages (and their screenshots) render text on a machine that has none.
    command -v chromium >/dev/null || apt_install browser chromium fonts-dejavu-core
fi
