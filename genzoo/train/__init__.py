"""Training: ``genzoo.train("vae", data="digits", out="runs/x", steps=300)`` trains a model into a run
folder and returns its path (``genzoo.runs.train_model``, docs/python-api.md); this package is that
call and the one training loop behind it and ``genzoo train``.

  loop.py         ``train(run_dir, model_name, data_name, model_cfg, train_cfg)``: the loop, in labelled
                  paragraphs, and the run's one teardown
  state.py        ``RunState``, everything a run changes, built for a new run or from a checkpoint
  monitors.py     what runs every N steps and at the end: grids, validation, coverage, curves, likelihood
  validation.py   the held-out split and its metric
  steps.py        one optimiser step, the EMA, the seeded data order, the step-rate probe of fit_steps
  distributed.py  torchrun: the process group and the decisions every rank takes together

The package itself is callable so that ``genzoo.train(...)`` (the function users call) and
``from genzoo.train import train`` (the loop) both hold: a module named ``train`` inside the
package ``genzoo`` would otherwise replace a function of that name as soon as it is imported.
"""
from __future__ import annotations

import sys
import types

from ..config import TrainConfig
from .distributed import Dist, setup_distributed
from .loop import train
from .monitors import Coverage, CoverageCheck, Curves, FinalEval, Monitor, SampleGrids, Validation, final_eval
from .state import Best, RunState
from .steps import PROBE_SECONDS, BatchSampler, ema_update, make_autocast, optimiser_step, probe_steps_per_s
from .validation import ValidationSet, make_validation, split_validation, validation_metric

__all__ = ["train", "TrainConfig", "RunState", "Best", "Monitor", "SampleGrids", "Validation", "Coverage", "Curves",
           "FinalEval", "CoverageCheck", "final_eval", "BatchSampler", "ema_update", "optimiser_step",
           "make_autocast", "probe_steps_per_s", "PROBE_SECONDS", "Dist", "setup_distributed", "ValidationSet",
           "make_validation", "split_validation", "validation_metric"]


class _CallableModule(types.ModuleType):
    def __call__(self, model: str | None = None, data=None, out=None, **kwargs):
        """``genzoo.train(model, data, out=None, ...)``: see ``genzoo.runs.train_model``."""
        from ..runs import train_model
        return train_model(model, data, out, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
