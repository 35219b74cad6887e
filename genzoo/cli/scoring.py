"""The commands that judge a model: eval, report, classify, augment, ood."""
from __future__ import annotations

from pathlib import Path

from ..errors import GenzooError
from .common import _home, _load, _parse_options, _run_record, _scoring_model, _write_json


def cmd_eval(args) -> int:
    from ..evaluate import evaluate_run, format_table, write_result

    wanted = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    try:
        result = evaluate_run(args.run, wanted, n=args.n, split=args.split, ema=args.ema, seed=args.seed,
                              batch_size=args.batch_size, iwae_k=args.iwae_k, progress=not args.no_progress,
                              features=args.features, trust_features=args.trust_features,
                              sample_options=_parse_options(args.opt), feature_net=args.feature_net,
                              device=args.device, cas_n=args.cas_n, nll_n=args.nll_n)
    except ValueError as e:   # a sampling option's value the model refuses (raised when the first batch is drawn)
        raise GenzooError(str(e)) from None
    result["command"] = "genzoo " + " ".join(args.argv)
    print(format_table(result))
    out = Path(args.out) if args.out else _home(args.run) / "eval.json"
    write_result(result, out)
    print(f"wrote {out}")
    return 0 if result["metrics"] else 2


def cmd_report(args) -> int:
    from ..report import build_report
    out = build_report(args.run, args.out or _home(args.run) / "report.html", n=args.n, seed=args.seed,
                       ema=args.ema, method=args.map,
                       batch_size=args.batch_size, progress=not args.no_progress, device=args.device,
                       judgements=args.judgements)
    print(f"wrote {out} (PNGs in {out.with_suffix('')})")
    return 0


def _classify_test(args, model, config: dict) -> int:
    from ..apps.classify import bayes_accuracy
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
    _write_json(result, Path(args.out) if args.out else _home(args.run) / "classify.json")
    return 0


def _classify_images(args, model, config: dict) -> int:
    import torch
    from ..apps.classify import describe, draws_text, likelihood_estimator, posterior
    from ..data import load_split
    from ..images import load_image
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
    from ..apps.classify import likelihood_estimator
    from ..checkpoint import read_config

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
    from ..apps.augment import augmentation_gain, write_report
    from ..checkpoint import read_config
    from ..classifier import RecipeConfig
    from ..data import short_name

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
        _home(args.run).parent / f"augment-{config['model_name']}-{short_name(config['data'])}"
    path, png = write_report(result, out)
    print(f"wrote {path} and {png}")
    return 0


def _ood_datasets(args, config: dict) -> tuple[str, str]:
    """(in, out): --data (the run's own data set, its default) and --ood-data, checked."""
    from ..data import check_name
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
    from ..apps.ood import ood_eval
    from ..checkpoint import read_config
    from ..data import short_name
    from ..likelihood import scoring_layout

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
                _home(args.run) / f"ood-{short_name(in_data)}-vs-{short_name(out_data)}.json")
    return 0
