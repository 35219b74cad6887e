"""Screenshot a `genzoo report` page with headless Chromium (docs/report.png in README is made with this).

    python scripts/screenshot_report.py runs/cvae-mnist-report/report.html docs/report.png [--width 1100]

Uses Debian's /usr/bin/chromium (scripts/setup_browser.sh) through Playwright (the test extra); never
`playwright install`. The whole page is captured, then saved as an 8-bit palette PNG to keep it small.
"""
import argparse
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", help="report .html")
    p.add_argument("out", help="screenshot .png")
    p.add_argument("--width", type=int, default=1100, help="viewport width in CSS pixels")
    args = p.parse_args()
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                        args=ARGS, viewport={"width": args.width, "height": 800})
        page = browser.new_page()
        page.goto(Path(args.page).resolve().as_uri(), wait_until="load")
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.png"
            page.screenshot(path=str(raw), full_page=True)
            Image.open(raw).convert("RGB").quantize(colors=256).save(args.out, optimize=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
