"""Validation during training: the seeded held-out split of the train images, the metric chosen from what
the model declares (its ELBO, its exact NLL, its own loss, or a fast FID), and its value on the split."""
from __future__ import annotations

import dataclasses

import torch

from ..config import TrainConfig
from ..errors import GenzooError
from ..likelihood import is_binarized, score_split
from ..sampling import balanced_labels, sample_batches

VAL_SPLIT_SEED = 0       # the validation split is the same for every run seed, so runs compare on it
VAL_METRIC_SEED = 0      # binarization / dequantization / latent noise / sampling of every validation
VAL_MAX_IMAGES = 5000    # the default split: min(5000, 10% of the train split)


def split_validation(n: int, val_size: int = 0, seed: int = VAL_SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), both sorted int64, of a seeded split of n training images;
    ``val_size`` 0 = min(5000, n // 10) (5000 of MNIST's 60,000, 149 of digits' 1497)."""
    size = val_size or min(VAL_MAX_IMAGES, n // 10)
    if not 1 <= size < n:
        raise GenzooError(f"val_size {size} leaves no images to train on or validate with ({n} train images).")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[size:].sort().values, perm[:size].sort().values


@dataclasses.dataclass
class ValidationSet:
    """The held-out images of a run and how they are scored; ``key`` names the metric in metrics.jsonl."""
    images: torch.Tensor            # uint8 (n, C, H, W), on the CPU
    labels: torch.Tensor            # int64 (n,)
    kind: str                       # "elbo", "exact", "loss" (the model's own training loss) or "fid"
    key: str                        # e.g. "val/elbo_nats", "val/nll_nats", "val/bpd", "val/loss", "val/fid"
    description: str                # one line for the log and summary.json
    fid_samples: int = 0            # generated images of the FID
    classifier: torch.nn.Module | None = None     # frozen classifier (fid)
    real_features: torch.Tensor | None = None     # (n, D) classifier features of the images (fid)


def make_validation(model, data_name: str, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                    device) -> ValidationSet:
    """Choose the validation metric from what the model can do: its ELBO, its exact NLL, its own training loss
    (a likelihood model whose bound or estimate is expensive: diffusion's bound, flow matching's ODE likelihood),
    or a fast FID in the frozen classifier's feature space (models without a likelihood)."""
    n = len(images)
    common = {"images": images.cpu(), "labels": labels.cpu()}
    unit = "nats" if is_binarized(model) else "bpd"
    in_units = "nats per image" if unit == "nats" else "bits/dim"
    likelihood = model.capabilities.likelihood
    if likelihood.elbo:
        return ValidationSet(**common, kind="elbo", key=f"val/elbo_{unit}",
                             description=f"negative ELBO in {in_units} on {n} held-out train images "
                                         f"(seed {VAL_METRIC_SEED})")
    if likelihood.kind == "exact":
        return ValidationSet(**common, kind="exact", key="val/nll_nats" if unit == "nats" else "val/bpd",
                             description=f"exact NLL in {in_units} on {n} held-out train images")
    if likelihood.kind != "none" and len(model.phases) == 1:
        return ValidationSet(**common, kind="loss", key="val/loss",
                             description=f"the model's own training loss (not a likelihood bound) on {n} held-out "
                                         f"train images, noise seed {VAL_METRIC_SEED}")
    from ..classifier import load_frozen, predict
    try:
        with torch.random.fork_rng(devices=[]):      # building the network draws init weights
            classifier = load_frozen(data_name)[0]
    except GenzooError as e:
        raise GenzooError(f"val_every_steps needs a validation metric: {type(model).__name__} has no likelihood, "
                          f"and the FID it would use needs a frozen classifier: {e}") from None
    c = classifier.config
    if (c.channels, c.image_size) != (model.config.channels, model.config.image_size):
        raise GenzooError(f"val_every_steps: the frozen {data_name} classifier takes {c.channels}x{c.image_size}"
                          f"x{c.image_size} images, the model makes {model.config.channels}x"
                          f"{model.config.image_size}x{model.config.image_size}.")
    classifier = classifier.to(device)
    return ValidationSet(**common, kind="fid", key="val/fid", fid_samples=cfg.val_fid_samples,
                         classifier=classifier, real_features=predict(classifier, images.to(device))[0].cpu(),
                         description=f"FID of {cfg.val_fid_samples} samples (seed {VAL_METRIC_SEED}) vs {n} "
                                     f"held-out train images, frozen-classifier features")


@torch.no_grad()
def validation_metric(model, val: ValidationSet) -> float:
    """The validation metric of ``model`` (in eval mode) on ``val``; lower is better. Draws its noise from
    fixed seeds, inside a forked RNG, so it never changes the training run's random stream."""
    dev = model.device
    conditional = model.capabilities.conditional
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(VAL_METRIC_SEED)
        if val.kind in ("elbo", "exact"):     # score_split's one value: nats per image or bits/dim
            scores = score_split(model, val.images, val.labels if conditional else None, estimator=val.kind,
                                 seed=VAL_METRIC_SEED, progress=False)
            return next(iter(scores.values()))
        if val.kind == "loss":
            total = 0.0
            for start in range(0, len(val.images), 500):
                x = val.images[start:start + 500].to(dev).float().div_(255)      # (b, C, H, W) in [0, 1]
                y = val.labels[start:start + 500].to(dev)
                total += model.loss({"x": x, "y": y}, model.phases[0])["loss"].double().item() * len(x)
            return total / len(val.images)
        from ..classifier import predict
        from ..metrics import fid
        feats = []
        labels = balanced_labels(val.fid_samples, model.config.num_classes) if conditional else None
        sample_batches(model, val.fid_samples, VAL_METRIC_SEED, 500, labels, progress=False,
                       on_batch=lambda x, _: feats.append(predict(val.classifier, x.to(dev))[0].cpu()))
        return fid(torch.cat(feats), val.real_features)
