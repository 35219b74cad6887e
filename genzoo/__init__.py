"""genzoo: deep generative models of images behind one API, one trainer, one checkpoint format."""
__version__ = "0.1.0"


def load(run_dir, ema: bool = True, device="cpu"):
    """Load a trained model from a run folder (EMA weights by default), ready to ``sample``."""
    from .checkpoint import load as _load
    return _load(run_dir, ema=ema, device=device)
