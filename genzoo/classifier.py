"""genzoo's fixed classifier recipe: one small CNN and one training schedule.

Its frozen, shipped copies give the feature space of FID/KID/precision-recall (the 128-d
penultimate layer, before its ReLU) and the softmax of the classifier score (docs/metrics.md); the same
recipe, trained on generated images, gives the classification accuracy score (CAS).
Network: two 3x3 conv blocks per resolution with batch norm (28 -> 14 -> 7), a 128-d layer,
dropout, a linear head. Training: Adam with cosine decay, random +-2 pixel shifts.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .errors import GenzooError
from .images import shift_images

ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass
class ClassifierConfig:
    channels: int = 1
    image_size: int = 28        # divisible by 4
    num_classes: int = 10
    width: int = 32             # channels at full resolution, doubled at half
    feature_dim: int = 128      # the penultimate layer: the metric feature space


@dataclass
class RecipeConfig:
    steps: int = 4000           # at batch_size; ~8.5 epochs of a 60k set
    batch_size: int = 128
    lr: float = 2e-3            # Adam, cosine-decayed to 0
    max_shift_px: int = 2       # random translation augmentation
    seed: int = 0


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Classifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w, s = config.width, config.image_size // 4
        self.body = nn.Sequential(
            _block(config.channels, w), _block(w, w), nn.MaxPool2d(2),            # (B, w, H/2, W/2)
            _block(w, 2 * w), _block(2 * w, 2 * w), nn.MaxPool2d(2),              # (B, 2w, H/4, W/4)
            nn.Flatten(), nn.Linear(2 * w * s * s, config.feature_dim),           # (B, feature_dim)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(config.feature_dim, config.num_classes))
        # metric features are body(x) / feature_scale, with the scale set once after training to the RMS
        # feature value on the train split, so x.y / D is of order 1 (the range KID's cubic kernel expects)
        self.register_buffer("feature_scale", torch.ones(()))

    @property
    def num_features(self) -> int:
        return self.config.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (B, feature_dim) of images in [0, 1], divided by feature_scale."""
        return self.body(x * 2 - 1) / self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of images in [0, 1]."""
        return self.head(self.body(x * 2 - 1))


def random_shift(x: torch.Tensor, max_px: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own integer offset in [-max_px, max_px], zero fill: (B, C, H, W)."""
    if max_px == 0:
        return x
    dy, dx = torch.randint(0, 2 * max_px + 1, (2, len(x)), generator=generator)
    return shift_images(x, torch.stack([max_px - dy, max_px - dx], 1), fill=0.0)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     recipe: RecipeConfig = RecipeConfig(), progress: bool = True,
                     desc: str = "classifier") -> Classifier:
    """Train the fixed recipe on uint8 images (N, C, H, W) and int64 labels; returns it in eval mode."""
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    n, c, h, _ = images.shape
    model = Classifier(ClassifierConfig(channels=c, image_size=h, num_classes=num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / recipe.steps)))
    model.train()
    bar = tqdm(range(recipe.steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        idx = torch.randint(0, n, (recipe.batch_size,), generator=g)
        x = random_shift(images[idx].float() / 255, recipe.max_shift_px, g)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    set_feature_scale(model, images[:10_000])
    return model


@torch.no_grad()
def set_feature_scale(model: Classifier, images: torch.Tensor) -> None:
    """Set feature_scale to the RMS of the unscaled features of ``images`` (uint8)."""
    model.feature_scale.fill_(1.0)
    feats, _ = predict(model, images)
    model.feature_scale.fill_(feats.square().mean().sqrt().item())


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), probabilities (N, C)) of images: uint8 or float in [0, 1]."""
    feats, probs = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        h = model.body(x * 2 - 1)                     # unscaled: what the head was trained on
        feats.append(h / model.feature_scale)
        probs.append(torch.softmax(model.head(h), 1))
    return torch.cat(feats), torch.cat(probs)


def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (predict(model, images)[1].argmax(1) == labels).float().mean().item()


def asset_paths(dataset: str) -> tuple[Path, Path]:
    return ASSETS / f"classifier-{dataset}.safetensors", ASSETS / f"classifier-{dataset}.json"


def save_frozen(model: Classifier, dataset: str, record: dict) -> None:
    from safetensors.torch import save_file
    weights, meta = asset_paths(dataset)
    ASSETS.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    meta.write_text(json.dumps({"config": asdict(model.config), **record}, indent=2) + "\n")


def load_frozen(dataset: str) -> tuple[Classifier, dict]:
    """The shipped classifier of a data set and its record (test accuracy, recipe, command)."""
    from safetensors.torch import load_file
    weights, meta = asset_paths(dataset)
    if not weights.exists():
        shipped = sorted(p.stem.removeprefix("classifier-") for p in ASSETS.glob("classifier-*.safetensors"))
        raise GenzooError(f"genzoo ships no feature classifier for {dataset!r} (it has: "
                          f"{', '.join(shipped) or 'none'}); feature metrics need one.")
    record = json.loads(meta.read_text())
    model = Classifier(ClassifierConfig(**record["config"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval().requires_grad_(False), record
