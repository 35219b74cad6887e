"""Check genzoo's InceptionV3 (genzoo/inception.py) against independent implementations on the same random
weights: torch-fidelity's and pytorch-fid's port of the TensorFlow FID network, and torchvision's Inception3.

None of them can be a genzoo dependency, because each requires torchvision. Download the wheels yourself,
unpack them into one folder, and point this script at it:

    pip download --no-deps -d /tmp/refs torch-fidelity==0.4.0 pytorch-fid==0.3.0 torchvision==0.28.0
    for w in /tmp/refs/*.whl; do unzip -q -o "$w" -d /tmp/refs/unpacked; done
    python scripts/check_inception_refs.py /tmp/refs/unpacked

Only the three model files are run (torch_fidelity/feature_extractor_inceptionv3.py, pytorch_fid/inception.py,
torchvision/models/inception.py). Their packages' __init__ files are bypassed, because those import
torchvision's compiled operators. For each, the script prints the largest feature difference over the largest
reference feature, and exits 1 if one is above 1e-6: with random weights the features reach about 37, where
float32 rounding alone, in another order on another thread count, moves them by 1e-5. It downloads nothing.
"""
from __future__ import annotations

import importlib
import sys
import tempfile
import types
from pathlib import Path

import torch

from genzoo.inception import InceptionV3

TOLERANCE = 1e-6     # relative to the largest reference feature: a few float32 roundings (eps = 1.2e-7)
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def random_state_dict(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in a variant's exact layout, scaled so that features stay of order 1 through the network."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in InceptionV3(variant).state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = v
        elif k.endswith(("running_var", "bn.weight")):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(("running_mean", "bn.bias")):
            out[k] = 0.1 * torch.randn(v.shape, generator=g)
        else:                                           # conv and linear weights, He-scaled; linear biases
            out[k] = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
    return out


def _version(root: Path, dist: str) -> str:
    found = sorted(root.glob(f"{dist}-*.dist-info"))
    return found[0].name[len(dist) + 1:-len(".dist-info")] if found else "unknown version"


def _stub_package(name: str, folder: Path) -> None:
    # an empty package whose submodules are read from `folder`, so that its __init__ never runs
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    sys.modules[name] = module


def _ours(variant: str, state: dict) -> InceptionV3:
    net = InceptionV3(variant).eval()
    net.load_state_dict(state)
    return net


def check_torch_fidelity(root: Path, state: dict) -> float:
    """torch-fidelity takes uint8 k and computes (k - 128) / 128; k / 256 in [0, 1] is the same input to us.
    Its resize (TensorFlow 1's bilinear) is the identity at 299 x 299, as is ours."""
    _stub_package("torch_fidelity", root / "torch_fidelity")
    module = importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        torch.save(state, path)
        ref = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                 feature_extractor_weights_path=str(path))
    k = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = ref(k)[0]
    return relative_difference(_ours("pytorch-fid", state).features(k.float() / 256), theirs)


def _torchvision_inception(root: Path):
    _stub_package("torchvision", root / "torchvision")
    _stub_package("torchvision.models", root / "torchvision" / "models")
    _stub_package("torchvision.transforms", root / "torchvision" / "transforms")
    presets = types.ModuleType("torchvision.transforms._presets")    # only named in weight metadata
    presets.ImageClassification = lambda *args, **kwargs: None
    sys.modules["torchvision.transforms._presets"] = presets
    return importlib.import_module("torchvision.models.inception")


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| over max |theirs|."""
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def check_torchvision(root: Path, state: dict) -> float:
    """torchvision's Inception3 as built for these weights (transform_input=True), fed ImageNet-normalised
    pixels as its documentation asks, against ours fed the pixels in [0, 1]: grayscale 28x28 and RGB 299x299."""
    tv = _torchvision_inception(root)
    ref = tv.Inception3(num_classes=1000, aux_logits=True, transform_input=True, init_weights=False).eval()
    ref.load_state_dict(state)
    ref.fc = torch.nn.Identity()                      # pool3 features instead of logits (dropout: eval)
    ours = _ours("torchvision", state)
    g = torch.Generator().manual_seed(2)
    worst = 0.0
    for x in (torch.rand(2, 3, 299, 299, generator=g), torch.rand(2, 1, 28, 28, generator=g)):
        rgb = torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear",
                                              align_corners=False)
        with torch.no_grad():
            theirs = ref((rgb - IMAGENET_MEAN) / IMAGENET_STD)
        worst = max(worst, relative_difference(ours.features(x), theirs))
    return worst


def check_pytorch_fid(root: Path, state: dict) -> float:
    """pytorch-fid's InceptionV3 (its resize to 299 and scaling to [-1, 1] included), whose weight download
    is replaced by the random state dict: grayscale 28x28 (repeated to RGB), RGB 32x32 and 299x299."""
    tv = _torchvision_inception(root)
    sys.modules["torchvision"].models = sys.modules["torchvision.models"]
    sys.modules["torchvision"].__version__ = _version(root, "torchvision")
    sys.modules["torchvision.models"].inception = tv
    sys.modules["torchvision.models"].inception_v3 = tv.inception_v3
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("pytorch_fid.inception")
    finally:
        sys.path.remove(str(root))
    module.load_state_dict_from_url = lambda *args, **kwargs: state
    ref = module.InceptionV3([module.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ours = _ours("pytorch-fid", state)
    g = torch.Generator().manual_seed(3)
    worst = 0.0
    for shape in ((2, 1, 28, 28), (2, 3, 32, 32), (2, 3, 299, 299)):
        x = torch.rand(shape, generator=g)
        with torch.no_grad():
            theirs = ref(x.expand(-1, 3, -1, -1))[0].flatten(1)
        worst = max(worst, relative_difference(ours.features(x), theirs))
    return worst


def main(root: str) -> int:
    root = Path(root)
    fid_state, tv_state = random_state_dict("pytorch-fid", 0), random_state_dict("torchvision", 1)
    results = {f"torch-fidelity {_version(root, 'torch_fidelity')}": check_torch_fidelity(root, fid_state),
               f"pytorch-fid {_version(root, 'pytorch_fid')}": check_pytorch_fid(root, fid_state),
               f"torchvision {_version(root, 'torchvision')}": check_torchvision(root, tv_state)}
    for name, diff in results.items():
        print(f"{name:<24} max |genzoo - reference| / max |reference| = {diff:.3g}")
    return 0 if all(d <= TOLERANCE for d in results.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    sys.exit(main(sys.argv[1]))
