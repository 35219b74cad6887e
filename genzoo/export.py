"""``genzoo export RUN DIR``: a run folder as a model folder to share, the format of genzoo's zoo.

The folder holds config.json (the run's resolved config), ema.safetensors (the EMA weights, or the raw
weights where the run kept no EMA), card.json and card.md (what the model is, what it can do, how it was
trained and every metric its eval results hold, with their provenance), and manifest.json (each file's
sha256 and size, checked whenever the folder is loaded: genzoo.hub.verify). Upload the folder as a
Hugging Face model repository and ``genzoo.load("hf://owner/name@revision")`` loads it anywhere.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import checkpoint as ckpt
from .errors import GenzooError
from .hub import MANIFEST, write_manifest

CARD_JSON, CARD_MD = "card.json", "card.md"
HEADLINE = ("fid", "fid_ref", "kid", "precision", "recall", "score", "nll_nats", "elbo_nats", "bpd", "iwae_k", "cas",
            "bayes_acc")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def capability_words(caps) -> list[str]:
    """A model's declaration in a few words, as `genzoo zoo` and the cards list it."""
    words = ["sample"]
    if caps.conditional:
        words.append("classes")
    if caps.likelihood.kind == "exact":
        words.append("exact likelihood")
    elif caps.likelihood.kind == "bound":
        words.append(f"likelihood bound ({caps.likelihood.estimator})")
    elif caps.likelihood.kind == "estimate":
        words.append(f"likelihood estimate ({caps.likelihood.estimator})")
    if caps.latents:
        words.append("latents")
    if caps.encode:
        words.append("encode")
    if caps.completion:
        words.append(f"completion ({caps.completion})")
    return words


def _eval_records(run_dir: Path) -> list[dict]:
    """The eval results in the run folder (eval.json, eval-*.json) and its Bayes-classifier results
    (classify.json, classify-*.json of `genzoo classify --test`: the clean row as bayes_acc beside
    discriminative_acc), each as a record with "metrics"."""
    records = []
    for path in sorted(run_dir.glob("eval*.json")) + sorted(run_dir.glob("classify*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("by_noise"), list):
            record = _classify_record(record)
        if isinstance(record, dict) and isinstance(record.get("metrics"), dict):
            records.append({**record, "file": path.name})
    return records


def _classify_record(record: dict) -> dict | None:
    clean = next((row for row in record["by_noise"] if row.get("noise_std") == 0), None)
    if clean is None:
        return None
    metrics = {k: clean[k] for k in ("bayes_acc", "discriminative_acc") if k in clean}
    return {**{k: record[k] for k in ("split", "seed", "machine", "wall_s", "estimator", "prior") if k in record},
            "n_classified": record.get("n"), "metrics": metrics}


def known_limits(model, data: str) -> list[str]:
    """What the model cannot be trusted for, from its declaration and its data."""
    cfg, caps = model.config, model.capabilities
    limits = [f"trained on {data} alone ({cfg.channels}x{cfg.image_size}x{cfg.image_size} images): on other images "
              "its samples, scores and restorations mean nothing"]
    if caps.likelihood.kind == "none":
        limits.append(f"no likelihood ({caps.likelihood.reason}): no Bayes classifier, no OOD score")
    elif caps.likelihood.kind == "bound":
        limits.append("its likelihood is a bound, not the exact value (docs/metrics.md)")
    elif caps.likelihood.kind == "estimate":
        limits.append("its likelihood is a stochastic estimate through an ODE solver, not the exact value: unbiased "
                      "for the solved ODE, off the model's density by the solver's error (docs/metrics.md)")
    if not caps.encode:
        limits.append("no encoder: it cannot map a given image to its latent space")
    return limits


def build_card(run_dir: Path, name: str, weights: str, use: str = "", dtype: str = "float32") -> dict:
    """card.json's contents from a run folder: its config, summary and eval results."""
    config = ckpt.read_config(run_dir)
    model = ckpt.load(run_dir)
    summary = {}
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
    metrics, evals = {}, []
    for record in _eval_records(run_dir):
        metrics.update(record["metrics"])
        evals.append({k: record.get(k) for k in ("file", "n_generated", "n_classified", "estimator", "seed", "split",
                                                 "checkpoint", "machine", "sample_options", "wall_s", "metrics",
                                                 "refused")
                      if record.get(k) is not None})
    final = {k: summary[k] for k in ("elbo_nats", "elbo_bpd", "nll_nats", "bpd") if k in summary}
    stored = DTYPES[dtype].itemsize
    size = sum(p.numel() * (stored if p.is_floating_point() else p.element_size()) for p in model.state_dict().values())
    return {"name": name, "model_name": config["model_name"], "family": type(model).__name__,
            "data": config["data"], "capabilities": capability_words(model.capabilities), "weights": weights,
            "weights_dtype": dtype, "intended_use": use or "not stated", "known_limits": known_limits(model, config["data"]),
            "parameters": sum(p.numel() for p in model.parameters()), "weights_bytes": size,
            "training": {"steps": summary.get("step"), "status": summary.get("status"),
                         "train_wall_s": summary.get("train_wall_s"), "machine": summary.get("machine"),
                         "command": f"genzoo train --config {name}/config.json",
                         "config": {"model": config["model"], "train": config["train"]}},
            "end_of_training": final,
            "headline": {k: metrics[k] for k in HEADLINE if k in metrics},
            "evaluations": evals}


def card_markdown(card: dict) -> str:
    """card.md: the card in words for people."""
    t = card["training"]
    lines = [f"# {card['name']}", "",
             f"`{card['model_name']}` ({card['family']}) trained on `{card['data']}`; "
             f"{card['parameters']:,} parameters, {card['weights']} weights stored in {card.get('weights_dtype', 'float32')}"
             + ("" if card.get("weights_dtype", "float32") == "float32" else
                " (the model computes in float32; every metric below was measured on the stored weights)") + ".", "",
             f"Can: {', '.join(card['capabilities'])}.", "", "## Intended use", "", card["intended_use"], "",
             "## Known limits", ""] + [f"- {line}" for line in card["known_limits"]] + ["", "## Training", "",
             f"- steps: {t['steps']} ({t['status']}), training wall time {t['train_wall_s']} s",
             f"- machine: {t.get('machine') or 'not recorded'}",
             f"- reproduce: `{t['command']}` (config.json holds every key)", ""]
    if card["end_of_training"]:
        lines += ["## End of training", ""] + [f"- {k}: {v}" for k, v in card["end_of_training"].items()] + [""]
    lines += ["## Evaluation", ""]
    if not card["evaluations"]:
        lines += ["No eval results were in the run folder: run `genzoo eval` on the run before exporting it.", ""]
    for e in card["evaluations"]:
        facts = [f"n = {e['n_generated']}" if "n_generated" in e else "",
                 f"{e['n_classified']} test images classified ({e.get('estimator')})" if "n_classified" in e else "", f"seed {e['seed']}" if "seed" in e else "",
                 f"{e['split']} split" if "split" in e else "", f"{e['checkpoint']} weights" if "checkpoint" in e else "",
                 f"on {e.get('machine', 'an unrecorded machine')}"]
        lines.append(f"- `{e['file']}`: " + ", ".join(f for f in facts if f))
        lines += [f"  - {k}: {v:.4f}" if isinstance(v, float) else f"  - {k}: {v}" for k, v in e["metrics"].items()]
        lines += [f"  - {k}: refused ({why})" for k, why in (e.get("refused") or {}).items()]
    lines += ["", "Metric definitions: genzoo's docs/metrics.md.", ""]
    return "\n".join(lines)


def export(run_dir: str | Path, out: str | Path, name: str | None = None, overwrite: bool = False,
           use: str = "", dtype: str = "float32") -> Path:
    """Write the model folder of ``run_dir`` into ``out`` (see the module docstring); returns ``out``.

    ``dtype`` "float16" or "bfloat16" stores the floating-point weights at half the size (loading casts them
    back to the model's float32); score the exported folder, not the run, to measure what ships."""
    run_dir, out = Path(run_dir), Path(out)
    if dtype not in DTYPES:
        raise GenzooError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    ckpt.read_config(run_dir)                           # a run folder, or a clear error
    weights = "ema" if (run_dir / ckpt.EMA).is_file() else "raw"
    source = run_dir / (ckpt.EMA if weights == "ema" else ckpt.MODEL)
    if not source.is_file():
        raise GenzooError(f"{run_dir} holds no weights yet ({ckpt.MODEL}); train it first.")
    state = ckpt.load_weights(source)                 # read (and checked) before anything is removed
    if dtype != "float32":
        state = _narrowed(state, dtype, source)
    card = build_card(run_dir, name or out.name, weights, use, dtype)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise GenzooError(f"{out} exists and is not empty; pass overwrite=True to replace it.")
        if not (out / MANIFEST).is_file():
            raise GenzooError(f"refusing to overwrite {out}: it is not an exported model folder (no {MANIFEST}).")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((run_dir / ckpt.CONFIG).read_text())
    config.pop("run_dir", None)
    (out / ckpt.CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    if dtype == "float32":
        shutil.copyfile(source, out / ckpt.EMA)
    else:
        save_file(state, str(out / ckpt.EMA))
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    (out / CARD_MD).write_text(card_markdown(card))
    write_manifest(out, [ckpt.CONFIG, ckpt.EMA, CARD_JSON, CARD_MD])
    return out


def _narrowed(state: dict, dtype: str, source: Path) -> dict:
    """The state dict with its floating-point tensors in ``dtype``; refuses a weight outside that type's range."""
    target = DTYPES[dtype]
    limit = torch.finfo(target).max
    out = {}
    for key, t in state.items():
        if t.is_floating_point():
            if t.abs().max() > limit:
                raise GenzooError(f"{source}: {key} holds values beyond {dtype}'s range ({limit:g}); export it "
                                  "with dtype float32.")
            t = t.to(target).contiguous()
        out[key] = t
    return out
