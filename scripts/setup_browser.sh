# Sourced by test.sh after setup.sh: Chromium for the browser test of `genzoo report` (tests/test_report.py),
# from Debian's packages chromium and chromium-driver. Skipped when /usr/bin/chromium exists. The test drives it
# with Playwright from pip (the test extra) and never downloads Playwright's own browsers.
if [ ! -x /usr/bin/chromium ]; then
  echo "[setup] installing chromium and chromium-driver (apt)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
fi
