"""Benchmark: how long `genzoo demo` takes from a click on Sample to the picture on screen, per model.

The page is served in this process on a free localhost port and driven by headless Chromium
(/usr/bin/chromium): for each model, the Sample tab draws 16 images (a model that declares a `steps` sampling
option, a diffusion model, at 25 steps), first once to warm up, then --repeats times with other seeds. The time
is measured in the page, from the click to the load of the new grid image (performance.now()), so it holds the
request, the queue, sampling, the PNG and its transfer. Results: bench/results/demo-speed.json.

    python bench/demo_speed.py [MODEL ...] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from genzoo.hub import zoo_names  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
N_IMAGES = 16
STEPS = 25                 # the sampling steps of a model that declares them (DDIM for diffusion)

# click the Sample button, resolve with the milliseconds until the grid's new image has loaded
CLICK_TO_PICTURE = """([button, grid]) => new Promise((resolve, reject) => {
    const box = document.querySelector(grid);
    const before = box.querySelector('img') ? box.querySelector('img').src : null;
    const t0 = performance.now();
    const check = () => {
        const img = box.querySelector('img');
        if (img && img.src !== before && img.complete && img.naturalWidth > 0) {
            observer.disconnect();
            resolve(performance.now() - t0);
        } else if (img && img.src !== before) {
            img.addEventListener('load', check, {once: true});
        }
    };
    const observer = new MutationObserver(check);
    observer.observe(box, {childList: true, subtree: true, attributes: true});
    setTimeout(() => { observer.disconnect(); reject(new Error('no picture after 600 s')); }, 600000);
    document.querySelector(button).click();
})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_options(tab, slug: str, model) -> dict:
    """Put the Sample tab at N_IMAGES images and, where the model declares steps, STEPS steps; the options set."""
    tab.fill(f"#{slug}-n input[type=number]", str(N_IMAGES))
    tab.press(f"#{slug}-n input[type=number]", "Enter")
    if model.capabilities.option("steps") is None:
        return {}
    default = tab.locator(f"#{slug}-opt-steps-default input")
    if default.count() and default.is_checked():
        default.uncheck()
    tab.fill(f"#{slug}-opt-steps input[type=number]", str(STEPS))
    tab.press(f"#{slug}-opt-steps input[type=number]", "Enter")
    return {"steps": STEPS}


def measure(models: list, port: int, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.goto(f"http://127.0.0.1:{port}/")
        for i, served in enumerate(models):
            slug = f"model{i}"
            tab.locator("#model").get_by_label(served.name, exact=True).check()
            tab.wait_for_selector(f"#{slug}-sample")
            options = _set_options(tab, slug, served.model)
            times = []
            for seed in range(repeats + 1):                  # seed 0 warms up
                tab.fill(f"#{slug}-seed input", str(seed))
                tab.press(f"#{slug}-seed input", "Tab")
                ms = tab.evaluate(CLICK_TO_PICTURE, [f"#{slug}-sample", f"#{slug}-grid"])
                times.append(round(ms / 1000, 3))
            caption = tab.inner_text(f"#{slug}-caption")
            out[served.name] = {"options": options, "caption": caption, "first_s": times[0],
                                "click_to_picture_s": times[1:], "median_s": round(statistics.median(times[1:]), 3)}
            print(f"{served.name}: {caption}; first {times[0]:.2f} s, median of {repeats} "
                  f"{out[served.name]['median_s']:.3f} s", flush=True)
        browser.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo names or run folders (default: every zoo model)")
    p.add_argument("--repeats", type=int, default=5, help="timed clicks per model after the warm-up (default 5)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the page (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]              # other work on the machine slows the page: say how much there was
    from genzoo.demo.app import launch
    from genzoo.demo.served import open_models
    port, models = _free_port(), open_models(args.models or zoo_names())
    with tempfile.TemporaryDirectory() as tmp:
        page = launch(models, port=port, judgements=Path(tmp) / "answers.jsonl", block=False, quiet=True)
        try:
            rows = measure(models, port, args.repeats)
        finally:
            page.close()
    write_result("demo-speed", {
        "command": shlex.join(["python", "bench/demo_speed.py", *sys.argv[1:]]),
        "what": f"seconds from a click on Sample ({N_IMAGES} images) to the grid loaded in headless Chromium, "
                f"the page served on localhost; models declaring steps at {STEPS}",
        "threads": torch.get_num_threads(), "load_average_1min": round(load, 2),
        "nice": os.getpriority(os.PRIO_PROCESS, 0), "n_images": N_IMAGES, "repeats": args.repeats, "models": rows,
        "metrics": {f"{name}_median_s": row["median_s"] for name, row in rows.items()}})


if __name__ == "__main__":
    main()
