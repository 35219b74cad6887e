"""User-supplied feature networks: FID, KID and precision/recall in a feature space of the user's
choosing, for data sets genzoo ships no frozen classifier for (CIFAR-10, patches, folders).

A feature network is two files side by side: ``NAME.safetensors`` (tensors only) and
``NAME.json``, which declares the network as a list of layers from a fixed menu that genzoo builds
itself (conv2d, linear, batch/group/layer norm, activations, pooling, flatten, dropout, nested
sequential and residual blocks). Nothing in either file is executed: the layers are genzoo's
code, the weights must have exactly the names and shapes the declared layers have, and the
layers are sized on the meta device before any memory is allocated. A TorchScript file would
be a program (torch.jit.load compiles and runs its code, and its constants are unpickled); a
pickled nn.Module runs arbitrary code when loaded. Those formats are not read.

The network maps images in [0, 1], shape (N, C, H, W), normalised per channel with the JSON's
``mean`` and ``std``, to features (N, D); they are divided by ``feature_scale``.
``save_feature_net`` writes both files from an nn.Sequential built of the menu's layers (or from
a genzoo Classifier trained with the fixed recipe, whose penultimate layer it keeps).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from .errors import GenzooError
from .hub import sha256_file

FORMAT = "genzoo-feature-net/1"
_MAX_LAYERS = 1000
_MAX_DEPTH = 16

_INT = (int,)
_INTS = (int, list)          # an int or [h, w]
# layer type -> (torch class, {keyword: accepted JSON types}, required keywords)
_LAYERS: dict[str, tuple[type, dict, tuple]] = {
    "conv2d": (nn.Conv2d, {"in_channels": _INT, "out_channels": _INT, "kernel_size": _INTS, "stride": _INTS,
                           "padding": (int, list, str), "dilation": _INTS, "groups": _INT, "bias": (bool,)},
               ("in_channels", "out_channels", "kernel_size")),
    "linear": (nn.Linear, {"in_features": _INT, "out_features": _INT, "bias": (bool,)},
               ("in_features", "out_features")),
    "batchnorm1d": (nn.BatchNorm1d, {"num_features": _INT, "eps": (float,), "affine": (bool,)}, ("num_features",)),
    "batchnorm2d": (nn.BatchNorm2d, {"num_features": _INT, "eps": (float,), "affine": (bool,)}, ("num_features",)),
    "groupnorm": (nn.GroupNorm, {"num_groups": _INT, "num_channels": _INT, "eps": (float,), "affine": (bool,)},
                  ("num_groups", "num_channels")),
    "layernorm": (nn.LayerNorm, {"normalized_shape": _INTS, "eps": (float,), "elementwise_affine": (bool,)},
                  ("normalized_shape",)),
    "relu": (nn.ReLU, {}, ()),
    "leaky_relu": (nn.LeakyReLU, {"negative_slope": (float,)}, ()),
    "elu": (nn.ELU, {"alpha": (float,)}, ()),
    "gelu": (nn.GELU, {"approximate": (str,)}, ()),
    "silu": (nn.SiLU, {}, ()),
    "tanh": (nn.Tanh, {}, ()),
    "sigmoid": (nn.Sigmoid, {}, ()),
    "maxpool2d": (nn.MaxPool2d, {"kernel_size": _INTS, "stride": _INTS, "padding": _INTS}, ("kernel_size",)),
    "avgpool2d": (nn.AvgPool2d, {"kernel_size": _INTS, "stride": _INTS, "padding": _INTS}, ("kernel_size",)),
    "adaptive_avgpool2d": (nn.AdaptiveAvgPool2d, {"output_size": _INTS}, ("output_size",)),
    "flatten": (nn.Flatten, {}, ()),
    "dropout": (nn.Dropout, {"p": (float,)}, ()),      # identity: features are computed in eval mode
}


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the shortcut is the identity when empty (a ResNet block)."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class FeatureNet(nn.Module):
    """A frozen feature network built from a declaration: images in [0, 1] -> features (N, D)."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = spec
        c = spec["channels"]
        self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.net = _build(spec["layers"], depth=0, count=[0])
        self.feature_scale = float(spec["feature_scale"])
        self.num_features = 0     # set by load_feature_net from a dry run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, D) of float images (N, C, H, W) in [0, 1]."""
        return self.net((x - self.mean) / self.std) / self.feature_scale

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Features (N, D), float32 on the CPU, of uint8 images or floats in [0, 1]."""
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            out.append(self(x.to(self.mean.device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.num_features)


def _build(layers, depth: int, count: list) -> nn.Sequential:
    # a declared list of layers -> nn.Sequential (on whatever default device is active)
    if depth > _MAX_DEPTH:
        raise GenzooError(f"feature network: blocks nest deeper than {_MAX_DEPTH}.")
    if not isinstance(layers, list):
        raise GenzooError("feature network: 'layers' must be a list of layer objects.")
    modules = []
    for i, layer in enumerate(layers):
        count[0] += 1
        if count[0] > _MAX_LAYERS:
            raise GenzooError(f"feature network: more than {_MAX_LAYERS} layers.")
        if not isinstance(layer, dict) or not isinstance(layer.get("type"), str):
            raise GenzooError(f"feature network: layer {i} must be an object with a 'type'.")
        kind, args = layer["type"], {k: v for k, v in layer.items() if k != "type"}
        if kind == "sequential":
            _check_keys(kind, args, {"layers"}, ("layers",))
            modules.append(_build(args["layers"], depth + 1, count))
        elif kind == "residual":
            _check_keys(kind, args, {"body", "shortcut"}, ("body",))
            modules.append(Residual(_build(args["body"], depth + 1, count),
                                    _build(args.get("shortcut", []), depth + 1, count)))
        elif kind in _LAYERS:
            cls, allowed, required = _LAYERS[kind]
            _check_keys(kind, args, set(allowed), required)
            for key, value in args.items():
                if not _valid(value, allowed[key]):
                    raise GenzooError(f"feature network: {kind}.{key} = {value!r} is not valid.")
                if float in allowed[key] and type(value) is int:
                    args[key] = float(value)
            try:
                modules.append(cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}))
            except (TypeError, ValueError, RuntimeError) as e:
                raise GenzooError(f"feature network: cannot build {kind} {args}: {e}.") from None
        else:
            raise GenzooError(f"feature network: unknown layer type {kind!r}; the menu is "
                              f"{', '.join([*_LAYERS, 'sequential', 'residual'])}.")
    return nn.Sequential(*modules)


def _valid(value, ok: tuple) -> bool:
    # a JSON value against the Python types a keyword accepts; ints are sizes (>= 0)
    if isinstance(value, bool):
        return bool in ok
    if isinstance(value, int):
        return (int in ok and value >= 0) or float in ok
    if isinstance(value, float):
        return float in ok and math.isfinite(value)
    if isinstance(value, str):
        return str in ok and len(value) <= 16
    if isinstance(value, list):
        return list in ok and 1 <= len(value) <= 3 and all(type(v) is int and v >= 0 for v in value)
    return False


def _check_keys(kind: str, args: dict, allowed: set, required: tuple) -> None:
    unknown = sorted(set(args) - allowed)
    missing = [k for k in required if k not in args]
    if unknown or missing:
        raise GenzooError(f"feature network: {kind} " + (f"has unknown keys {unknown} " if unknown else "") +
                          (f"lacks {missing} " if missing else "") + f"(its keys: {', '.join(sorted(allowed))}).")


def _paths(path: str | Path) -> tuple[Path, Path]:
    # NAME, NAME.safetensors or NAME.json -> (NAME.safetensors, NAME.json)
    path = Path(path).expanduser()
    stem = path.with_suffix("") if path.suffix.lower() in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _read_spec(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GenzooError(f"{path}: cannot read the feature network's declaration ({e}).") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise GenzooError(f"{path} is not a feature network declaration (\"format\": \"{FORMAT}\").")
    c, s = spec.get("channels"), spec.get("image_size")
    if c not in (1, 3) or type(s) is not int or not 1 <= s <= 4096:
        raise GenzooError(f"{path}: channels must be 1 or 3 and image_size a positive integer.")
    for key, default in (("mean", 0.0), ("std", 1.0)):
        value = spec.get(key, default)
        value = [value] * c if isinstance(value, (int, float)) else value
        if not (isinstance(value, list) and len(value) == c and all(isinstance(v, (int, float)) for v in value)
                and all(math.isfinite(v) for v in value)) or (key == "std" and min(value) <= 0):
            raise GenzooError(f"{path}: {key} must be a number or {c} numbers{' > 0' if key == 'std' else ''}.")
        spec[key] = [float(v) for v in value]
    scale = spec.get("feature_scale", 1.0)
    if not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise GenzooError(f"{path}: feature_scale must be a positive number.")
    spec["feature_scale"] = float(scale)
    unknown = sorted(set(spec) - {"format", "channels", "image_size", "mean", "std", "feature_scale", "layers",
                                  "description"})
    if unknown:
        raise GenzooError(f"{path}: unknown keys {unknown}.")
    return spec


def load_feature_net(path: str | Path, shape: tuple[int, int, int] | None = None) -> tuple[FeatureNet, dict]:
    """A frozen FeatureNet (eval mode) from ``NAME.safetensors`` + ``NAME.json`` and its record
    {"file", "sha256", "config_sha256", "id", "feature_dim", "channels", "image_size"}.

    ``path`` is either file or their common stem. With ``shape`` (C, H, W) of the data, a network
    declared for other images is refused. Raises GenzooError for anything malformed, before any
    weight is used: unknown layers or keys, tensors missing, extra or of the wrong shape.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, decl = _paths(path)
    for p in (weights, decl):
        if not p.is_file():
            raise GenzooError(f"No feature network file {p}: a feature network is NAME.safetensors with its "
                              f"declaration NAME.json beside it (docs/evaluation.md; "
                              f"genzoo.feature_net.save_feature_net writes both).")
    spec = _read_spec(decl)
    c, s = spec["channels"], spec["image_size"]
    if shape is not None and tuple(shape) != (c, s, s):
        raise GenzooError(f"{decl.name} is declared for {c}x{s}x{s} images, but the data are "
                          f"{'x'.join(map(str, shape))}.")
    with torch.device("meta"):          # sizes only: nothing is allocated for a hostile declaration
        net = FeatureNet(spec)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise GenzooError(f"{weights}: not a readable safetensors file ({e}).") from None
    expected = dict(net.net.state_dict())     # names as in the saved nn.Sequential
    counters = {k for k in expected if k.endswith("num_batches_tracked")}   # unused in eval mode
    missing = sorted(set(expected) - set(state) - counters)
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or extra or wrong:
        detail = "; ".join(part for part in (
            f"missing {missing[:5]}" if missing else "", f"unexpected {extra[:5]}" if extra else "",
            "wrong shape " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                                       for k in wrong[:5]) if wrong else "") if part)
        raise GenzooError(f"{weights.name} does not hold the weights {decl.name} declares: {detail}.")
    for k in counters - set(state):
        state[k] = torch.zeros((), dtype=torch.long)
    for k, v in state.items():
        if not (v.is_floating_point() or k in counters):
            raise GenzooError(f"{weights.name}: {k} is {v.dtype}, expected floating point.")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise GenzooError(f"{weights.name}: {k} holds NaN or infinite values.")
    net = net.to_empty(device="cpu")
    net.mean.copy_(torch.tensor(spec["mean"]).view(1, c, 1, 1))
    net.std.copy_(torch.tensor(spec["std"]).view(1, c, 1, 1))
    net.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    net.eval().requires_grad_(False)
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, c, s, s))
    except RuntimeError as e:
        raise GenzooError(f"{decl.name}: the declared layers do not fit {c}x{s}x{s} images ({e}).") from None
    if out.ndim != 2:
        raise GenzooError(f"{decl.name}: the network gives features of shape {tuple(out.shape[1:])}; end it "
                          f"with a flatten layer so that each image gives one vector.")
    net.num_features = out.shape[1]
    sha, config_sha = sha256_file(weights), sha256_file(decl)
    record = {"file": weights.name, "sha256": sha, "config_sha256": config_sha,
              "id": hashlib.sha256((sha + config_sha).encode()).hexdigest()[:16],
              "feature_dim": net.num_features, "channels": c, "image_size": s}
    return net, record


def save_feature_net(net: nn.Module, path: str | Path, *, channels: int | None = None,
                     image_size: int | None = None, mean=0.0, std=1.0, feature_scale: float = 1.0,
                     description: str = "") -> tuple[Path, Path]:
    """Write ``net`` as ``NAME.safetensors`` + ``NAME.json`` for ``genzoo eval --feature-net``.

    ``net`` is an nn.Sequential of the menu's layers (nn.Conv2d, nn.Linear, nn.BatchNorm1d/2d,
    nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh,
    nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nested
    nn.Sequential and ``Residual``) whose output is (N, D); ``mean``/``std`` normalise its [0, 1]
    input per channel. A genzoo ``Classifier`` gives its penultimate layer with its own input
    scaling and feature scale, so its features are those of genzoo's frozen classifiers.
    Returns the two paths.
    """
    from safetensors.torch import save_file

    from .classifier import Classifier

    if isinstance(net, Classifier):
        cfg = net.config
        channels, image_size = channels or cfg.channels, image_size or cfg.image_size
        mean, std, feature_scale = 0.5, 0.5, float(net.feature_scale)   # x * 2 - 1, as Classifier.features
        net = net.body
    if channels is None or image_size is None:
        raise ValueError("pass channels and image_size: the images the network takes")
    spec = {"format": FORMAT, "channels": channels, "image_size": image_size, "mean": mean, "std": std,
            "feature_scale": float(feature_scale), "layers": _declare(net)}
    if description:
        spec["description"] = description
    weights, decl = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}, str(weights))
    decl.write_text(json.dumps(spec, indent=1) + "\n")
    load_feature_net(weights)            # what was written must load back
    return weights, decl


def _declare(seq: nn.Module) -> list:
    # nn.Sequential -> the JSON list of its layers; raises ValueError for a module not on the menu
    if not isinstance(seq, nn.Sequential):
        raise ValueError(f"expected an nn.Sequential, got {type(seq).__name__}")
    out = []
    for m in seq:
        if isinstance(m, nn.Sequential):
            out.append({"type": "sequential", "layers": _declare(m)})
        elif isinstance(m, Residual):
            out.append({"type": "residual", "body": _declare(m.body), "shortcut": _declare(m.shortcut)})
        else:
            kind = next((k for k, (cls, _, _) in _LAYERS.items() if type(m) is cls), None)
            if kind is None:
                raise ValueError(f"{type(m).__name__} is not on the feature network menu")
            out.append({"type": kind, **_arguments(kind, m)})
    return out


def _arguments(kind: str, m: nn.Module) -> dict:
    # the constructor keywords of a menu layer, read back from the module
    def plain(v):
        return list(v) if isinstance(v, tuple) else v
    if kind == "conv2d":
        if m.padding_mode != "zeros":
            raise ValueError(f"conv2d with padding_mode={m.padding_mode!r} is not on the menu (zeros only)")
        return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": plain(m.kernel_size),
                "stride": plain(m.stride), "padding": plain(m.padding), "dilation": plain(m.dilation),
                "groups": m.groups, "bias": m.bias is not None}
    if kind == "linear":
        return {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    if kind in ("batchnorm1d", "batchnorm2d"):
        if not m.track_running_stats:
            raise ValueError("batch norm without running statistics is not on the menu")
        return {"num_features": m.num_features, "eps": m.eps, "affine": m.affine}
    if kind == "groupnorm":
        return {"num_groups": m.num_groups, "num_channels": m.num_channels, "eps": m.eps, "affine": m.affine}
    if kind == "layernorm":
        return {"normalized_shape": plain(m.normalized_shape), "eps": m.eps,
                "elementwise_affine": m.elementwise_affine}
    if kind == "leaky_relu":
        return {"negative_slope": m.negative_slope}
    if kind == "elu":
        return {"alpha": m.alpha}
    if kind == "gelu":
        return {"approximate": m.approximate}
    if kind in ("maxpool2d", "avgpool2d"):
        if kind == "maxpool2d" and (m.dilation not in (1, (1, 1)) or m.ceil_mode or m.return_indices):
            raise ValueError("max pooling with dilation, ceil_mode or return_indices is not on the menu")
        if kind == "avgpool2d" and (m.ceil_mode or not m.count_include_pad or m.divisor_override is not None):
            raise ValueError("average pooling other than the default counting is not on the menu")
        return {"kernel_size": plain(m.kernel_size), "stride": plain(m.stride), "padding": plain(m.padding)}
    if kind == "adaptive_avgpool2d":
        return {"output_size": plain(m.output_size)}
    if kind == "flatten":
        if (m.start_dim, m.end_dim) != (1, -1):
            raise ValueError("flatten is on the menu with start_dim=1, end_dim=-1 only")
        return {}
    if kind == "dropout":
        return {"p": m.p}
    return {}
