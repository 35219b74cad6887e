"""What runs beside the training steps: sample grids, validation (with best/ and early stopping), mode
coverage, the curves plot and the end-of-run likelihood. Each is a small ``Monitor`` that the loop calls
at two named points, ``on_step(state)`` after a step where ``due(state)`` holds (every ``every_steps``
steps) and ``on_end(state)`` once when training ends; they read and write the run's ``RunState`` and
nothing else. Images are drawn through ``genzoo.sampling`` and likelihoods scored through
``likelihood.score_split``, the functions every other part of genzoo uses.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from .. import checkpoint as ckpt
from ..data import load_split
from ..errors import GenzooError
from ..images import save_grid
from ..likelihood import score_split
from ..plots import plot_curves
from ..sampling import balanced_labels, sample, sample_batches
from .distributed import any_rank
from .validation import ValidationSet, validation_metric

if TYPE_CHECKING:
    from .state import RunState

SAMPLE_SEED_OFFSET = 12345     # grids and coverage draw from seed = the run's seed + this


class Monitor:
    """Called by the loop: ``on_step`` after each step where ``due`` holds, ``on_end`` once at the end."""
    every_steps: int = 0

    def due(self, s: RunState) -> bool:
        return self.every_steps > 0 and s.step % self.every_steps == 0

    def on_step(self, s: RunState) -> None:
        pass

    def on_end(self, s: RunState) -> None:
        pass


@contextlib.contextmanager
def eval_mode(net: torch.nn.Module):
    """``net`` in eval mode for the block, back in its former mode after it."""
    was_training = net.training
    net.eval()
    yield net
    net.train(was_training)


def make_monitors(s: RunState) -> list[Monitor]:
    """The run's monitors in the order they run at each step and at the end. Only the main process draws
    grids and checks coverage; every process validates, so that all stop early together."""
    cfg, out = s.cfg, []
    if s.val_set is not None:
        out.append(Validation(s.val_set, cfg.val_every_steps, cfg.early_stop_patience))
    if s.dd.main:
        out.append(SampleGrids(cfg.sample_every_steps, cfg.sample_grid_n, cfg.seed + SAMPLE_SEED_OFFSET))
        if cfg.coverage_every_steps > 0:
            out.append(Coverage(CoverageCheck(s.data_name, s.model, s.dd.device), cfg.coverage_every_steps,
                                cfg.seed + SAMPLE_SEED_OFFSET))
        out.append(Curves())
        if cfg.final_eval and s.model.capabilities.likelihood.kind != "none":
            out.append(FinalEval())
    return out


class SampleGrids(Monitor):
    """A seeded grid of the sampling weights' images into samples/step_N.png and samples.png (conditional
    models: one row per class); the last one at the end of the run."""

    def __init__(self, every_steps: int, n: int, seed: int):
        self.every_steps, self.n, self.seed = every_steps, n, seed

    def due(self, s: RunState) -> bool:
        return super().due(s) and not s.is_last         # the end's grid comes from on_end

    def on_step(self, s: RunState) -> None:
        self.draw(s)

    def on_end(self, s: RunState) -> None:
        s.summary["samples"] = str(self.draw(s))

    def draw(self, s: RunState):
        model, nrow, labels = s.sampling_net, None, None
        if model.capabilities.conditional:
            nrow = max(1, self.n // model.config.num_classes)
            labels = torch.arange(model.config.num_classes).repeat_interleave(nrow)     # (classes * nrow,)
        n = len(labels) if labels is not None else self.n
        with eval_mode(model):
            x = sample(model, n, self.seed, batch_size=max(1, n), labels=labels)       # one batch, as ever
        path = save_grid(x, s.run_dir / "samples" / f"step_{s.step:07d}.png", nrow=nrow)
        save_grid(x, s.run_dir / "samples.png", nrow=nrow)
        return path


class Validation(Monitor):
    """The validation metric of the sampling weights on the held-out split: logged, the best kept in best/,
    and ``early_stop`` set after ``patience`` validations in a row without a new best (on every rank)."""

    def __init__(self, val_set: ValidationSet, every_steps: int, patience: int):
        self.val, self.every_steps, self.patience = val_set, every_steps, patience

    def on_step(self, s: RunState) -> None:
        stop_early = False
        if s.dd.main:
            best, key = s.best, self.val.key
            with eval_mode(s.sampling_net) as net:
                value = float(validation_metric(net, self.val))
            best.evaluations += 1
            if math.isfinite(value) and (best.value is None or value < best.value):
                best.value, best.step, best.bad_evals = value, s.step, 0
                ckpt.save_best(s.run_dir, s.model, s.ema, s.step, {"step": s.step, "metric": key, "value": value,
                                                                    "description": self.val.description})
            else:
                best.bad_evals += 1
            s.log.write({"step": s.step, key: value, "val/best": best.value}, scalars=(key,))
            stop_early = 0 < self.patience <= best.bad_evals
            if stop_early:
                tqdm.write(f"early stop at step {s.step}: {key} has not improved on {best.value:.4g} "
                           f"(step {best.step}) in {best.bad_evals} validations", file=sys.stderr)
        s.early_stop = any_rank(s.dd, stop_early)[0]     # every rank leaves the loop together

    def on_end(self, s: RunState) -> None:
        if s.dd.main:
            b = s.best
            s.summary["validation"] = {
                "metric": self.val.key, "description": self.val.description, "val_images": len(self.val.images),
                "evaluations": b.evaluations, "best_step": b.step, "best_value": b.value,
                "best_dir": str(s.run_dir / ckpt.BEST) if b.step is not None else None}


class Coverage(Monitor):
    """Mode coverage every ``every_steps`` and at the last step: coverage.jsonl, TensorBoard, a warning when
    the frozen classifier finds fewer classes than the data set has."""

    def __init__(self, check: CoverageCheck, every_steps: int, seed: int):
        self.check, self.every_steps, self.seed = check, every_steps, seed

    def due(self, s: RunState) -> bool:
        return s.step % self.every_steps == 0 or s.is_last

    def on_step(self, s: RunState) -> None:
        with eval_mode(s.sampling_net) as net:
            report = self.check(net, seed=self.seed)
        if report is None:
            return
        with open(s.run_dir / "coverage.jsonl", "a") as f:
            f.write(json.dumps({"step": s.step, **report}) + "\n")
        s.log.scalar("coverage/classes", report["classes_present"], s.step)
        s.log.scalar("coverage/entropy", report["normalised_entropy"], s.step)
        if "label_accuracy" in report:
            s.log.scalar("coverage/label_accuracy", report["label_accuracy"], s.step)
        if report["classes_present"] < report["num_classes"]:
            tqdm.write(f"warning: step {s.step}: mode coverage: the frozen {s.data_name} classifier finds only "
                       f"{report['classes_present']} of {report['num_classes']} classes in {report['n']} samples "
                       f"(class shares {report['histogram']}); the generator may be collapsing.", file=sys.stderr)


class Curves(Monitor):
    """curves.png from metrics.jsonl at the end of the run."""

    def on_end(self, s: RunState) -> None:
        s.log.flush()
        curves = plot_curves(s.run_dir / "metrics.jsonl", s.run_dir / "curves.png")
        s.summary["curves"] = str(curves) if curves else None


class FinalEval(Monitor):
    """The test-set likelihood of the sampling weights at the end of a run that was not interrupted."""

    def on_end(self, s: RunState) -> None:
        if s.summary["status"] != "interrupted":
            s.summary.update(final_eval(s.sampling_net, s.data_name, s.progress))


class CoverageCheck:
    """Mode coverage: the class histogram of a generated batch under the data set's frozen classifier.

    A class counts as present when it gets at least a quarter of its fair share (n / 4C) of the
    samples; fewer present classes than the data set has means the generator is dropping modes.
    Inactive (returns None) where genzoo ships no classifier for the data set or the shapes differ.
    """

    def __init__(self, data_name: str, model, device, n: int = 1000):
        from ..classifier import load_frozen
        self.n, self.device = n, device
        try:
            with torch.random.fork_rng(devices=[]):    # building the network draws init weights: keep the
                self.classifier = load_frozen(data_name)[0].to(device)   # training RNG stream untouched
        except GenzooError:
            self.classifier = None
            return
        c = self.classifier.config
        if (c.channels, c.image_size) != (model.config.channels, model.config.image_size):
            self.classifier = None

    @torch.no_grad()
    def __call__(self, model, seed: int) -> dict | None:
        if self.classifier is None:
            return None
        k = self.classifier.config.num_classes
        conditional = model.capabilities.conditional
        preds, asked = [], []

        def classify(x, lab):     # x (m, C, H, W) in [0, 1] on the CPU; lab (m,) or None
            preds.append(self.classifier(x.to(self.device).float()).argmax(1).cpu())
            if lab is not None:
                asked.append(lab.cpu())
        # conditional: balanced labels; the histogram then also shows whether they are obeyed
        labels = balanced_labels(self.n, model.config.num_classes) if conditional else None
        sample_batches(model, self.n, seed, 250, labels, progress=False, on_batch=classify)
        preds = torch.cat(preds)
        share = torch.bincount(preds, minlength=k).double() / len(preds)
        entropy = -(share * share.clamp_min(1e-12).log()).sum() / math.log(k)
        out = {"n": self.n, "num_classes": k, "classes_present": int((share >= 0.25 / k).sum()),
               "normalised_entropy": round(entropy.item(), 4), "histogram": [round(v, 3) for v in share.tolist()]}
        if asked:   # how often the classifier agrees with the label the sample was drawn for
            out["label_accuracy"] = round((preds == torch.cat(asked)).double().mean().item(), 4)
        return out


def final_eval(model, data_name: str, progress: bool) -> dict:
    """Test-set likelihood (bound) of the trained model, in nats per image or bits/dim (docs/metrics.md): the ELBO
    of latent-variable models, the exact log-likelihood of models that declare one. A bound or an estimate that
    costs many network passes an image (diffusion's bound, flow matching's ODE likelihood) is left to genzoo eval."""
    test = load_split(data_name, "test")
    out = {"test_split": f"{data_name} test ({len(test.images)} images)"}
    likelihood = model.capabilities.likelihood
    estimator = "elbo" if likelihood.elbo else "exact" if likelihood.kind == "exact" else None
    if estimator is not None:   # -ELBO, an upper bound on the NLL, or the exact NLL (docs/metrics.md)
        labels = test.labels if model.capabilities.conditional else None
        with eval_mode(model):
            scores = score_split(model, test.images, labels, estimator=estimator, progress=progress)
        out.update({k: round(v, 3 if k.endswith("nats") else 4) for k, v in scores.items()})
    return out
