"""InceptionV3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision") as the
feature network of Inception FID (Heusel et al. 2017): the 2048-d global average pool ("pool3") of
images resized to 299 x 299.

genzoo ships no InceptionV3 weights and never downloads them. The user points at one of two public
files, and this network has their parameter names and shapes exactly; which one a file is follows from
its fc layer (1008 rows or 1000):

- pytorch-fid's pt_inception-2015-12-05-6726825d.pth: the TensorFlow graph of 2015-12-05 that TTUR's
  fid.py uses, i.e. the network behind the FIDs papers report. Two things differ from torchvision's
  blocks because that graph does them so: the 3x3 average pools of the A, C and E blocks leave the
  zero padding out of the mean (count_include_pad=False), and the last E block (Mixed_7c) max-pools in
  its pool branch. fc has 1008 classes (TensorFlow's label map).
- torchvision's inception_v3_google-0cc3c7bd.pth: Google's ImageNet weights in torchvision's Inception3.
  Its average pools count the padding, and it has the auxiliary classifier (AuxLogits.*, unused here).

Input scaling: both were trained on pixels in [-1, 1]. pytorch-fid maps x in [0, 1] to 2x - 1.
torchvision builds these weights with transform_input=True: the network expects ImageNet-normalised
input (x - mean_c) / std_c and undoes it to (x - 0.5) / 0.5 per channel before the first convolution.
From [0, 1] pixels its first layer therefore also sees 2x - 1, and both variants get 2x - 1 here.
Images are resized bilinearly without antialiasing (align_corners=False), as in pytorch-fid, and
grayscale is repeated to 3 channels (docs/metrics.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .errors import GenzooError
from .hub import sha256_file

INPUT_SIZE = 299                 # pixels; the size both weight files were trained at


@dataclass(frozen=True)
class KnownWeights:
    variant: str
    file: str
    url: str


# Keyed by the first 8 hex digits of the file's sha256, which torch.hub puts in the file name and checks.
KNOWN_WEIGHTS = {
    "6726825d": KnownWeights("pytorch-fid", "pt_inception-2015-12-05-6726825d.pth",
                             "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                             "pt_inception-2015-12-05-6726825d.pth"),
    "0cc3c7bd": KnownWeights("torchvision", "inception_v3_google-0cc3c7bd.pth",
                             "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"),
}
NUM_CLASSES = {"pytorch-fid": 1008, "torchvision": 1000}


class ConvBN(nn.Module):
    """Conv (no bias) -> batch norm (eps 1e-3, TensorFlow's) -> ReLU; the conv.* and bn.* keys of both files."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def pool3x3(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The stride-1 3x3 pool of a block's pool branch: "avg" (torchvision: zero padding counted in the
    mean), "avg_tf" (TensorFlow: padding left out of the mean) or "max" (TensorFlow's Mixed_7c)."""
    if kind == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=kind == "avg")


class InceptionA(nn.Module):
    """35x35 block (paper Fig. 5, the 5x5 factored into two 3x3): 224 + pool_features channels."""

    def __init__(self, c_in: int, pool_features: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1 = ConvBN(c_in, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),                                                       # 64
            self.branch5x5_2(self.branch5x5_1(x)),                                   # 64
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),        # 96
            self.branch_pool(pool3x3(x, self.pool)),                                 # pool_features
        ], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (paper Fig. 10): 384 + 96 + c_in channels."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    """17x17 block (paper Fig. 6, 7x7 factored into 1x7 and 7x1 with c7 channels inside): 768 channels."""

    def __init__(self, c_in: int, c7: int, pool: str):
        super().__init__()
        self.pool = pool
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(pool3x3(x, self.pool))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 320 + 192 + c_in channels."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(c_in, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded filter banks (paper Fig. 7): 320 + 768 + 768 + 192 = 2048 channels."""

    def __init__(self, c_in: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x):
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pool3x3(x, self.pool)),
        ], 1)


class InceptionAux(nn.Module):
    """torchvision's auxiliary classifier on Mixed_6e: in the file, never run here."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.conv0 = ConvBN(c_in, 128, 1)
        self.conv1 = ConvBN(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)


class InceptionV3(nn.Module):
    """InceptionV3 up to pool3, in the layout of pytorch-fid's ("pytorch-fid") or torchvision's ("torchvision")
    weight file. ``features(images)`` gives the (N, 2048) features of Inception FID; ``num_features`` follows
    torchmetrics' convention for a custom feature extractor, whose ``forward`` is the feature map."""

    num_features = 2048

    def __init__(self, variant: str = "pytorch-fid"):
        super().__init__()
        if variant not in NUM_CLASSES:
            raise GenzooError(f"Unknown InceptionV3 variant {variant!r}; choose from {', '.join(NUM_CLASSES)}.")
        self.variant = variant
        tf = variant == "pytorch-fid"
        pool = "avg_tf" if tf else "avg"
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)           # (N, 32, 149, 149)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)                    # (N, 32, 147, 147)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)         # (N, 64, 147, 147), max pool -> 73
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)                    # (N, 80, 73, 73)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)                   # (N, 192, 71, 71), max pool -> 35
        self.Mixed_5b = InceptionA(192, 32, pool)                 # (N, 256, 35, 35)
        self.Mixed_5c = InceptionA(256, 64, pool)                 # (N, 288, 35, 35)
        self.Mixed_5d = InceptionA(288, 64, pool)                 # (N, 288, 35, 35)
        self.Mixed_6a = InceptionB(288)                           # (N, 768, 17, 17)
        self.Mixed_6b = InceptionC(768, 128, pool)                # (N, 768, 17, 17)
        self.Mixed_6c = InceptionC(768, 160, pool)
        self.Mixed_6d = InceptionC(768, 160, pool)
        self.Mixed_6e = InceptionC(768, 192, pool)                # (N, 768, 17, 17)
        if not tf:
            self.AuxLogits = InceptionAux(768, NUM_CLASSES[variant])
        self.Mixed_7a = InceptionD(768)                           # (N, 1280, 8, 8)
        self.Mixed_7b = InceptionE(1280, pool)                    # (N, 2048, 8, 8)
        self.Mixed_7c = InceptionE(2048, "max" if tf else pool)   # (N, 2048, 8, 8)
        self.fc = nn.Linear(2048, NUM_CLASSES[variant])           # ImageNet logits: in the file, unused here

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2048) pool3 features of input already at the network's scale: (N, 3, H, W) in [-1, 1]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))                                     # (N, 2048)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """pool3 features (N, 2048) of images (N, C, H, W), float in [0, 1] or uint8; C = 1 (repeated to RGB)
        or 3, any H and W (resized to 299 x 299, bilinear)."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise GenzooError(f"InceptionV3 takes images (N, C, H, W) with C = 1 or 3; got shape "
                              f"{tuple(images.shape)}.")
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        x = x.to(self.fc.weight.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.pool3(2 * x - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


def inception_features(net: InceptionV3, images: torch.Tensor, batch_size: int = 50, progress: bool = False,
                       desc: str = "Inception features") -> torch.Tensor:
    """Features (N, 2048) on the CPU of images (N, C, H, W), uint8 or float in [0, 1], batch_size at a time
    (a batch of 50 at 299 x 299 needs about 0.5 GB of activations)."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        out.append(net.features(images[start:start + batch_size]).cpu())
    return torch.cat(out) if out else torch.empty(0, net.num_features)


def _where_to_get() -> str:
    return " or ".join(f"{w.url} ({w.variant})" for w in KNOWN_WEIGHTS.values())


def load_inception(path, *, trust: bool = False) -> tuple[InceptionV3, dict]:
    """Frozen InceptionV3 (eval mode) with the weights of a local file, and its record
    {"file", "sha256", "variant", "verified", "feature_dim", "input_size"}.

    ``path`` is pytorch-fid's or torchvision's weight file (.pth/.pt, read with torch.load(weights_only=True)),
    or the same state dict as .safetensors. A file whose sha256 begins with the 8 hex digits of one of the two
    known files is "verified". Any other file is refused before it is opened, unless ``trust=True``; then it is
    used and recorded as ``verified: False`` with its sha256. Key names and shapes are checked exactly (the
    batch-norm ``num_batches_tracked`` counters may be absent). Raises GenzooError; never falls back to
    untrained weights.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenzooError(f"No InceptionV3 weights at {path}. genzoo never downloads them itself: download "
                          f"{_where_to_get()} and pass that file's path.")
    if path.suffix.lower() not in (".pth", ".pt", ".safetensors"):
        raise GenzooError(f"{path.name}: InceptionV3 weights must be a .pth/.pt or .safetensors file.")
    sha = sha256_file(path)
    known = KNOWN_WEIGHTS.get(sha[:8])
    if known is None and not trust:
        raise GenzooError(f"{path.name} is not one of the two known InceptionV3 weight files (its sha256 begins "
                          f"{sha[:8]}, not {' or '.join(KNOWN_WEIGHTS)}); pass trust=True to use it anyway, "
                          f"recorded as unverified.")
    state = _read_state_dict(path)
    variant = _check_layout(state, path.name)
    verified = known is not None and known.variant == variant
    if not verified and not trust:                     # a known prefix on a file of the other layout
        raise GenzooError(f"{path.name}'s sha256 begins {sha[:8]} like {known.file}, but it holds the {variant} "
                          f"layout; pass trust=True to use it anyway, recorded as unverified.")
    net = InceptionV3(variant)
    net.load_state_dict(state, strict=False)           # layout checked above; only counters may be missing
    net.eval().requires_grad_(False)
    record = {"file": path.name, "sha256": sha, "variant": variant, "verified": verified,
              "feature_dim": InceptionV3.num_features, "input_size": INPUT_SIZE}
    return net, record


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:                             # a corrupt file, or a pickle that is not plain tensors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GenzooError(f"{path.name} could not be read as a state dict of tensors ({first[:200]}).") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise GenzooError(f"{path.name} does not hold a state dict (a mapping of names to tensors).")
    return state


def expected_layout(variant: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a variant's state dict (``num_batches_tracked`` counters included)."""
    with torch.device("meta"):                         # shapes only: no memory, no initialisation cost
        return {k: tuple(v.shape) for k, v in InceptionV3(variant).state_dict().items()}


def _check_layout(state: dict[str, torch.Tensor], name: str) -> str:
    # The variant follows from fc's rows; then every key and shape must be that variant's.
    fc = state.get("fc.weight")
    rows = fc.shape[0] if fc is not None and fc.dim() == 2 else None
    variant = next((v for v, c in NUM_CLASSES.items() if c == rows), "pytorch-fid")
    expected = expected_layout(variant)
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
             for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    problems = [f"{what}: {', '.join(keys[:3])}{f' and {len(keys) - 3} more' if len(keys) > 3 else ''}"
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("wrong shapes", wrong)) if keys]
    if problems:
        raise GenzooError(f"{name} is not an InceptionV3 state dict in pytorch-fid's or torchvision's layout: "
                          f"{'; '.join(problems)}.")
    return variant
