"""genzoo: deep generative models of images behind one API, one trainer, one checkpoint format.

    run = genzoo.train("vae", data="digits", out="runs/vae-digits", steps=300)   # -> the run folder
    model = genzoo.load(run)                                                     # ready to sample
"""
__version__ = "0.1.0"


def load(run_dir, ema: bool = True, device="cpu"):
    """Load a trained model from a run folder (EMA weights by default), ready to ``sample``."""
    from .checkpoint import load as _load
    return _load(run_dir, ema=ema, device=device)


def train(model: str | None = None, data=None, out=None, **kwargs):
    """Train ``model`` on ``data`` into the run folder ``out`` and return that folder, resolving configs exactly
    as ``genzoo train`` does (genzoo.trainer.runs.train_model, docs/python-api.md)."""
    from .trainer.runs import train_model
    return train_model(model, data, out, **kwargs)
