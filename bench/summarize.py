"""Build BENCHMARKS.md from bench/results/*.json (every figure there comes from these files).

    python bench/summarize.py [--check]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

FAMILIES = {   # family -> presets, in the order the tables show them
    "GAN": ("gan", "dcgan", "wgan-gp", "cgan", "acgan", "infogan", "sagan"),
    "VAE": ("vae-mlp", "vae", "beta-vae", "cvae", "iwae", "vaegan"),
    "flow": ("realnvp", "glow"),
    "autoregressive": ("pixelcnn", "gated-pixelcnn", "pixelrnn", "pixel-transformer"),
    "diffusion": ("ddpm", "ddpm-cfg"),
    "flow matching": ("flow-matching", "flow-matching-cfg"),
}
ORDER = [p for presets in FAMILIES.values() for p in presets]
DATASETS = ("mnist", "fashion-mnist", "patches")

# published anchors (nats per image on dyn-binarized MNIST; bits/dim on 8-bit MNIST)
NATS_ANCHORS = {"vae-mlp": ("one-layer VAE (Burda et al. 2016)", 86.76), "iwae": ("two-layer IWAE (Burda et al. "
                "2016)", 82.90), "vae": ("conv VAE, diagonal Gaussian posterior (Kingma et al. 2016)", 81.08),
                "pixelcnn": ("PixelCNN (van den Oord et al. 2016)", 81.30),
                "pixelrnn": ("Row LSTM (van den Oord et al. 2016)", 80.54),
                "gated-pixelcnn": ("Gated PixelCNN, reproduced by pytorch-generative", 81.50)}
NATS_AIMS = {"vae-mlp": 86.76, "iwae": 84.0, "vae": 82.0}       # targets, at most 60 minutes of training
BPD_ANCHORS = {"realnvp": ("RealNVP (Dinh et al. 2017)", 1.06), "glow": ("Glow (Kingma & Dhariwal 2018)", 1.05)}
CAS_AIM_POINTS = 2.0     # target: a conditional GAN preset within 2 points of CAS on real data
FID_AIM_FACTOR = 3.0     # target: the best unconditional GAN preset within 3x the real-vs-real FID


APPS = ("ood", "classify", "restore", "augment")   # result-name prefixes of the application benchmarks
AUGMENT_NS = (100, 1000, 60_000)                   # the n of the augmentation-gain experiment (docs/metrics.md)


def load_all() -> tuple[dict, list[dict], dict]:
    refs, results, apps, small_refs = {}, [], {a: [] for a in APPS}, {}
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        r["_name"] = path.stem
        app = path.stem.split("-")[0]
        if app in APPS:
            apps[app].append(r)
            continue
        if str(r.get("dataset", "")).startswith("dyn-binarized mnist"):   # older records named the binarization
            r["dataset"] = "mnist"
        if r.get("variant") == "real-vs-real" and path.stem.startswith(f"real-{r['dataset']}-n"):
            small_refs.setdefault(r["dataset"], []).append(r)      # the same reference at a smaller n
        elif r.get("variant") == "real-vs-real":
            refs[r["dataset"]] = r
        elif r.get("model") in ORDER and r.get("dataset") in DATASETS:
            results.append(r)
    results.sort(key=lambda r: (DATASETS.index(r["dataset"]), ORDER.index(r["model"]), r.get("variant", "")))
    for dataset, rows in small_refs.items():
        if dataset in refs:
            refs[dataset]["small_n"] = sorted(rows, key=lambda r: r["n_generated"])
    return refs, results, apps


def _min(s) -> str:
    return f"{s / 60:.1f} min" if s is not None else ""


def _label(r: dict) -> str:
    v = r.get("variant", "default")
    return f"`{r['model']}`" + (f" ({v})" if v != "default" else "")


def _conditional(r: dict) -> bool:
    """A class-conditional run: its likelihood is log p(x|y) with the true labels, not log p(x)."""
    return bool((r.get("config") or {}).get("conditional"))


def likelihood_cell(m: dict, model: str = "", conditional: bool = False) -> str:
    given = ", of x given y" if conditional else ""
    if model in FAMILIES["diffusion"] and "bpd" in m:     # diffusion reports its variational bound
        return f"{m['bpd']:.3f} bpd (bound{given})"
    if "ode_steps" in m and "bpd" in m:                   # flow matching: an ODE estimate, neither bound nor exact
        return f"{m['bpd']:.3f} bpd (ODE estimate, {m['ode_steps']} steps{given})"
    if "nll_nats" in m:
        how = f"IWAE k={m['iwae_k']}" if "iwae_k" in m else "exact"
        return f"{m['nll_nats']:.2f} nats ({how}{given})"
    if "bpd" in m:
        how = f"IWAE k={m['iwae_k']}" if "iwae_k" in m else "bound" if "bound" in str(m.get("bpd_kind", "")) else ""
        how += given
        return f"{m['bpd']:.3f} bpd" + (f" ({how.lstrip(', ')})" if how else "")
    return ""


def quality_section(refs: dict, results: list[dict]) -> list[str]:
    lines = ["## Every model in genzoo's feature space", "",
             "FID, KID (x 1000, mean +- std over 100 subsets of 1000), precision/recall (k = 3) and density/coverage "
             "(k = 5) in the penultimate layer of genzoo's frozen classifier for the data set; classifier score with "
             "its softmax; n generated (EMA weights, seed 0) vs the 10,000 test images. The real-vs-real row is a "
             "seeded 10,000-image train subset in place of the generated set (`python bench/real_reference.py`); FID "
             "is biased upward at small n, so a model scored on fewer samples is read against the real-vs-real row "
             "of the same n (the first n images of that subset, `--n N`). "
             "Likelihoods: nats per image on dyn-binarized MNIST (the test set binarized once, seed 0), bits/dim on "
             "8-bit data (dequantized once, seed 0); the estimator is named. `64 samples` is the wall time of one "
             "seeded `sample(64)`.", "",
             "| data | model | n | FID | KID x1e3 | precision | recall | density | coverage | classifier score | "
             "likelihood | steps | train wall | img/s | 64 samples |",
             "|" + "---|" * 15]

    def cells(m: dict) -> str:
        kid = f"{1e3 * m['kid_mean']:.2f} +- {1e3 * m['kid_std']:.2f}" if "kid_mean" in m else ""
        rest = " | ".join(f"{m[k]:.3f}" if k in m else "" for k in ("precision", "recall", "density", "coverage",
                                                                     "classifier_score"))
        return f"{m['fid']:.3f} | {kid} | {rest}" if "fid" in m else f" | {kid} | {rest}"

    for dataset in DATASETS:
        ours = [r for r in results if r["dataset"] == dataset]
        if dataset in refs:
            for ref in refs[dataset].get("small_n", []) + [refs[dataset]]:
                lines.append(f"| {dataset} | real vs real | {ref.get('n_generated', 10000)} | {cells(ref['metrics'])} "
                             "| | | | | |")
        for r in ours:
            m = r["metrics"]
            lines.append(f"| {dataset} | {_label(r)} | {r.get('n_generated', '')} | {cells(m)} | "
                         f"{likelihood_cell(m, r['model'], _conditional(r))} | {r.get('train_steps', '')} | "
                         f"{_min(r.get('train_wall_s'))} | "
                         f"{r.get('train_img_per_s') or 0:.0f} | {r.get('sample_64_wall_s', '')} |")
    lines += ["", "Feature networks: " + "; ".join(
        f"{d}: genzoo classifier, test accuracy {ref['feature_network']['test_accuracy']:.4f} (sha256 "
        f"{ref['feature_network']['sha256_16']})" for d, ref in refs.items()) + ".", ""]
    return lines


def gan_section(refs: dict, results: list[dict]) -> list[str]:
    gans = [r for r in results if r["model"] in FAMILIES["GAN"] and r.get("variant", "default") == "default"]
    if not gans:
        return []
    lines = ["## The GAN family", "",
             "Each preset with its default config (`python bench/family.py PRESET --data DATA`, or the equivalent "
             "`python bench/gan_family.py` recorded in older results). img/s counts every real image drawn, so a "
             "WGAN-GP step (5 critic batches) counts 5 batches. `label acc.` is how often the frozen classifier "
             "agrees with the label a conditional sample was drawn for (1,000 samples, the last coverage check); "
             "per-class FID is the mean over classes of the FID between that class's samples and its test images; "
             "CAS trains genzoo's classifier recipe on 60,000 class-balanced samples.", "",
             "| data | preset | FID | per-class FID | CAS (real) | label acc. | classes present |",
             "|---|---|---|---|---|---|---|"]
    for r in gans:
        m, cov = r["metrics"], r.get("final_coverage") or {}
        cells = [f"{m['fid']:.3f}", f"{m['intra_fid']:.3f}" if "intra_fid" in m else "",
                 f"{m['cas']:.4f} ({m['cas_real']:.4f})" if "cas" in m else "",
                 f"{cov['label_accuracy']:.3f}" if "label_accuracy" in cov else "",
                 f"{cov['classes_present']} of {cov['num_classes']}" if cov else ""]
        lines.append(f"| {r['dataset']} | `{r['model']}` | " + " | ".join(cells) + " |")
    lines.append("")
    for dataset in DATASETS:
        ours = [r for r in gans if r["dataset"] == dataset]
        if not ours or dataset not in refs:
            continue
        ref_fid = refs[dataset]["metrics"]["fid"]
        uncond = [r for r in ours if "cas" not in r["metrics"]]
        if uncond:
            best = min(uncond, key=lambda r: r["metrics"]["fid"])
            fid = best["metrics"]["fid"]
            verdict = "met" if fid <= FID_AIM_FACTOR * ref_fid else \
                f"missed: {fid / ref_fid:.0f}x the reference, {fid - FID_AIM_FACTOR * ref_fid:.2f} above the aim"
            lines.append(f"- {dataset}: best unconditional preset `{best['model']}`, FID {fid:.3f} against the aim of "
                         f"{FID_AIM_FACTOR:.0f}x the real-vs-real {ref_fid:.3f} = {FID_AIM_FACTOR * ref_fid:.3f}: "
                         f"{verdict}.")
        cond = [r for r in ours if "cas" in r["metrics"]]
        if cond:
            best = max(cond, key=lambda r: r["metrics"]["cas"])
            gap = 100 * (best["metrics"]["cas_real"] - best["metrics"]["cas"])
            verdict = "met" if gap <= CAS_AIM_POINTS else f"missed by {gap - CAS_AIM_POINTS:.2f} points"
            lines.append(f"- {dataset}: best CAS `{best['model']}` {100 * best['metrics']['cas']:.2f}% against "
                         f"{100 * best['metrics']['cas_real']:.2f}% on real data, {gap:.2f} points below (aim: within "
                         f"{CAS_AIM_POINTS:.0f}): {verdict}.")
    lines.append("- What was tried toward these aims: every row is its preset's default config, trained once within "
                 "a 30-minute budget; the one change made after a first run is `acgan`'s discriminator "
                 "(below). No longer or tuned GAN runs have been made, so the misses measure the defaults.")
    failed = next((r for r in results if r["_name"] == "acgan-mnist-batchnorm-d"), None)
    if failed is not None:
        m, cov = failed["metrics"], failed["final_coverage"]
        lines.append(f"- The first `acgan` preset had batch norm in D (Adam 2e-4, betas 0.5/0.999). After "
                     f"{failed['train_steps']} steps on MNIST its samples ignored z within a class, and the frozen "
                     f"classifier agreed with the requested label for only {cov['label_accuracy']:.1%} of them "
                     f"(FID {m['fid']:.2f}, recall {m['recall']:.3f}, CAS {m['cas']:.3f}; "
                     f"![grid]({failed['sample_grid']})). The auxiliary loss on fakes let G and D agree on label "
                     "codes that are not digits. With a spectrally normalised D and betas (0, 0.9), as in `cgan`, "
                     "a 1,000-step check reached 89% label accuracy, so the preset now uses that D.")
    return lines + [""]


def vae_section(results: list[dict]) -> list[str]:
    vaes = [r for r in results if r["model"] in FAMILIES["VAE"]]
    if not vaes:
        return []
    lines = ["## The VAE family", "",
             "`python bench/family.py PRESET --data DATA [--steps S --variant V]`; a variant names a shorter or longer "
             "run than the preset's default. The likelihood columns are on the full test set: the negative ELBO and "
             "the IWAE bound with the k shown (nats on dyn-binarized MNIST, bits/dim on 8-bit Fashion-MNIST); CAS "
             "for the conditional preset as in the GAN table.", "",
             "| data | preset | negative ELBO | IWAE bound | FID | precision | recall | CAS (real) | steps | train wall "
             "| eval wall |", "|" + "---|" * 11]
    for r in vaes:
        m = r["metrics"]
        elbo = f"{m['elbo_nats']:.2f} nats" if "elbo_nats" in m else f"{m['elbo_bpd']:.3f} bpd" if "elbo_bpd" in m \
            else ""
        cells = [elbo, likelihood_cell(m, conditional=_conditional(r)), f"{m['fid']:.3f}" if "fid" in m else "",
                 f"{m['precision']:.3f}" if "precision" in m else "", f"{m['recall']:.3f}" if "recall" in m else "",
                 f"{m['cas']:.4f} ({m['cas_real']:.4f})" if "cas" in m else "", str(r.get("train_steps", "")),
                 _min(r.get("train_wall_s")), _min(r.get("eval_wall_s"))]
        lines.append(f"| {r['dataset']} | {_label(r)} | " + " | ".join(cells) + " |")
    lines.append("")
    for dataset in DATASETS:
        ours = {(r["model"], r.get("variant", "default")): r for r in vaes if r["dataset"] == dataset}
        for (model, variant), r in ours.items():
            if model != "vaegan" or "fid" not in r["metrics"]:
                continue
            # compare with the conv VAE trained the same way where there is one, else its default run, else any
            vae = ours.get(("vae", variant)) or ours.get(("vae", "default")) \
                or next((v for (m, _), v in ours.items() if m == "vae"), None)
            if vae is None or "fid" not in vae["metrics"]:
                continue
            a, b = r["metrics"]["fid"], vae["metrics"]["fid"]
            lines.append(f"- {dataset}: `vaegan` ({variant}, {r['train_steps']} steps) FID {a:.3f} against `vae` "
                         f"({vae.get('variant', 'default')}, {vae['train_steps']} steps) {b:.3f} (aim: lower): "
                         + ("met." if a < b else f"missed by {a - b:.3f}; "
                            f"{sum(1 for (m, _) in ours if m == 'vaegan')} `vaegan` run(s) made on {dataset}."))
    if any(r["_name"] == "vaegan-mnist" for r in vaes):
        lines.append("- Why `vaegan` weights the encoder's KL by beta = 16 and the decoder's feature loss by gamma = "
                     "0.01: at 1 and 1 (Larsen et al.'s losses unweighted) the encoder's KL stayed between 78 and 88 "
                     "nats against a feature-space term near 300, the posterior drifted from the N(0, I) the samples "
                     "come from, and 5000 MNIST steps gave FID 13.21 (n = 10000) with strokes, not digits. 1500-step "
                     "MNIST probes, FID at n = 2000 (`genzoo train vaegan --data mnist --steps 1500 --set "
                     "gamma=G --set beta=B`, then `genzoo eval RUN --metrics fid,pr --n 2000`): beta 1, gamma 1: "
                     "19.81; beta 1, gamma 0.01: 13.88; beta 4, gamma 1: 15.18; beta 4, gamma 0.01: 12.92; beta 16, "
                     "gamma 0.01: 8.13 (KL 20 nats); beta 64, gamma 0.01: 6.15, but its KL fell to 3 nats and the "
                     "frozen classifier found the input's class in only 66% of its reconstructions of 500 test "
                     "digits (95% at beta 16, 98% at beta 1; `python bench/recon_class.py RUN --n 500`): a GAN more "
                     "than an autoencoder, so the preset keeps beta = 16. The runs above keep the class in 95.4% of "
                     "500 MNIST reconstructions, and in 81.4% on Fashion-MNIST, where the conv `vae` (short) keeps "
                     "it in 79.0%.")
    lines += iwae_k_notes(vaes)
    for model, aim in NATS_AIMS.items():    # every recorded run toward an aim, so a miss shows what was tried
        runs = [r for r in vaes if r["model"] == model and r["dataset"] == "mnist" and "nll_nats" in r["metrics"]
                and not _on_gpu(r)]      # the aim is 60 minutes of training on this CPU
        if runs:
            tried = "; ".join(f"{r.get('variant', 'default')}: {r['train_steps']} steps"
                              + (f" with the autoregressive decoder (pixel_context={r['config']['pixel_context']})"
                                 if _autoregressive_decoder(r) else "")
                              + (f" with {r['train_config']['lr_decay']} lr decay"
                                 if r.get("train_config", {}).get("lr_decay", "none") != "none" else "")
                              + f" in {_min(r.get('train_wall_s'))}, {r['metrics']['nll_nats']:.2f} nats "
                              f"(k={r['metrics'].get('iwae_k')})" for r in runs)
            lines.append(f"- `{model}` toward <= {aim:.2f} nats: {tried}. " + _aim_verdict(runs, aim))
    return lines + [""]


def _cpu_twin(r: dict) -> tuple[str, str]:
    """(model, variant) of the CPU row whose recipe a GPU row retrained: its variant less the "gpu" suffix."""
    variant = r.get("variant", "default").removesuffix("gpu").removesuffix("-") or "default"
    return r["model"], variant


def iwae_k_notes(vaes: list[dict]) -> list[str]:
    """Which VAE rows reach the target k = 5000 (on the CPU, or on a GPU by the same recipe), which MNIST rows still
    lack it, and which are below docs/metrics.md's k = 1000."""
    lines = []
    mnist = [r for r in vaes if r["dataset"] == "mnist" and r["metrics"].get("iwae_k", 0) > 0]
    at_5000 = [r for r in mnist if r["metrics"]["iwae_k"] >= 5000]
    on_gpu = {_cpu_twin(r) for r in at_5000 if _on_gpu(r)}
    lacking = [_label(r) for r in mnist if r["metrics"]["iwae_k"] < 5000 and not _on_gpu(r)
               and (r["model"], r.get("variant", "default")) not in on_gpu]
    slow = next((r for r in mnist if r["model"] == "vae" and not _on_gpu(r)
                 and r["metrics"]["iwae_k"] >= 1000 and r.get("eval_wall_s")), None)
    if at_5000:
        here = [_label(r) for r in at_5000 if not _on_gpu(r)]
        there = [_label(r) for r in at_5000 if _on_gpu(r)]
        text = "- IWAE k: the target is k = 5000 on the full MNIST test set. " + (
            f"{', '.join(here)} {'has' if len(here) == 1 else 'have'} it" if here else "")
        if there:
            text += ("; " if here else "") + f"{', '.join(there)} {'has' if len(there) == 1 else 'have'} it on a " \
                "GPU, retrained there by the recipe of the CPU row of the same name without -gpu"
        if lacking:
            text += f". Still below it: {', '.join(lacking)}"
            if slow is not None:
                text += f"; `vae`'s evaluation at k = {slow['metrics']['iwae_k']} took " \
                    f"{slow['eval_wall_s'] / 60:.0f} min on the CPU (FID and the rest included), so k = 5000 would " \
                    "take hours per preset there"
            text += "; `bash bench/gpu_vae.sh` scores them on a GPU"
        else:
            text += ". Every MNIST row's recipe has it"
        lines.append(text + ". Each row states its k; the bound only tightens as k grows.")
    below = [f"{_label(r)} on {r['dataset']} (k = {r['metrics']['iwae_k']})"
             for r in vaes if 0 < r["metrics"].get("iwae_k", 0) < 1000]
    if below:
        lines.append(f"- Below docs/metrics.md's k = 1000 still: {', '.join(below)}: scored when they were trained; "
                     "each row's recorded command with `--iwae-k 1000` (`--score-only` where its run folder is kept) "
                     "brings it there.")
    return lines


def _autoregressive_decoder(r: dict) -> bool:
    return bool((r.get("config") or {}).get("pixel_context"))


def _aim_verdict(runs: list[dict], aim: float) -> str:
    """Met or missed by the best run; where an autoregressive decoder is best, also the factorized decoders' best
    (the published anchors are factorized)."""
    def nll(r):
        return r["metrics"]["nll_nats"]

    def says(r):
        return ("Met" if nll(r) <= aim else f"Best {nll(r):.2f}, missed by {nll(r) - aim:.2f} nats") + \
            f" ({r.get('variant', 'default')})"
    best = min(runs, key=nll)
    factorized = [r for r in runs if not _autoregressive_decoder(r)]
    if _autoregressive_decoder(best) and factorized:
        return f"{says(best)}, with the autoregressive decoder; with a factorized decoder: " \
               f"{says(min(factorized, key=nll))}."
    return says(best) + "."


def likelihood_section(results: list[dict]) -> list[str]:
    rows = [r for r in results if any(k in r["metrics"] for k in ("nll_nats", "bpd"))]
    if not rows:
        return []
    lines = ["## Likelihoods", "",
             "On the full 10,000-image test set unless the row says otherwise. VAEs: the negative ELBO and the IWAE "
             "bound with k importance samples (an upper bound on the NLL); flows and autoregressive models: exact; "
             "diffusion: the variational bound. Class-conditional rows (\"of x given y\") score -log p(x|y) with the "
             "true test labels, which can lie up to ln 10 = 2.30 nats below the same model's -log p(x) (a uniform "
             "p(y)), so they are held against no anchor.", "",
             "| data | model | NLL | negative ELBO | published anchor | target | verdict | train wall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        elbo = f"{m['elbo_nats']:.2f} nats" if "elbo_nats" in m else \
            f"{m['elbo_bpd']:.3f} bpd" if "elbo_bpd" in m else ""
        anchor, aim, verdict = "", "", ""
        if r["dataset"] == "mnist" and "nll_nats" in m and r["model"] in NATS_ANCHORS and not _conditional(r):
            name, value = NATS_ANCHORS[r["model"]]
            anchor = f"{name}: {value:.2f}"
            if r["model"] in NATS_AIMS and _on_gpu(r):
                verdict = "not judged: trained on a GPU, the aim's 60 min are this CPU's"
            elif r["model"] in NATS_AIMS:
                aim = f"<= {NATS_AIMS[r['model']]:.2f} in 60 min"
                gap = m["nll_nats"] - NATS_AIMS[r["model"]]
                over = (r.get("train_wall_s") or 0) > 3600
                verdict = ("met" if gap <= 0 else f"missed by {gap:.2f} nats") + \
                    (" (trained longer than 60 min)" if over else "") + \
                    (" (autoregressive decoder)" if _autoregressive_decoder(r) else "")
        if r["dataset"] == "mnist" and "bpd" in m and r["model"] in BPD_ANCHORS and not _conditional(r):
            name, value = BPD_ANCHORS[r["model"]]
            anchor = f"{name}: {value:.2f} bpd"
        lines.append(f"| {r['dataset']} | {_label(r)} | {likelihood_cell(m, r['model'], _conditional(r))} | {elbo} | "
                     f"{anchor} | {aim} | "
                     f"{verdict} | {_min(r.get('train_wall_s'))}{' on GPU' if _on_gpu(r) else ''} |")
    return lines + [""]


def _run_label(run: str) -> str:
    return f"`{Path(run).name.removeprefix('bench-')}`"


def _runs_label(r: dict) -> str:
    """The run of an application row, or the runs of a mixture joined by +; a classifier's input draws if more
    than one, or its thresholded inputs."""
    draws = r.get("metrics", {}).get("draws", 1)
    return (" + ".join(_run_label(run) for run in r.get("mixture_runs", [r["run"]]))
            + (f" ({draws} draws)" if draws > 1 else "")
            + (" (thresholded)" if r.get("binarize") == "threshold" else ""))


def apps_section(apps: dict) -> list[str]:
    if not any(apps.values()):
        return []
    lines = ["## Applications", "", "Each row names the run folder it used (`runs/bench-NAME`, trained by the command "
             "in `bench/results/NAME.json`) and the command that produced it.", ""]
    if apps["ood"]:
        lines += ["### Out-of-distribution detection", "",
                  "AUROC with the in-distribution test images as positives (0.5 = chance; below 0.5 = the score "
                  "prefers the other data set): the raw log-likelihood, Serra et al. 2020's input-complexity score "
                  "and Nalisnick et al. 2019's typicality test; the first n test images of each set.", "",
                  "| run | in -> out | n | log p(x) | complexity | typicality | mean log p in / out (nats) | wall | "
                  "command |", "|---|---|---|---|---|---|---|---|---|"]
        for r in apps["ood"]:
            m = r["metrics"]
            lines.append(f"| {_run_label(r['run'])} | {r['dataset']} -> {r['out_dataset']} | {r['n_in']} | "
                         f"{m['ood_auroc']:.3f} | {m['ood_auroc_complexity']:.3f} | {m['ood_auroc_typicality']:.3f} | "
                         f"{m['mean_log_px_in_nats']:.1f} / {m['mean_log_px_out_nats']:.1f} | {_min(r['wall_s'])} | "
                         f"`{r['command']}` |")
        lines.append("")
    if apps["classify"]:
        lines += ["### Generative (Bayes) classifier", "",
                  "argmax_y p(x|y) p(y) (uniform prior) with the model's likelihood or bound, beside genzoo's frozen "
                  "discriminative classifier on the same images, clean and with additive Gaussian noise (std on the "
                  "[0, 1] scale). Target: at least 99.0% on MNIST with the best family.", "",
                  "| run | data | n | estimator | noise std | Bayes acc. | discriminative acc. | wall | command |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in apps["classify"]:
            for row in r["by_noise"]:
                disc = f"{row['discriminative_acc']:.4f}" if "discriminative_acc" in row else ""
                if "discriminative_thresholded_acc" in row:
                    disc += f" ({row['discriminative_thresholded_acc']:.4f} thresholded)"
                lines.append(f"| {_runs_label(r)} | {r['dataset']} | {r['n_test']} | "
                             f"{r['estimator'].replace('|', chr(92) + '|')} | "
                             f"{row['noise_std']} | {row['bayes_acc']:.4f} | {disc} | {_min(r['wall_s'])} | "
                             f"`{r['command']}` |")
        lines += [""] + [f"- {_runs_label(r)}: noise {r['noise']}; the discriminative classifier sees these "
                         f"noisy 8-bit images, the Bayes classifier the model's inputs made from them: {r['inputs']}."
                         + _trained(r.get("trained")) for r in apps["classify"]]
        best = max((r for r in apps["classify"] if r["dataset"] == "mnist"), default=None,
                   key=lambda r: r["metrics"]["bayes_acc"])
        if best is not None:
            acc = best["metrics"]["bayes_acc"]
            lines += ["", f"- MNIST: best Bayes classifier {_runs_label(best)} {acc:.2%} against the aim of "
                      "99.0%: " + ("met." if acc >= 0.99 else f"missed by {100 * (0.99 - acc):.2f} points.")]
        lines.append("")
    for r in apps["restore"]:
        variant = r.get("variant", "default")
        on_gpu = str(r.get("eval_device", "cpu")).startswith("cuda")
        lines += [f"### Restoration on {r['dataset']}" + (f" ({variant})" if variant != "default" else ""), "",
                  f"{r['images']}, seed {r['seed']}; {r['metric_notes']}. FID of the clean images at this n: "
                  f"{r['fid_truth']}. Command: `{r['command']}`."
                  + (f" Restored on {r['eval_device']}." if on_gpu else "")
                  + (f" {r['note'][0].upper()}{r['note'][1:]}." if r.get("note") else "")
                  + (f" Not finished in its budget: {', '.join(_run_label(x) for x in r['failed_runs'])}."
                     if r.get("failed_runs") else ""), "",
                  "| run | task | mask | method | PSNR | SSIM | FID | wall |", "|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            m = row["metrics"]
            cells = [f"{m[k]:.3f}" if k in m else "" for k in ("psnr", "ssim", "fid")]
            lines.append(f"| {_run_label(row['run'])} | {row['task']} | {row['preset'] or ''} | {row['method']} | "
                         + " | ".join(cells) + f" | {_min(row['wall_s'])} |")
        if r.get("figure"):
            lines += ["", f"![restoration]({r['figure']})"]
        lines.append("")
    for r in apps["augment"]:
        lines += [f"### Augmentation gain: `{r['model']}` on {r['dataset']}", "",
                  f"Command: `{r['command']}`; seeds {r['seeds']}; the classifier recipe for "
                  f"{r['classifier_steps']} steps on n real images, or on them plus {r['gen_ratio']:g}x as many "
                  "generated by a model trained on the same n; mean (std) test accuracy over the seeds.", "",
                  "| n real | generated | real | real + generated | gain (points) | CAS (real) | generative model | "
                  "augment wall |", "|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            m = row["metrics"]
            sd = {k: f" ({m[k]:.4f})" if k in m else "" for k in ("acc_real_std", "acc_real_gen_std")}
            cas_cell = f"{m['cas']:.4f} ({m['cas_real']:.4f})" if "cas" in m else ""
            kept = " (an earlier call's row, made by the same commands)" if row.get("kept") else ""
            lines.append(f"| {row['n_real']}{kept} | {row['n_generated']} | "
                         f"{m['acc_real_mean']:.4f}{sd['acc_real_std']} | "
                         f"{m['acc_real_gen_mean']:.4f}{sd['acc_real_gen_std']} | "
                         f"{100 * (m['acc_real_gen_mean'] - m['acc_real_mean']):+.2f} | {cas_cell} | "
                         f"{row['train_steps']} steps, {_min(row['train_wall_s'])} | {_min(row['augment_wall_s'])} |")
        missing = [n for n in AUGMENT_NS if n not in {row["n_real"] for row in r["rows"]}]
        notes = []
        if _on_gpu(r):
            notes.append(f"- Device: {r['device']} for training and sampling, in a {r['machine']}"
                         + (f"; {r['note']}." if r.get("note") else "."))
        elif r.get("note"):
            notes.append(f"- {r['note'][0].upper()}{r['note'][1:]}.")
        if r.get("jobs", 1) > 1 and not r.get("note"):
            notes.append(f"- The n ran {r['jobs']} at a time, side by side, so each wall time is its share of the "
                         "machine.")
        if missing:
            notes.append(f"- No row for n = {', '.join(map(str, missing))} of the n in docs/metrics.md "
                         f"({', '.join(map(str, AUGMENT_NS))}).")
        if r.get("cas_n"):
            short = "" if r["cas_n"] == 60_000 else " (docs/metrics.md asks for 60,000)"
            notes.append(f"- CAS: the recipe on {r['cas_n']} class-balanced generated images alone{short}, first seed; "
                         "in brackets the frozen classifier's accuracy on real images"
                         + (" (the same recipe on all 60000 real images is the `real` column at n = 60000)."
                            if any(row["n_real"] == 60_000 for row in r["rows"]) else "."))
        lines += ["", *notes, ""] if notes else [""]
        if r.get("plot"):
            lines += [f"![augmentation gain]({r['plot']})", ""]
    return lines


# The papers' model sizes, as genzoo configs: what a longer run (a GPU, days rather than an hour of 2 CPU cores)
# would train to approach each anchor. Not measured here; the rows above are what this machine reached.
TOWARD_ANCHORS = [
    ("`vae`", "a deeper residual encoder/decoder trained far longer", "genzoo train vae --data mnist "
     "--set res_blocks=4 --set width=128 --set latent_dim=32 --steps 500000 --set lr_decay=cosine"),
    ("`iwae`", "Burda et al. trained 3,280 passes over the data (this row: about 20)", "genzoo train iwae --data mnist --steps 1500000 "
     "--set lr_decay=cosine"),
    ("`pixelcnn`", "15 residual blocks (van den Oord et al. 2016 used 15 layers for CIFAR-10)", "genzoo train pixelcnn --data "
     "mnist --set width=128 --set res_blocks=15 --steps 200000 --set lr_decay=cosine"),
    ("`gated-pixelcnn`", "15 gated layers, wider stacks", "genzoo train gated-pixelcnn --data mnist --set width=128 "
     "--set res_blocks=15 --steps 200000 --set lr_decay=cosine"),
    ("`pixelrnn`", "more and wider Row LSTM layers", "genzoo train pixelrnn --data "
     "mnist --set width=128 --set res_blocks=7 --steps 200000"),
    ("`glow`", "32 steps per level and 512-channel coupling networks (Kingma & Dhariwal 2018)", "genzoo train glow "
     "--data mnist --set n_levels=2 --set steps_per_level=32 --set width=512 --steps 300000 --set lr_warmup_steps=5000"),
    ("`realnvp`", "deeper residual coupling networks, trained far longer", "genzoo train realnvp "
     "--data mnist --set res_blocks=8 --set width=64 --steps 300000"),
    ("`ddpm`", "a 35.7M-parameter U-Net trained 800k steps at batch 128 (Ho et al. 2020, CIFAR-10)", "genzoo train ddpm "
     "--data mnist --set width=128 --set res_blocks=2 --steps 200000"),
]


def toward_anchors_section() -> list[str]:
    lines = ["## What more compute would train", "",
             "The published numbers came from days of GPU training at the papers' model sizes. These commands train "
             "genzoo's presets at those sizes; they have not been run, so no result is claimed for them.", "",
             "| model | the paper's size | command |", "|---|---|---|"]
    lines += [f"| {m} | {why} | `{cmd}` |" for m, why, cmd in TOWARD_ANCHORS]
    return lines + [""]


def real_fid_at(refs: dict, dataset: str, n) -> str:
    """The real-vs-real FID at the same n (FID is biased upward at small n), where that reference exists."""
    ref = refs.get(dataset)
    for r in ([ref] + ref.get("small_n", [])) if ref else []:
        if r.get("n_generated", 10000) == n:
            return f"{r['metrics']['fid']:.3f}"
    return ""


def diffusion_section(refs: dict, results: list[dict]) -> list[str]:
    rows = [r for r in results if r["model"] in FAMILIES["diffusion"]]
    lines = []
    for r in rows:
        lines += [f"## `{r['model']}` on {r['dataset']}" + (f" ({r['variant']})" if r.get("variant") != "default"
                                                             else ""), "", f"Command: `{r['command']}`.", ""]
        if _on_gpu(r):
            probe = r.get("probe")
            lines += [f"Device: {r['device']}, for training, sampling and scoring"
                      + (f" (run by `{r['driver']}`)" if r.get("driver") else "") + ". "
                      + (f"A {probe['probe_steps']}-step probe ({probe['probe_wall_s']} s) sized the run to "
                         f"{probe['train_minutes']:g} minutes: {probe['chosen_steps']} steps of "
                         f"{r['train_config']['batch_size']} images, {_min(r['train_wall_s'])}. " if probe else "")
                      + (f"{r['note'][0].upper()}{r['note'][1:]}." if r.get("note") else ""), ""]
        if r.get("sampler_sweep") and "metrics" not in r["sampler_sweep"][0]:    # data without a feature network
            lines += ["| sampler | network passes | images/s |", "|---|---|---|"]
            lines += [f"| {s['sampler']} | {s['steps']} | {s['sample_img_per_s']:.2f} |" for s in r["sampler_sweep"]]
            lines.append("")
        elif r.get("sampler_sweep"):
            lines += ["| sampler | network passes | n | FID | real-vs-real FID at n | KID x1e3 | precision | recall | "
                      "classifier score | images/s |", "|---|---|---|---|---|---|---|---|---|---|"]
            for s in r["sampler_sweep"]:
                m = s["metrics"]
                lines.append(f"| {s['sampler']} | {s['steps']} | {s['n']} | {m['fid']:.3f} | "
                             f"{real_fid_at(refs, r['dataset'], s['n'])} | "
                             f"{1e3 * m['kid_mean']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                             f"{m['classifier_score']:.2f} | {s['sample_img_per_s']:.2f} |")
            lines += ["", f"![quality vs steps]({r['steps_plot']})", ""]
        if r.get("guidance_sweep"):
            lines += ["| guidance w | n | FID | real-vs-real FID at n | per-class FID | CAS (real) | "
                      "classifier score |",
                      "|---|---|---|---|---|---|---|"]
            for s in r["guidance_sweep"]:
                m = s["metrics"]
                lines.append(f"| {s['guidance']} | {s['n']} | {m['fid']:.3f} | "
                             f"{real_fid_at(refs, r['dataset'], s['n'])} | "
                             f"{m.get('intra_fid', 0):.3f} | "
                             f"{m.get('cas', 0):.4f} ({m.get('cas_real', 0):.4f}) | {m['classifier_score']:.2f} |")
            lines.append("")
        if r.get("cas_note"):
            lines += [f"{r['cas_note']}; CAS (real) is the frozen classifier's test accuracy.", ""]
        if r.get("bpd_note"):
            tf32 = " It was scored on the GPU with cuDNN's default TF32 convolutions (10-bit mantissas), before " \
                "genzoo's scoring turned TF32 off, and has not been rescored since." \
                if _on_gpu(r) and "TF32" not in r["bpd_note"] else ""
            lines += [f"Bits/dim {r['metrics']['bpd']:.3f}: {r['bpd_note']}.{tf32}", ""]
    return lines + diffusion_aim(refs, results, rows)


def _on_gpu(r: dict) -> bool:
    return str(r.get("device", "cpu")).startswith("cuda")


def _real_fid(refs: dict, dataset: str, n) -> float | None:
    cell = real_fid_at(refs, dataset, n)
    return float(cell) if cell else None


def _trained(t: dict | list | None) -> str:
    """How a classified run was trained, from the run folder (bench/classify.py records it); a mixture's runs one
    after another."""
    if not t:
        return ""
    if isinstance(t, list):
        return "".join(_trained(one).replace(" The model:", f" Model {i + 1}:", 1) for i, one in enumerate(t))
    options = ", ".join(f"{k}={v}" for k, v in {**t.get("options", {}), **t.get("train_options", {})}.items())
    return (f" The model: {t['steps']} steps of {t['batch_size']} images in {_min(t['train_wall_s'])}"
            + (f", options {options}" if options else ", the preset's options") + ".")


def _train_time(r: dict) -> str:
    """The diffusion time aim: at most 60 minutes of training. With a train split (bench/train_time.py), the steps'
    time is judged and the monitoring after the last step is named; otherwise the whole training loop."""
    if _on_gpu(r):
        return (f"trained {_min(r['train_wall_s'])} on {r['device']} (a GPU run; the 60-minute aim is for the "
                "2-core CPU's runs).")
    split = r.get("train_split")
    if not split or split["train_wall_s"] - split["steps_end_s"] < 1:
        return f"trained {_min(r['train_wall_s'])} (aim: at most 60 min)."
    return (f"trained {_min(split['train_wall_s'])}, of which {_min(split['train_wall_s'] - split['steps_end_s'])} "
            f"went to monitoring (sample grids, mode-coverage checks) and checkpoints, and the optimiser steps took at "
            f"most {_min(split['steps_end_s'])} (`{split['command']}`) (aim: at most 60 min of training: "
            + ("met" if split["steps_end_s"] <= 3600 else "missed") + ").")


def diffusion_aim(refs: dict, results: list[dict], rows: list[dict]) -> list[str]:
    """The diffusion aim per data set: the unconditional diffusion model's best FID within 2x the real-vs-real FID at
    the same n, and the lowest FID of every family. Other families are scored on more samples (FID's expectation
    falls as n grows), so a diffusion FID below theirs at a smaller n is lower at equal n too; the converse is not
    shown by these rows, unless that family has a row scored on the same n."""
    lines = []
    for r in rows:
        sweep = [s for s in r.get("sampler_sweep", []) if "metrics" in s]
        if r.get("guidance_sweep") or not sweep:
            continue
        # judged at the sweep's largest n, where FID's small-sample bias is least
        top = max(s["n"] for s in sweep)
        best = min((s for s in sweep if s["n"] == top), key=lambda s: s["metrics"]["fid"])
        fid, n, ref = best["metrics"]["fid"], best["n"], _real_fid(refs, r["dataset"], best["n"])
        text = f"- {r['dataset']}: {_label(r)} best FID {fid:.3f} ({_sampler(best)}, n = {n})"
        if ref:
            text += (f", {fid / ref:.1f}x the real-vs-real {ref:.3f} at that n (aim: within 2x): "
                     + ("met" if fid <= 2 * ref else f"missed by {fid - 2 * ref:.3f}"))
            # a sampler scored on fewer (>= 1000) samples whose ratio to the reference at its own n is better
            rated = [(s, _real_fid(refs, r["dataset"], s["n"])) for s in sweep if 1000 <= s["n"] < top]
            rated = [(s, x) for s, x in rated if x and s["metrics"]["fid"] / x < fid / ref]
            if rated:
                s, x = min(rated, key=lambda p: p[0]["metrics"]["fid"] / p[1])
                text += (f" ({_sampler(s)} scores {s['metrics']['fid']:.3f} on n = {s['n']}, "
                         f"{s['metrics']['fid'] / x:.1f}x the real-vs-real {x:.3f} at that n: fewer samples, so not "
                         "the verdict)")
        others = [o for o in results if o["dataset"] == r["dataset"] and o["model"] not in FAMILIES["diffusion"]
                  and "fid" in o.get("metrics", {})]
        if others:
            o = min(others, key=lambda o: o["metrics"]["fid"])
            on = o.get("n_generated", 10000)
            # a preset scored on the same n is judged by that row alone; otherwise FID falls as n grows, so its row
            # at n' >= n with a higher FID is beaten and a lower one leaves the question open
            judged = [x for x in others if x.get("n_generated", 10000) == n or not any(
                y["model"] == x["model"] and y.get("n_generated", 10000) == n for y in others)]
            below = [x for x in judged if x["metrics"]["fid"] <= fid]
            same = [x for x in below if x.get("n_generated", 10000) == n]
            if same:
                b = min(same, key=lambda x: x["metrics"]["fid"])
                verdict = (f"lowest of every family: missed, {_label(b)} scores {b['metrics']['fid']:.3f} at the same "
                           f"n = {n}")
            elif not below and all(x.get("n_generated", 10000) >= n or _far_above(refs, x, fid) for x in judged):
                fewer = [x for x in judged if x.get("n_generated", 10000) < n]
                verdict = "lowest of every family: met" + (
                    (f"; 1 row scored on fewer samples exceeds it by more than {BIAS_MARGIN}x the real-vs-real FID "
                     "at its n, a gap its small-sample bias cannot close" if len(fewer) == 1 else
                     f"; {len(fewer)} rows scored on fewer samples exceed it by more than {BIAS_MARGIN}x the "
                     "real-vs-real FID at their n, a gap their small-sample bias cannot close") if fewer else "")
            elif not below:
                verdict = "lower, but on more samples than some: not shown"
            else:
                verdict = "lowest of every family: not shown by these rows"
            text += (f"; the best other family, {_label(o)}, FID {o['metrics']['fid']:.3f} at n = {on} ({verdict}; "
                     "FID falls as n grows, so a lower value at a smaller n is lower at equal n too)")
        lines.append(text + "; " + _train_time(r))
    return lines + [""] if lines else []


BIAS_MARGIN = 10    # x the real-vs-real FID at a row's n: more than any small-sample bias of a set as spread as data


def _far_above(refs: dict, row: dict, fid: float) -> bool:
    """Whether ``row``, scored on fewer samples, exceeds ``fid`` by more than BIAS_MARGIN x the real-vs-real FID at
    its n (or at the nearest smaller n with a reference: FID's bias only grows as n shrinks)."""
    n = row.get("n_generated", 10000)
    ref = refs.get(row["dataset"])
    known = [x for x in ([ref] + ref.get("small_n", []) if ref else []) if x.get("n_generated", 10000) <= n]
    if not known:
        return False
    rr = max(known, key=lambda x: x.get("n_generated", 10000))["metrics"]["fid"]
    return row["metrics"]["fid"] - fid > BIAS_MARGIN * rr


def _sampler(s: dict) -> str:
    return f"{s['sampler'].upper()}-{s['steps']}"


def colour_section(results: list[dict]) -> list[str]:
    """One model per family on the colour patches (3 x 32 x 32): the end-to-end check of colour data."""
    rows = [r for r in results if r["dataset"] == "patches"]
    if not rows:
        return []
    lines = ["## Colour: every family on `patches`", "",
             "One preset per family trained for a bounded time on the 32x32 colour patches of scikit-learn's two "
             "photos (`genzoo data prepare patches`), with its default config as the data set adjusts it. genzoo "
             "ships no frozen classifier for these images, so FID/KID/precision-recall are refused (give "
             "`genzoo eval --feature-net` a feature network of your own); the likelihood is on the 600 test "
             "patches, dequantized once with seed 0 (diffusion: the bound on the first test patches). These runs "
             "show that colour works end to end; their quality says nothing of what longer runs reach.", "",
             "| family | preset | steps | train wall | img/s | bits/dim | 64 samples (s) | samples |",
             "|---|---|---|---|---|---|---|---|"]
    family = {p: f for f, presets in FAMILIES.items() for p in presets}
    for r in rows:
        draw = r.get("sample_64_wall_s", "")
        ddim50 = [s for s in r.get("sampler_sweep", []) if s["setting"] == "ddim-50"]
        if not draw and ddim50:        # diffusion times its samplers on a small batch: 64 at that rate
            draw = f"{64 / ddim50[0]['sample_img_per_s']:.1f} (DDIM-50)"
        lines.append(f"| {family[r['model']]} | {_label(r)} | {r.get('train_steps', '')} | "
                     f"{_min(r.get('train_wall_s'))} | {r.get('train_img_per_s') or 0:.0f} | "
                     f"{likelihood_cell(r['metrics'], r['model'], _conditional(r))} | {draw} | ![]({r['sample_grid']}) |")
    return lines + [""]


def figures_section(results: list[dict]) -> list[str]:
    lines = ["## Pictures", "", "Sample grids (EMA weights; conditional models one row per class), reconstructions "
             "(test inputs over outputs), latent interpolations (between two test images where the model encodes "
             "images, else two seeds) and code traversals, as `bench/family.py` draws them.", ""]
    for r in results:
        pics = [("samples", r.get("sample_grid"))] + list((r.get("figures") or {}).items())
        pics += [(k, v) for k, v in r.items() if k.startswith("traverse_") and isinstance(v, str)]
        pics = [(k, v) for k, v in pics if v]
        if pics:
            lines.append(f"- {_label(r)} on {r['dataset']}: " + " ".join(f"![{k}]({v})" for k, v in pics))
    return lines + [""]


def throughput_section(r: dict) -> list[str]:
    lines = ["## Training-step throughput", "",
             f"Command: `{r['command']}`. One full training step (every phase: forward, backward, Adam) on "
             f"random batches of 128 after 5 warm-up steps, {r['steps_timed']} timed. The FLOP count "
             "is torch's FlopCounterMode over one fp32 step; the fraction is achieved FLOP/s over the FLOP/s "
             f"of a 2048x2048 float32 matmul measured in the same run ({r['matmul_2048_fp32_gflop_per_s']:.0f} "
             "GFLOP/s).", "",
             "| model | precision | img/s | GFLOP/step | achieved GFLOP/s | fraction of fp32 matmul |",
             "|---|---|---|---|---|---|"]
    for key, v in r["metrics"].items():
        name, prec = key.rsplit("-", 1)
        flops = (f"{v['step_gflop']:.2f} | {v['achieved_gflop_per_s']:.1f} | {v['fraction_of_fp32_matmul']:.3f}"
                 if "step_gflop" in v else "not counted | |")
        lines.append(f"| {name} | {prec} | {v['img_per_s']:.0f} | {flops} |")
    models = sorted({k.rsplit("-", 1)[0] for k in r["metrics"]})
    speedups = [f"{m} {r['metrics'][m + '-bf16']['img_per_s'] / r['metrics'][m + '-fp32']['img_per_s']:.2f}x"
                for m in models if m + "-bf16" in r["metrics"]]
    lines += ["", "bf16 autocast speed-up over fp32: " + ", ".join(speedups) + "."]
    if "bf16_auto" in r:
        lines += ["", f"On this CPU (model {r['cpu']['model']}; avx512_bf16 {r['cpu']['avx512_bf16']}, amx_bf16 "
                  f"{r['cpu']['amx_bf16']}) the training default `bf16: auto` resolves to {r['bf16_auto']}."]
    uncounted = sorted({k.rsplit("-", 1)[0] for k, v in r["metrics"].items() if "step_gflop" not in v})
    if uncounted:
        lines += ["", f"FLOPs not counted for {', '.join(uncounted)}: torch's FlopCounterMode cannot follow the "
                  "autograd.grad call of a gradient penalty."]
    if any(v.get("fraction_of_fp32_matmul", 0) > 1 for v in r["metrics"].values()):
        lines += ["", "A fraction above 1 means the training step's convolutions ran faster than torch's float32 "
                  "2048x2048 matmul did on the same CPU in the same run: the reference matmul is itself far from "
                  "the CPU's peak there, so read the column as relative to it, not to the hardware's peak."]
    return lines + ["", f"Machine: {r['machine']}, device {r['device']}.", ""]


SUMMARY_DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def _n(r: dict) -> int:
    return r.get("n_generated", 10000)


def best_fid(rows: list[dict]) -> dict | None:
    """The best sample quality of a family on a data set: the lowest FID among its rows (and their sampler sweeps)
    scored on the most samples, since FID is biased upward at small n. Returns {"fid", "n", "label"} or None."""
    cands = []
    for r in rows:
        if "fid" in r["metrics"]:
            cands.append({"fid": r["metrics"]["fid"], "n": _n(r), "label": _label(r)})
        for s in r.get("sampler_sweep", []):
            if "fid" in s.get("metrics", {}):
                cands.append({"fid": s["metrics"]["fid"], "n": s["n"], "label": f"{_label(r)}, {_sampler(s)}"})
    if not cands:
        return None
    top = max(c["n"] for c in cands)
    return min((c for c in cands if c["n"] == top), key=lambda c: c["fid"])


def best_likelihood(rows: list[dict], conditional: bool = False) -> dict | None:
    """The best likelihood of a family on a data set: the lowest NLL (nats if any row has them, else bits/dim) of
    its unconditional rows (a class-conditional row scores -log p(x|y), which no anchor is quoted for), or with
    ``conditional`` of the class-conditional rows, to set beside a class-conditional model."""
    rows = [r for r in rows if _conditional(r) == conditional]
    key = "nll_nats" if any("nll_nats" in r["metrics"] for r in rows) else "bpd"
    rows = [r for r in rows if key in r["metrics"]]
    return min(rows, key=lambda r: r["metrics"][key]) if rows else None


def likelihood_anchor(r: dict) -> str:
    """The published figure the Likelihoods table holds the row against, where it quotes one."""
    m = r["metrics"]
    if r["dataset"] == "mnist" and "nll_nats" in m and r["model"] in NATS_ANCHORS:
        name, value = NATS_ANCHORS[r["model"]]
        return f"{value:.2f} nats, {name}"
    if r["dataset"] == "mnist" and "nll_nats" not in m and "bpd" in m and r["model"] in BPD_ANCHORS:
        name, value = BPD_ANCHORS[r["model"]]
        return f"{value:.2f} bpd, {name}"
    return "none quoted"


def _times(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def summary_section(refs: dict, results: list[dict]) -> list[str]:
    """One screen: per family and data set, the best FID beside the real-vs-real FID at the same n, and the best
    likelihood beside the published figure the tables quote for that model."""
    lines = ["## Summary", "",
             "The best row of each family on each data set, beside the reference it is judged against. Sample "
             "quality: the lowest FID among the family's rows scored on the most samples (FID is biased upward at "
             "small n; diffusion rows include their sampler sweeps), beside the real-vs-real FID at the same n. "
             "Likelihood: the lowest NLL among the family's unconditional rows, in nats per image on dyn-binarized "
             "MNIST or bits/dim on 8-bit data with the estimator in brackets, beside the published figure the "
             "Likelihoods table quotes for that model. Lower is better in every column; the full tables follow.", "",
             "| family | data | best FID: row (n) | real-vs-real FID at n | FID / real-vs-real | "
             "best likelihood: row | published anchor |", "|---|---|---|---|---|---|---|"]
    for family, presets in FAMILIES.items():
        for dataset, name in SUMMARY_DATASETS.items():
            rows = [r for r in results if r["dataset"] == dataset and r["model"] in presets]
            if not rows:
                continue
            fid, like = best_fid(rows), best_likelihood(rows)
            fid_cell, ref_cell = "", " |"
            if fid is not None:
                fid_cell = f"{fid['label']}: {fid['fid']:.3f} (n = {fid['n']})"
                ref = _real_fid(refs, dataset, fid["n"])
                ref_cell = f"{ref:.3f} | {_times(fid['fid'] / ref)}" if ref else "no reference at this n |"
            if like is not None:
                like_cell = f"{_label(like)}: {likelihood_cell(like['metrics'], like['model'])}"
                anchor = likelihood_anchor(like)
            elif family == "GAN":
                like_cell, anchor = "none: GANs define no likelihood", ""
            else:
                like_cell, anchor = "not measured", ""
            lines.append(f"| {family} | {name} | {fid_cell} | {ref_cell} | {like_cell} | {anchor} |")
    return lines + [""]


def zoo_section(refs: dict, results: list[dict]) -> list[str]:
    """The zoo (bench/zoo.py): each model's headline metrics beside the best FID and likelihood of its family on
    its data set."""
    zoo = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("zoo-*.json"))]
    if not zoo:
        return []
    lines = ["## The zoo", "",
             "The trained models that come with genzoo (docs/zoo.md), each made by `python bench/zoo.py NAME`: "
             "trained by its recipe, exported, and scored as exported by `genzoo eval` (EMA weights, seed 0) at "
             "n = 10,000 generated images, or the n in the table where the sampler is slow, beside the "
             "real-vs-real FID at that n; the Bayes classifier's accuracy by `genzoo classify --test` (on the "
             "number of test images in brackets). Sampling: seconds to draw 16 images on the CPU after loading "
             "(load time apart), with the sampler it was scored with. Size: the stored weights. The last columns are "
             "the best FID and the best likelihood its family has on that data set in the tables below.", "",
             "| model | data | steps | train wall | n | FID (real vs real) | precision | recall | CAS | likelihood | "
             "Bayes classifier | load, 16 samples | size | family's best FID: row | family's best likelihood: row |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for z in zoo:
        lines.append(_zoo_row(z, refs, results))
    return lines + [""]


def _zoo_row(z: dict, refs: dict, results: list[dict]) -> str:
    m = z["metrics"]
    data = z.get("data") or z["model"].split("-", 1)[1]
    preset = z.get("model_name") or z["model"].split("-")[0]
    family = next(f for f, presets in FAMILIES.items() if preset in presets)
    rows = [r for r in results if r["dataset"] == data and r["model"] in FAMILIES[family]]
    best, like = (best_fid(rows), best_likelihood(rows, conditional=True)) if rows else (None, None)
    n = z.get("n_generated", 10000)
    ref = real_fid_at(refs, data, n)
    cell = lambda k, f="{:.3f}": f.format(m[k]) if k in m else ""   # noqa: E731
    fid = f"{m['fid']:.3f} ({ref or 'no reference at this n'})" if "fid" in m else ""
    likelihood = likelihood_cell(m, preset, True) if "nll_nats" in m or "bpd" in m else ""
    if "nll_images" in z:
        likelihood += f" on {z['nll_images']} test images"
    bayes = f"{100 * m['bayes_acc']:.2f}% ({z.get('classified', '?')})" if "bayes_acc" in m else ""
    dtype = "" if z.get("weights_dtype", "float32") == "float32" else f" ({z['weights_dtype']})"
    best_like = f"{_label(like)}: {likelihood_cell(like['metrics'], like['model'], _conditional(like))}" \
        if like else ""
    return (f"| `{z['model']}` | {data} | {z['steps']} | {z['train_wall_s'] / 60:.1f} min | {n} | {fid} | "
            f"{cell('precision')} | {cell('recall')} | {'%.2f%%' % (100 * m['cas']) if 'cas' in m else ''} | "
            f"{likelihood} | {bayes} | {z['sampling']['load_s']:.2f} s, {z['sampling']['sample16_s']:.2f} s | "
            f"{z['weights_bytes'] / 1e6:.1f} MB{dtype} | "
            f"{'%s: %.3f (n = %d)' % (best['label'], best['fid'], best['n']) if best else ''} | {best_like} |")


def render() -> str:
    """BENCHMARKS.md's text, from the result files alone."""
    refs, results, apps = load_all()
    cpu_rows = [r for r in results if not _on_gpu(r)]
    machines = sorted({r["machine"] for r in cpu_rows} | {r["machine"] for r in refs.values()})
    gpus = sorted({f"{r['device']} in a {r['machine']}" for r in results if _on_gpu(r)})
    out = ["# genzoo benchmarks", "",
           "Generated by `python bench/summarize.py` from `bench/results/*.json`; each file records the command that "
           "regenerates it, the machine, thread count and wall times. Units and estimators follow "
           "[docs/metrics.md](docs/metrics.md). "
           "Machines: " + "; ".join(machines) + ". Wall times and img/s are from that shared CPU machine: runs made "
           "while other jobs used it are slower than on an idle one, so compare speeds only within one table row's "
           "run, never between runs made at different times."
           + (" Rows marked (gpu) were trained and scored on a GPU: " + "; ".join(gpus) + "."
              if gpus else ""), ""]
    out += summary_section(refs, results)
    out += zoo_section(refs, results)
    out += quality_section(refs, results)
    out += gan_section(refs, results)
    out += vae_section(results)
    out += likelihood_section(results)
    out += toward_anchors_section()
    out += diffusion_section(refs, results)
    out += apps_section(apps)
    out += colour_section(results)
    out += figures_section(results)
    throughput = RESULTS / "throughput.json"
    if throughput.exists():
        out += throughput_section(json.loads(throughput.read_text()))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Write BENCHMARKS.md; with --check, only say whether the committed file matches the results."""
    import argparse
    p = argparse.ArgumentParser(description="Build BENCHMARKS.md from bench/results/*.json.")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if BENCHMARKS.md is stale")
    args = p.parse_args(argv)
    text, path = render(), ROOT / "BENCHMARKS.md"
    if args.check:
        if path.exists() and path.read_text() == text:
            return 0
        print(f"{path} is stale: run python bench/summarize.py", file=sys.stderr)
        return 1
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
