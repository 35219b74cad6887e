"""The model registry: a name maps to a class and a preset (config overrides), nothing else."""
from __future__ import annotations

import dataclasses

from ..errors import GenzooError
from .base import GenerativeModel
from .gan import GAN
from .vae import VAE

# name -> (class, preset of config overrides, one-line description)
MODELS: dict[str, tuple[type[GenerativeModel], dict, str]] = {
    "vae": (VAE, {}, "convolutional VAE (Kingma & Welling 2014), Bernoulli decoder, IWAE log-likelihood"),
    "dcgan": (GAN, {}, "DCGAN (Radford et al. 2016) with the non-saturating GAN loss"),
}


def register_model(name: str, cls: type[GenerativeModel], preset: dict | None = None,
                   description: str = "") -> None:
    """Add a model to the registry (for plugins and tests); ``cls`` meets the GenerativeModel contract."""
    MODELS[name] = (cls, dict(preset or {}), description or (cls.__doc__ or "").strip().splitlines()[0])


def model_entry(name: str) -> tuple[type[GenerativeModel], dict, str]:
    if name not in MODELS:
        raise GenzooError(f"Unknown model {name!r}. Registered models: {', '.join(sorted(MODELS))}. "
                          "`genzoo models` lists them with a description.")
    return MODELS[name]


def default_config(name: str):
    """The model's config dataclass with its preset applied (data-dependent fields not yet set)."""
    cls, preset, _ = model_entry(name)
    return dataclasses.replace(cls.Config(), **preset)


def build_model(name: str, config) -> GenerativeModel:
    cls, _, _ = model_entry(name)
    return cls(config)
