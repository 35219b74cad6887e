"""The committed benchmark record: every result file says how it was made, and BENCHMARKS.md is what the
summary script builds from those files (so no figure in it is typed by hand or left stale)."""
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = sorted((ROOT / "bench" / "results").glob("*.json"))


def _summarize():
    spec = importlib.util.spec_from_file_location("summarize", ROOT / "bench" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_md_is_built_from_the_results():
    text = _summarize().render()
    assert (ROOT / "BENCHMARKS.md").read_text() == text, "BENCHMARKS.md is stale: run python bench/summarize.py"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_result_records_its_command_machine_and_files(path):
    r = json.loads(path.read_text())
    for key in ("genzoo_version", "machine", "device", "command"):
        assert r.get(key), f"{path.name} lacks {key!r}"
    script = re.match(r"python (bench/\S+\.py)( |$)", r["command"])
    assert script and (ROOT / script.group(1)).is_file(), f"{path.name}: command {r['command']!r} names no bench script"
    measured = r.get("metrics") or r.get("rows")
    assert measured or (r.get("refused") and r.get("train_wall_s")), \
        f"{path.name} records no measurement (nor why none applies)"
    for key, value in r.items():             # every figure a result points to is committed beside it
        if isinstance(value, str) and value.endswith(".png"):
            assert not Path(value).is_absolute(), f"{path.name}: {key} -> {value} is not relative to the repository"
            assert (ROOT / value).is_file(), f"{path.name}: {key} -> {value} is missing"


def test_diffusion_aim_compares_families_at_equal_n_where_it_can():
    aim = _summarize().diffusion_aim

    def diffusion(fid, n=500):
        sweep = [{"sampler": "ddim", "steps": 50, "n": n, "metrics": {"fid": fid}}]
        return {"model": "ddpm", "dataset": "mnist", "sampler_sweep": sweep, "train_wall_s": 60.0}

    def gan(fid, n, variant="default"):
        return {"model": "cgan", "variant": variant, "dataset": "mnist", "n_generated": n, "metrics": {"fid": fid}}

    def verdict(d, others):
        return aim({}, others, [d])[0]

    # an FID above the diffusion model's on more samples is beaten (FID falls as n grows)
    assert "lowest of every family: met" in verdict(diffusion(1.0), [gan(2.0, 10000)])
    # a lower FID on more samples leaves it open, until the same family is scored on the same n
    assert "not shown by these rows" in verdict(diffusion(1.0), [gan(0.4, 10000)])
    text = verdict(diffusion(1.0), [gan(0.4, 10000), gan(0.7, 500, "n500")])
    assert "missed" in text and "0.700 at the same n = 500" in text
    assert "lowest of every family: met" in verdict(diffusion(1.0), [gan(0.4, 10000), gan(1.3, 500, "n500")])
    # a higher FID on fewer samples says nothing
    assert "not shown" in verdict(diffusion(1.0), [gan(2.0, 100)])


def test_diffusion_aim_is_judged_at_the_sweeps_largest_n():
    aim = _summarize().diffusion_aim
    sweep = [{"sampler": "ddim", "steps": 100, "n": 10000, "metrics": {"fid": 0.26}},
             {"sampler": "ddpm", "steps": 1000, "n": 1000, "metrics": {"fid": 0.18}}]
    refs = {"mnist": {"metrics": {"fid": 0.029}, "small_n": [{"n_generated": 1000, "metrics": {"fid": 0.095}},
                                                             {"n_generated": 2000, "metrics": {"fid": 0.072}}]}}
    gpu = {"model": "ddpm", "variant": "gpu", "dataset": "mnist", "sampler_sweep": sweep, "train_wall_s": 157.0,
           "device": "cuda:0 (NVIDIA H200)"}

    def other(fid, n, model="cgan"):
        return {"model": model, "dataset": "mnist", "n_generated": n, "metrics": {"fid": fid}}

    text = aim(refs, [other(0.39, 10000)], [gpu])[0]
    # 1.9x at n = 1000 is named, but the verdict is the n = 10000 one: 9.0x
    assert "best FID 0.260 (DDIM-100, n = 10000), 9.0x" in text and "missed by 0.202" in text
    assert "DDPM-1000 scores 0.180 on n = 1000, 1.9x" in text and "not the verdict" in text
    assert "lowest of every family: met" in text and "on cuda:0 (NVIDIA H200)" in text
    # a row on fewer samples counts as beaten only when its FID is above by more than its possible bias
    # (pixelcnn has no row at n = 10000, so its n = 2000 row is the one to judge)
    text = aim(refs, [other(0.39, 10000), other(5.0, 2000, "pixelcnn")], [gpu])[0]
    assert "lowest of every family: met; 1 row scored on fewer samples exceeds it" in text
    assert "not shown" in aim(refs, [other(0.39, 10000), other(0.5, 2000, "pixelcnn")], [gpu])[0]


def test_diffusion_time_aim_judges_the_optimiser_steps_when_a_train_split_exists():
    aim = _summarize().diffusion_aim
    sweep = [{"sampler": "ddim", "steps": 50, "n": 500, "metrics": {"fid": 1.0}}]
    row = {"model": "ddpm", "dataset": "mnist", "sampler_sweep": sweep, "train_wall_s": 3680.0}
    assert "trained 61.3 min (aim: at most 60 min)" in aim({}, [], [row])[0]
    split = {"train_wall_s": 3680.0, "steps_end_s": 3180.0, "command": "python bench/train_time.py RUN"}
    text = aim({}, [], [{**row, "train_split": split}])[0]
    assert "8.3 min went to monitoring" in text and "at most 53.0 min" in text and "training: met" in text
    text = aim({}, [], [{**row, "train_split": {**split, "train_wall_s": 4000.0, "steps_end_s": 3700.0}}])[0]
    assert "training: missed" in text


def test_classify_records_the_options_that_changed_the_fit(tmp_path):
    import dataclasses
    import sys
    from genzoo.config import TrainConfig
    from genzoo.models import default_config
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("classify_bench", ROOT / "bench" / "classify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = {**dataclasses.asdict(default_config("cvae")), "num_classes": 10, "label_in": "separate"}
    train = {**json.loads(json.dumps(dataclasses.asdict(TrainConfig()))), "shift_augment": 2, "batch_size": 64,
             "log_every_steps": 7}
    (tmp_path / "config.json").write_text(json.dumps({"model_name": "cvae", "model": model, "train": train}))
    (tmp_path / "summary.json").write_text(json.dumps({"step": 30, "train_wall_s": 12.5}))
    rec = module.trained_record(tmp_path)
    assert rec["options"] == {"label_in": "separate"}
    assert rec["train_options"] == {"shift_augment": 2}          # logging and the batch are not fit options
    assert (rec["steps"], rec["batch_size"], rec["train_wall_s"]) == (30, 64, 12.5)
    line = _summarize()._trained(rec)
    assert "30 steps of 64 images" in line and "label_in=separate, shift_augment=2" in line
    both = _summarize()._trained([rec, {**rec, "steps": 40}])
    assert "Model 1: 30 steps" in both and "Model 2: 40 steps" in both and "The model" not in both
    assert _summarize()._runs_label({"run": "runs/bench-a", "mixture_runs": ["runs/bench-a", "runs/b"]}) == \
        "`a` + `b`"
    assert _summarize()._runs_label({"run": "runs/bench-a", "metrics": {"bayes_acc": 0.9, "draws": 4}}) == \
        "`a` (4 draws)"
    assert _summarize()._runs_label({"run": "runs/bench-a", "metrics": {"bayes_acc": 0.9}}) == "`a`"
    assert _summarize()._runs_label({"run": "runs/bench-a", "binarize": "threshold", "metrics": {}}) == \
        "`a` (thresholded)"


def test_likelihood_aim_names_the_factorized_best_when_an_autoregressive_decoder_wins():
    verdict = _summarize()._aim_verdict

    def run(variant, nll, pixel=0):
        return {"variant": variant, "metrics": {"nll_nats": nll}, "config": {"pixel_context": pixel}}
    assert verdict([run("default", 87.0), run("long", 86.5)], 82.0) == "Best 86.50, missed by 4.50 nats (long)."
    assert verdict([run("default", 87.0), run("pixel", 81.5, 7)], 82.0) == \
        "Met (pixel), with the autoregressive decoder; with a factorized decoder: Best 87.00, missed by 5.00 nats " \
        "(default)."
    assert verdict([run("pixel", 83.0, 7)], 82.0) == "Best 83.00, missed by 1.00 nats (pixel)."


def test_iwae_k_notes_name_the_rows_at_5000_and_those_below_1000():
    notes = _summarize().iwae_k_notes

    def run(model, variant, k, dataset="mnist"):
        return {"model": model, "variant": variant, "dataset": dataset, "metrics": {"iwae_k": k},
                "eval_wall_s": 600.0}
    lines = notes([run("vae-mlp", "long", 5000), run("iwae", "mlp", 5000), run("vae", "default", 1000),
                   run("beta-vae", "short", 100), run("vae", "short", 100, "fashion-mnist")])
    assert len(lines) == 2
    assert "`vae-mlp` (long), `iwae` (mlp) have it" in lines[0] and "k = 1000 took 10 min" in lines[0]
    assert lines[1].startswith("- Below docs/metrics.md's k = 1000 still: `beta-vae` (short) on mnist (k = 100), "
                               "`vae` (short) on fashion-mnist (k = 100):")
    assert notes([run("vae", "default", 1000), run("vae-mlp", "long", 5000)])[0].count("has it") == 1
    assert notes([run("vae", "default", 1000)]) == []     # nothing at 5000, nothing below 1000


def test_augment_driver_runs_the_n_side_by_side_and_reuses_finished_work(tmp_path):
    import subprocess
    import sys
    cmd = [sys.executable, str(ROOT / "bench" / "augment.py"), "cvae", "--data", "digits", "--n", "500,100",
           "--steps", "10", "--set", "width=8", "--seeds", "0", "--classifier-steps", "5", "--cas-n", "0",
           "--runs", str(tmp_path), "--results", str(tmp_path / "results"), "--jobs", "2"]
    subprocess.run(cmd, check=True, capture_output=True)
    res = json.loads((tmp_path / "results" / "augment-cvae-digits.json").read_text())
    assert [row["n_real"] for row in res["rows"]] == [100, 500]          # by n, whatever order they ran in
    assert res["jobs"] == 2 and res["device"] == "cpu" and all(row["device"] == "cpu" for row in res["rows"])
    assert "--jobs 2" in res["command"] and len(res["commands"]) == 4
    for n in (100, 500):                                                 # side by side: each has its own log
        assert "augment" in (tmp_path / f"bench-augment-cvae-digits-n{n}.log").read_text()
    report = tmp_path / "bench-augment-cvae-digits" / "augment-n100.json"
    before = report.stat().st_mtime_ns
    subprocess.run(cmd, check=True, capture_output=True)                # the same command again: nothing reruns
    assert report.stat().st_mtime_ns == before
    again = json.loads((tmp_path / "results" / "augment-cvae-digits.json").read_text())
    assert again["rows"] == res["rows"]
    import shutil                  # --keep-rows: a committed result that has the n = 100 row alone (an earlier call
    shutil.rmtree(tmp_path / "bench-augment-cvae-digits-n100")          # finished no other) keeps it, though its
    (tmp_path / "bench-augment-cvae-digits" / "augment-n100.json").unlink()     # run and report are gone, and the
    committed = tmp_path / "results" / "augment-cvae-digits.json"               # n = 500 row comes from its report
    committed.write_text(json.dumps({**res, "rows": res["rows"][:1]}))
    subprocess.run(cmd + ["--keep-rows"], check=True, capture_output=True)
    kept = json.loads(committed.read_text())
    assert kept["rows"][0] == {**res["rows"][0], "kept": True}
    assert not (tmp_path / "bench-augment-cvae-digits-n100").exists() and kept["rows"][1] == res["rows"][1]
    before = (tmp_path / "bench-augment-cvae-digits" / "augment-n500.json").stat().st_mtime_ns
    cmd[cmd.index("--classifier-steps") + 1] = "6"                       # another recipe: the experiment reruns
    subprocess.run(cmd + ["--keep-rows"], check=True, capture_output=True)   # and no row is kept
    assert (tmp_path / "bench-augment-cvae-digits" / "augment-n500.json").stat().st_mtime_ns != before
    assert not any(row.get("kept") for row in json.loads((tmp_path / "results" / "augment-cvae-digits.json")
                                                          .read_text())["rows"])


def test_gpu_rows_at_5000_cover_their_cpu_recipe_but_judge_no_aim():
    summarize = _summarize()

    def run(model, variant, k, nll, device="cpu", wall=1800.0):
        return {"model": model, "variant": variant, "dataset": "mnist", "device": device, "_name": model,
                "metrics": {"iwae_k": k, "nll_nats": nll, "elbo_nats": nll + 3}, "eval_wall_s": 600.0,
                "train_steps": 100, "train_wall_s": wall, "config": {}, "train_config": {}}
    gpu = "cuda:0 (NVIDIA H200)"
    rows = [run("vae", "default", 1000, 87.0), run("vae", "gpu", 5000, 81.0, gpu, 120.0),
            run("iwae", "short", 1000, 89.0), run("vae-mlp", "60min", 5000, 86.4)]
    line = summarize.iwae_k_notes(rows)[0]
    assert "`vae-mlp` (60min) has it; `vae` (gpu) has it on a GPU" in line
    assert "Still below it: `iwae` (short);" in line and "`vae`'s evaluation at k = 1000 took 10 min" in line
    assert "Every MNIST row's recipe has it" in summarize.iwae_k_notes(rows[:2])[0]
    # the 60-minute aim is judged on this CPU's rows: the GPU row's 81.0 neither meets it nor shows as tried
    text = "\n".join(summarize.vae_section(rows))
    assert "`vae` toward <= 82.00 nats: default: 100 steps in 30.0 min, 87.00 nats (k=1000). Best 87.00" in text
    table = "\n".join(summarize.likelihood_section(rows))
    assert "| mnist | `vae` (gpu) | 81.00 nats (IWAE k=5000) | 84.00 nats | conv VAE" in table
    assert "| not judged: trained on a GPU, the aim's 60 min are this CPU's | 2.0 min on GPU |" in table
    assert "| <= 82.00 in 60 min | missed by 5.00 nats | 30.0 min |" in table


def test_a_gpu_restoration_names_its_device_and_the_runs_it_left_out():
    row = {"run": "runs/gpu-restore-mnist-vae-mlp", "task": "denoise", "preset": None, "method": "latent-map",
           "metrics": {"psnr": 20.0, "ssim": 0.9, "fid": 2.0}, "wall_s": 60.0}
    r = {"dataset": "mnist", "variant": "gpu", "images": "the full test set", "seed": 0, "metric_notes": "notes",
         "fid_truth": 0.03, "command": "python bench/restore.py ...", "eval_device": "cuda:0 (NVIDIA H200)",
         "note": "6 runs restored side by side, so each wall time is its share",
         "failed_runs": ["runs/gpu-restore-mnist-glow"], "rows": [row]}
    text = "\n".join(_summarize().apps_section({"ood": [], "classify": [], "restore": [r], "augment": []}))
    assert "### Restoration on mnist (gpu)" in text
    assert "Restored on cuda:0 (NVIDIA H200). 6 runs restored side by side" in text
    assert "Not finished in its budget: `gpu-restore-mnist-glow`." in text
    assert "| `gpu-restore-mnist-vae-mlp` | denoise |  | latent-map | 20.000 | 0.900 | 2.000 | 1.0 min |" in text


def test_an_augmentation_row_kept_from_an_earlier_call_says_so():
    def row(n, kept=False):
        m = {"acc_real_mean": 0.9, "acc_real_gen_mean": 0.91, "acc_real_std": 0.01, "acc_real_gen_std": 0.01}
        return {"n_real": n, "n_generated": n, "metrics": m, "train_steps": 10, "train_wall_s": 60.0,
                "augment_wall_s": 60.0, **({"kept": True} if kept else {})}
    r = {"model": "ddpm-cfg", "dataset": "mnist", "command": "python bench/augment.py ...", "seeds": [0, 1, 2],
         "classifier_steps": 300, "gen_ratio": 1.0, "rows": [row(100, True), row(60000)], "plot": "x.png"}
    text = "\n".join(_summarize().apps_section({"ood": [], "classify": [], "restore": [], "augment": [r]}))
    assert "| 100 (an earlier call's row, made by the same commands) | 100 | 0.9000 (0.0100) |" in text
    assert "| 60000 | 60000 | 0.9000 (0.0100) |" in text


def test_the_summary_picks_each_familys_best_row_from_the_results(tmp_path, monkeypatch):
    summarize = _summarize()

    def write(name, **r):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    ref = {"variant": "real-vs-real", "dataset": "mnist"}
    write("real-mnist", **ref, n_generated=10000, metrics={"fid": 0.03})
    write("real-mnist-n500", **ref, n_generated=500, metrics={"fid": 0.2})
    write("gan-mnist", model="gan", dataset="mnist", n_generated=10000, metrics={"fid": 2.0})
    write("dcgan-mnist", model="dcgan", dataset="mnist", n_generated=10000, metrics={"fid": 1.5})
    # a lower FID on fewer samples is not the best row: FID is biased upward at small n, so rows on the most win
    write("cgan-mnist-n500", model="cgan", variant="n500", dataset="mnist", n_generated=500, metrics={"fid": 0.4})
    write("vae-mnist", model="vae", dataset="mnist", n_generated=10000,
          metrics={"fid": 6.0, "nll_nats": 87.0, "iwae_k": 1000})
    write("iwae-mnist-short", model="iwae", variant="short", dataset="mnist", n_generated=10000,
          metrics={"fid": 7.0, "nll_nats": 89.0, "iwae_k": 1000})
    # a class-conditional -log p(x|y) is not held against log p(x): the lower 80.0 is not the best likelihood
    write("cvae-mnist", model="cvae", dataset="mnist", n_generated=10000, config={"conditional": True},
          metrics={"fid": 1.2, "nll_nats": 80.0, "iwae_k": 1000})
    sweep = [{"sampler": "ddim", "steps": 50, "n": 500, "metrics": {"fid": 1.0}},
             {"sampler": "ddim", "steps": 100, "n": 500, "metrics": {"fid": 0.9}}]
    write("ddpm-mnist", model="ddpm", dataset="mnist", n_generated=500, sampler_sweep=sweep,
          metrics={"fid": 1.0, "bpd": 2.0})
    write("realnvp-fashion-mnist", model="realnvp", dataset="fashion-mnist", n_generated=10000,
          metrics={"fid": 17.0, "bpd": 3.3})
    monkeypatch.setattr(summarize, "RESULTS", tmp_path)
    refs, results, _ = summarize.load_all()
    lines = summarize.summary_section(refs, results)
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in lines if line.startswith("| ")}
    assert lines[0] == "## Summary"
    assert rows[("GAN", "MNIST")] == "| GAN | MNIST | `dcgan`: 1.500 (n = 10000) | 0.030 | 50x | " \
                                     "none: GANs define no likelihood |  |"
    assert rows[("VAE", "MNIST")] == "| VAE | MNIST | `cvae`: 1.200 (n = 10000) | 0.030 | 40x | " \
                                     "`vae`: 87.00 nats (IWAE k=1000) | 81.08 nats, conv VAE, diagonal Gaussian " \
                                     "posterior (Kingma et al. 2016) |"
    assert rows[("diffusion", "MNIST")] == "| diffusion | MNIST | `ddpm`, DDIM-100: 0.900 (n = 500) | 0.200 | 4.5x " \
                                           "| `ddpm`: 2.000 bpd (bound) | none quoted |"
    # no real-vs-real reference for Fashion-MNIST here, and no published anchor is quoted for it
    assert rows[("flow", "Fashion-MNIST")] == "| flow | Fashion-MNIST | `realnvp`: 17.000 (n = 10000) | " \
                                              "no reference at this n | | `realnvp`: 3.300 bpd | none quoted |"
    assert ("autoregressive", "MNIST") not in rows and ("GAN", "Fashion-MNIST") not in rows   # no rows, no line


def test_the_zoo_section_sets_each_zoo_model_beside_its_familys_best_row(tmp_path, monkeypatch):
    summarize = _summarize()
    for name, r in {"cgan-mnist": dict(model="cgan", dataset="mnist", n_generated=10000, metrics={"fid": 0.39}),
                    "dcgan-mnist": dict(model="dcgan", dataset="mnist", n_generated=10000, metrics={"fid": 4.3}),
                    "ddpm-cfg-mnist-short": dict(model="ddpm-cfg", dataset="mnist", n_generated=500,
                                                 config={"conditional": True}, metrics={"fid": 3.6, "bpd": 2.108, "cas": 0.97}),
                    "real-mnist": dict(variant="real-vs-real", dataset="mnist", metrics={"fid": 0.029}),
                    "real-mnist-n2000": dict(variant="real-vs-real", dataset="mnist", n_generated=2000,
                                             metrics={"fid": 0.072}),
                    "zoo-cgan-mnist": dict(model="cgan-mnist", steps=10000, train_wall_s=630.0, weights_bytes=4.2e6,
                                           sampling={"load_s": 0.05, "sample16_s": 0.012},
                                           metrics={"fid": 0.41, "precision": 0.8, "recall": 0.6, "cas": 0.97}),
                    "zoo-cvae-mnist": dict(model="cvae-mnist", steps=6000, train_wall_s=990.0, weights_bytes=3.1e6,
                                           weights_dtype="float16", sampling={"load_s": 0.04, "sample16_s": 0.003},
                                           metrics={"fid": 1.5, "nll_nats": 88.6, "iwae_k": 1000, "bayes_acc": 0.97},
                                           classified=10000),
                    "zoo-ddpm-cfg-mnist": dict(model="ddpm-cfg-mnist", model_name="ddpm-cfg", data="mnist",
                                               n_generated=2000, nll_images=100, steps=2650, train_wall_s=3000.0,
                                               weights_bytes=4.6e6, sampling={"load_s": 0.1, "sample16_s": 3.2},
                                               metrics={"fid": 0.9, "bpd": 2.05, "cas": 0.96})}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    monkeypatch.setattr(summarize, "RESULTS", tmp_path)
    refs, results, _ = summarize.load_all()
    assert {r["model"] for r in results} == {"cgan", "dcgan", "ddpm-cfg"}   # zoo records are not benchmark rows
    lines = summarize.zoo_section(refs, results)
    assert lines[0] == "## The zoo"
    rows = [line for line in lines if line.startswith("| `")]
    assert rows[0] == "| `cgan-mnist` | mnist | 10000 | 10.5 min | 10000 | 0.410 (0.029) | 0.800 | 0.600 | 97.00% |  " \
                      "|  | 0.05 s, 0.01 s | 4.2 MB | `cgan`: 0.390 (n = 10000) |  |"
    assert "88.60 nats (IWAE k=1000, of x given y)" in rows[1] and "| 97.00% (10000) |" in rows[1]
    assert "3.1 MB (float16)" in rows[1] and rows[1].endswith("|  |  |")                # no VAE rows here
    assert "| 2000 | 0.900 (0.072) |" in rows[2] and "2.050 bpd (bound, of x given y) on 100 test images" in rows[2]
    assert rows[2].endswith("| `ddpm-cfg`: 3.600 (n = 500) | `ddpm-cfg`: 2.108 bpd (bound, of x given y) |")


def test_throughput_section_names_the_cpu_its_bf16_choice_and_rows_without_a_flop_count():
    r = {"command": "python bench/throughput.py", "steps_timed": 10, "matmul_2048_fp32_gflop_per_s": 100.0,
         "machine": "2-core Test CPU (no bf16 flags)", "device": "cpu", "bf16_auto": False,
         "cpu": {"model": "Test CPU", "avx512_bf16": False, "amx_bf16": False, "source": "test"},
         "metrics": {"vae-fp32": {"img_per_s": 1000.0, "step_gflop": 10.0, "achieved_gflop_per_s": 78.1,
                                  "fraction_of_fp32_matmul": 0.781},
                     "vae-bf16": {"img_per_s": 400.0, "step_gflop": 10.0, "achieved_gflop_per_s": 31.2,
                                  "fraction_of_fp32_matmul": 0.312},
                     "wgan-gp-fp32": {"img_per_s": 300.0}, "wgan-gp-bf16": {"img_per_s": 200.0}}}
    text = "\n".join(_summarize().throughput_section(r))
    assert "| vae | fp32 | 1000 | 10.00 | 78.1 | 0.781 |" in text
    assert "| wgan-gp | fp32 | 300 | not counted | | |" in text
    assert "vae 0.40x" in text and "wgan-gp 0.67x" in text
    assert "`bf16: auto` resolves to False" in text and "Test CPU" in text
    assert "FLOPs not counted for wgan-gp" in text


def test_likelihood_cells_name_their_estimator():
    summarize = _summarize()
    cell = summarize.likelihood_cell
    assert cell({"bpd": 1.5, "ode_steps": 64}, "flow-matching") == "1.500 bpd (ODE estimate, 64 steps)"
    assert cell({"bpd": 1.5, "ode_steps": 64}, "flow-matching-cfg", True) == \
        "1.500 bpd (ODE estimate, 64 steps, of x given y)"
    assert cell({"bpd": 2.0}, "ddpm") == "2.000 bpd (bound)"
    assert cell({"nll_nats": 86.1}, "pixelcnn", True) == "86.10 nats (exact, of x given y)"
    assert cell({"nll_nats": 88.6, "iwae_k": 1000}, "cvae") == "88.60 nats (IWAE k=1000)"
