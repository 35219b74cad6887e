"""Screenshot the Sample tab of `genzoo demo` with a grid drawn (docs/images/demo.png in docs/demo.md is made with
this).

    python scripts/screenshot_demo.py [MODEL ...] [--out docs/images/demo.png] [--n 40] [--seed 0] [--width 1280]

Serves the page for MODEL (default: every zoo model) on a free localhost port, clicks Sample for the first model
with headless Chromium (Debian's /usr/bin/chromium through Playwright, the test extra; never `playwright install`),
and saves the page as an 8-bit palette PNG to keep it small.
"""
import argparse
import socket
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from genzoo.demo.app import serve
from genzoo.hub import zoo_names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo names or run folders (default: every zoo model)")
    p.add_argument("--out", default="docs/images/demo.png", help="screenshot .png (default docs/images/demo.png)")
    p.add_argument("-n", "--n", type=int, default=40, help="images in the grid (default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed of the grid (default 0)")
    p.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default 1280)")
    args = p.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        page = serve(args.models or zoo_names(), port=port, judgements=Path(tmp) / "answers.jsonl", block=False,
                     quiet=True)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
                tab = browser.new_page(viewport={"width": args.width, "height": 900})
                tab.goto(f"http://127.0.0.1:{port}/")
                tab.fill("#model0-n input[type=number]", str(args.n))
                tab.press("#model0-n input[type=number]", "Enter")
                tab.fill("#model0-seed input", str(args.seed))
                tab.press("#model0-seed input", "Tab")
                tab.click("#model0-sample")
                tab.wait_for_function("() => { const i = document.querySelector('#model0-grid img'); "
                                      "return i && i.complete && i.naturalWidth > 0; }", timeout=600_000)
                tab.wait_for_function("document.querySelector('#model0-caption').innerText.includes('samples')")
                tab.wait_for_timeout(1000)                # the page undims its outputs after the request ends
                raw = Path(tmp) / "raw.png"
                tab.screenshot(path=str(raw), full_page=True)
                browser.close()
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Image.open(raw).convert("RGB").quantize(colors=256).save(args.out, optimize=True)
        finally:
            page.close()
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
