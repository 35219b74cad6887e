"""The model registry: a name maps to a class and a preset, nothing else.

A preset is a dict of the model config's fields; its optional "train" entry holds the training
defaults the preset's paper uses (learning rates, Adam betas, steps), on top of the class's
``train_defaults``. The user's --set and YAML still win over both.
"""
from __future__ import annotations

import dataclasses

from ..errors import GenzooError
from .autoregressive import Autoregressive
from .base import GenerativeModel
from .diffusion import Diffusion
from .flow import Flow
from .flow_matching import FlowMatching
from .gan import GAN
from .vae import VAE

_TTUR = {"lr": 1e-4, "adam_betas": (0.0, 0.9)}

# name -> (class, preset, one-line description)
MODELS: dict[str, tuple[type[GenerativeModel], dict, str]] = {
    "vae-mlp": (VAE, {"arch": "mlp", "latent_dim": 50},
                "the original MLP VAE (Kingma & Welling 2014): two tanh layers of 500 units each way, 50-d latent"),
    "vae": (VAE, {}, "convolutional VAE (Kingma & Welling 2014); Bernoulli decoder on binarized data, "
                     "discretised logistic on 8-bit data; IWAE log-likelihood"),
    "beta-vae": (VAE, {"beta": 4.0, "latent_dim": 10},
                 "beta-VAE (Higgins et al. 2017): KL weighted by beta = 4, 10-d latent for traversals"),
    "cvae": (VAE, {"conditional": True}, "conditional VAE (Sohn et al. 2015): q(z|x, y) and p(x|z, y)"),
    "iwae": (VAE, {"iwae_k": 5}, "IWAE (Burda et al. 2016): the conv VAE trained on the k = 5 importance-weighted bound"),
    # vaegan's beta and gamma: 1500-step MNIST probes (FID at n = 2000) gave 19.8 at beta 1, gamma 1; 13.9 at
    # gamma 0.01; 8.1 at gamma 0.01, beta 16 (KL 20 nats, 95% of reconstructions keep their class); beta 64
    # reached 6.2 but its KL fell to 3 nats and only 66% of reconstructions kept their class (a GAN, not a VAE)
    "vaegan": (VAE, {"adversarial": True, "beta": 16.0, "gamma": 0.01,
                     "train": {"lr": 3e-4, "adam_betas": (0.5, 0.999), "batch_size": 64}},
               "VAE-GAN (Larsen et al. 2016): reconstruction in a discriminator's feature space, three losses; "
               "KL weighted by beta = 16, feature loss by gamma = 0.01 in the decoder"),
    # autoregressive sizes and steps: measured at 28x28, bf16, batch 64 (transformer 32) as 1-thread CPU time, each
    # preset's training plus its coverage sampling fits about 4000 CPU-seconds, i.e. under an hour on 2 cores
    "pixelcnn": (Autoregressive, {"arch": "pixelcnn", "width": 64, "res_blocks": 8, "train": {"steps": 10000}},
                 "PixelCNN (van den Oord et al. 2016, Pixel Recurrent Neural Networks, sec. 3.5): 7x7 mask-A conv, "
                 "mask-B residual blocks, 1x1 output layers; exact NLL"),
    "gated-pixelcnn": (Autoregressive, {"arch": "gated", "width": 32, "res_blocks": 8, "train": {"steps": 5000}},
                       "Gated PixelCNN (van den Oord et al. 2016, Conditional Image Generation with PixelCNN "
                       "Decoders): vertical and horizontal stacks, tanh x sigmoid gates, no blind spot"),
    "pixelrnn": (Autoregressive, {"arch": "rowlstm", "width": 32, "res_blocks": 2, "train": {"steps": 8000}},
                 "PixelRNN Row LSTM (van den Oord et al. 2016, Pixel Recurrent Neural Networks, sec. 3.1): "
                 "masked input-to-state and 1D state-to-state convolutions, one row per step"),
    "pixel-transformer": (Autoregressive, {"arch": "transformer", "width": 64, "res_blocks": 3, "heads": 2,
                                           "train": {"steps": 4000, "batch_size": 32}},
                          "a small causal transformer over the pixels (pre-LN, learned positions; after Parmar et "
                          "al. 2018, Image Transformer), KV-cached sampling"),
    "gan": (GAN, {"arch": "mlp", "train": {"steps": 15000}},
            "the original MLP GAN (Goodfellow et al. 2014): ReLU generator, maxout discriminator"),
    "dcgan": (GAN, {}, "DCGAN (Radford et al. 2016) with the non-saturating GAN loss"),
    "wgan-gp": (GAN, {"loss": "wgan-gp", "n_critic": 5, "d_norm": "layer", "train": {**_TTUR, "steps": 4000}},
                "WGAN-GP (Gulrajani et al. 2017): critic with per-sample gradient penalty, n_critic 5"),
    "cgan": (GAN, {"conditioning": "projection", "loss": "hinge", "spectral_norm": "d", "d_norm": "none",
                   "train": {"adam_betas": (0.0, 0.9)}},
             "class-conditional GAN with a projection discriminator (Miyato & Koyama 2018), hinge loss"),
    # spectral norm in D in place of batch norm: with batch norm the AC loss on fakes let G and D agree on
    # label codes that are not digits (BENCHMARKS.md records the measurement)
    "acgan": (GAN, {"conditioning": "acgan", "spectral_norm": "d", "d_norm": "none",
                    "train": {"adam_betas": (0.0, 0.9)}},
              "auxiliary-classifier GAN (Odena et al. 2017), spectrally normalised discriminator"),
    "infogan": (GAN, {"latent_dim": 62, "info_cat": 10, "info_cont": 2},
                "InfoGAN (Chen et al. 2016): a 10-way and two continuous codes with the mutual-information term"),
    "sagan": (GAN, {"attention": True, "spectral_norm": "both", "loss": "hinge", "d_norm": "none",
                    "d_lr_scale": 4.0, "train": _TTUR},
              "SAGAN (Zhang et al. 2019): self-attention, spectral norm in G and D, hinge loss, lr 1e-4 / 4e-4"),
    "realnvp": (Flow, {"masks": "realnvp", "permutation": "none", "preprocess": "logit", "scale": "tanh",
                       "split_prior": False, "steps_per_level": 3, "width": 32, "res_blocks": 1},
                "Real NVP (Dinh et al. 2017): multi-scale affine couplings with checkerboard and channel masks, "
                "logit preprocessing; exact bits/dim"),
    "glow": (Flow, {}, "Glow (Kingma & Dhariwal 2018): actnorm, LU-decomposed invertible 1x1 convolutions, affine "
                       "couplings, learned split priors; exact bits/dim (--set conditional=true: class prior)"),
    "ddpm": (Diffusion, {}, "DDPM (Ho et al. 2020): eps-prediction U-Net, T = 1000, linear or cosine (Nichol & "
                            "Dhariwal 2021) schedule; DDPM and DDIM (Song et al. 2021) samplers; variational bound"),
    "ddpm-cfg": (Diffusion, {"conditional": True},
                 "class-conditional DDPM with classifier-free guidance (Ho & Salimans 2022): null label p = 0.1, w = 1"),
    "flow-matching": (FlowMatching, {}, "flow matching (Lipman et al. 2023) on the straight path of rectified flow (Liu "
                                        "et al. 2023): velocity U-Net, Euler and Heun ODE samplers; ODE likelihood"),
    "flow-matching-cfg": (FlowMatching, {"conditional": True},
                          "class-conditional flow matching with classifier-free guidance: null label p = 0.1, w = 1"),
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
    return dataclasses.replace(cls.Config(), **{k: v for k, v in preset.items() if k != "train"})


def default_train_overrides(name: str) -> dict:
    """Training-config defaults for this model: the class's, then the preset's "train" entry."""
    cls, preset, _ = model_entry(name)
    return {**cls.train_defaults, **preset.get("train", {})}


def build_model(name: str, config) -> GenerativeModel:
    cls, _, _ = model_entry(name)
    return cls(config)
