#!/usr/bin/env bash
# The test suite: set up (as quickstart.sh does, plus Chromium for the report's browser test and the reference
# InceptionV3 implementations), then pytest.
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_browser.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_inception_refs.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
