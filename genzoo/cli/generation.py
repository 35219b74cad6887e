"""The commands that draw images from a trained model: sample, interpolate, restore, edit."""
from __future__ import annotations

from pathlib import Path

from ..errors import GenzooError
from .common import _check_png_outputs, _load, _parse_labels, _parse_options, _sample_options, _write_png


def cmd_sample(args) -> int:
    import torch
    from ..images import save_images
    from ..sampling import sample_batches

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
    from ..images import save_grid
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
    from ..images import load_image
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
    from ..apps.edit import interpolate
    from ..images import save_gif, save_grid

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


def _restore_input(args, model, generator):
    """(the image as the model sees it, the clean image under --degrade or None, the known mask or None)."""
    from ..apps.restore import degrade, load_mask, mask_preset
    from ..images import load_image
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
    from ..apps.restore import TASKS, capabilities, observed_view, restore
    from ..images import save_grid

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
    from ..checkpoint import read_config
    from ..data import load_split
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
    from ..apps.edit import class_edit
    from ..images import load_image, save_grid

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
