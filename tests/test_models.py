"""Contract tests over every registered model at tiny size (docs/python-api.md, "The model contract")."""
import dataclasses

import pytest
import torch

from genzoo import checkpoint as ckpt
from genzoo import load
from genzoo.models import MODELS, build_model
from helpers import tiny_config

NAMES = sorted(MODELS)
pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: see conftest.py


def _batch(n=6, c=1, s=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(n, c, s, s, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def _colour(name: str, channels: int):
    """tiny_config on (channels, 8, 8) data; 3 channels are 8-bit colour, never binarized (as genzoo train sets it)."""
    cfg = tiny_config(name, channels)
    if channels == 3 and "binarize" in {f.name for f in dataclasses.fields(cfg)}:
        cfg = dataclasses.replace(cfg, binarize=False)
    return cfg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_loss_is_finite_and_every_phase_backpropagates(name, channels):
    torch.manual_seed(0)
    model = build_model(name, _colour(name, channels))
    batch = _batch(c=channels)
    if channels == 3:     # 8-bit values k / 255
        batch["x"] = (batch["x"] * 255).round() / 255
    for phase in model.phases:
        model.zero_grad(set_to_none=True)
        out = model(batch, phase=phase)
        assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
        out["loss"].backward()
        grads = [p.grad for p in model.phase_parameters(phase)]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), phase
        assert any(g.abs().sum() > 0 for g in grads), phase


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels,size", [(1, 8), (1, 28), (3, 32)])
def test_sample_shape_and_range(name, channels, size):
    torch.manual_seed(0)
    model = build_model(name, tiny_config(name, channels, size)).eval()
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, channels, size, size)
    assert x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_samples_and_other_seed_differs(name):
    torch.manual_seed(0)
    model = build_model(name, tiny_config(name)).eval()
    a = model.sample(4, generator=torch.Generator().manual_seed(3))
    b = model.sample(4, generator=torch.Generator().manual_seed(3))
    c = model.sample(4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_gives_the_same_samples(name, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(name)
    model = build_model(name, cfg)
    # move the weights and batch-norm statistics away from their initial values
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for phase in model.phases:
        opt.zero_grad()
        model(_batch(), phase=phase)["loss"].backward()
        opt.step()
    model.eval()
    import dataclasses
    ckpt.write_config(tmp_path, {"model_name": name, "data": "digits", "model": dataclasses.asdict(cfg),
                                 "train": {}})
    ckpt.save_weights(tmp_path, model, None, step=1)
    loaded = load(tmp_path)
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = loaded.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not loaded.training
