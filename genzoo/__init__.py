"""genzoo: deep generative models of images behind one API, one trainer, one checkpoint format.

    run = genzoo.train("vae", data="digits", out="runs/vae-digits", steps=300)   # -> the run folder
    model = genzoo.load(run)                                                     # ready to sample
"""
__version__ = "0.1.0"


def load(run_dir, ema: bool = True, device="cpu"):
    """Load a trained model from a run folder (EMA weights by default), ready to ``sample``."""
    from .checkpoint import load as _load
    return _load(run_dir, ema=ema, device=device)


def __getattr__(name: str):
    # genzoo.train, imported on first use: the training package, itself callable as
    # genzoo.train(model, data, out=None, **config_keys) -> run folder (genzoo/runs.py, train_model)
    if name == "train":
        import importlib
        return importlib.import_module(".train", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
