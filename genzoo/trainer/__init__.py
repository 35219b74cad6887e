"""Training: the one training loop behind ``genzoo train`` and ``genzoo.train(...)``, and the run
planning both share.

  runs.py         ``train_model`` (``genzoo.train``): names, configs and the run folder resolved as
                  ``genzoo train`` resolves them (``resolve_config``), then the loop

  loop.py         ``train(run_dir, model_name, data_name, model_cfg, train_cfg)``: the loop, in labelled
                  paragraphs, and the run's one teardown
  state.py        ``RunState``, everything a run changes, built for a new run or from a checkpoint
  monitors.py     what runs every N steps and at the end: grids, validation, coverage, curves, likelihood
  validation.py   the held-out split and its metric
  steps.py        one optimiser step, the EMA, the seeded data order, the step-rate probe of fit_steps
  distributed.py  torchrun: the process group and the decisions every rank takes together
"""
from __future__ import annotations

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

