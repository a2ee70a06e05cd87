"""The ``lenet-course`` command: doctor, data, run, train, exercises, store."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import report
    return 0 if report() else 1


def _data_download(args: argparse.Namespace) -> int:
    from .data import download_mnist
    folder = download_mnist(args.data_dir, args.mirror or None)
    print(f"Full MNIST is in {folder}; lessons with DATA='auto' now use it.")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    import numpy as np
    from .data import default_data_dir, find_mnist, load_mnist
    folder = Path(args.data_dir) if args.data_dir else default_data_dir()
    print(f"MNIST folder: {folder} ({'complete' if find_mnist(folder) else 'full MNIST not there'})")
    for source in ("mnist", "sample") if find_mnist(folder) else ("sample",):
        data = load_mnist(source, folder, verbose=False)
        counts = np.bincount(data.train_labels, minlength=10)
        print(f"{source}: {len(data.train_labels):,} training and {len(data.test_labels):,} test digits; "
              f"training digits per class {counts.min():,}-{counts.max():,}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .runner import run_course
    runs = run_course(args.notebooks, args.output, fast=args.fast, data=args.data, data_dir=args.data_dir,
                      only=args.only or (), html_pages=not args.no_html)
    width = max(len(r.notebook) for r in runs)
    for r in runs:
        print(f"{r.notebook:<{width}}  {r.status:<7} {r.seconds:7.1f} s")
    print(f"All {len(runs)} lessons ran in {sum(r.seconds for r in runs):.1f} s; "
          f"results in {args.output}/ (open index.html).")
    return 0


def _store(args: argparse.Namespace) -> int:
    from .runner import store_outputs
    for notebook in args.notebooks:
        print(f"executing {notebook} ...", flush=True)
        store_outputs(notebook)
    return 0


def _train(args: argparse.Namespace) -> int:
    import json
    import platform

    import torch

    from .data import load_mnist
    from .files import atomic_write
    from .training import RECIPES, train
    config = RECIPES[args.recipe](epochs=args.epochs, seed=args.seed, device=args.device)
    data = load_mnist(args.data, args.data_dir)
    model, history = train(args.variant, data, config, checkpoint=args.checkpoint, resume=args.resume)
    device = str(next(model.parameters()).device)
    done = len(history.epoch)
    result = {
        "variant": args.variant, "recipe": args.recipe, "epochs": done, "seed": args.seed,
        "data_source": data.source, "train_size": len(data.train_labels), "test_size": len(data.test_labels),
        "device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "train_seconds": round(history.train_seconds, 3),
        "train_images_per_second": round(done * len(data.train_labels) / max(history.train_seconds, 1e-9)),
        "test_error": history.test_error[-1] if history.test_error else None,
        "history": {"test_error": history.test_error, "train_loss": history.train_loss, "seconds": history.seconds},
    }
    if args.save_model:
        atomic_write(args.save_model, lambda fh: torch.save(model.cpu().state_dict(), fh))
    atomic_write(args.json, json.dumps(result, indent=2) + "\n")
    print(f"{args.variant} LeNet-5, {done} passes on {data.source} ({len(data.train_labels):,} digits) on {device}: "
          f"test error {result['test_error']:.2%}, {history.train_seconds:.1f} s of training "
          f"({result['train_images_per_second']:,} images/s); results in {args.json}")
    return 0


def _exercises_build(args: argparse.Namespace) -> int:
    from .exercises import build
    from .runner import repo_root
    for path in build(args.solutions or repo_root() / "solutions", args.exercises or repo_root() / "exercises"):
        print(path)
    return 0


def _exercises_check(args: argparse.Namespace) -> int:
    from .exercises import format_report, grade, reports_to_json
    reports = grade(args.notebooks, timeout=args.timeout)
    print(reports_to_json(reports) if args.json else format_report(reports))
    return 0 if all(r.all_passed for r in reports) else 1


def _positive_int(text: str) -> int:
    value = _nonnegative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lenet-course", description="LeNet-5, layer by layer: the course's command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", help="check Python, packages, Jupyter kernel, data and device")
    p.set_defaults(func=_doctor)

    data = sub.add_parser("data", help="download full MNIST or show what data is available")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("download", help="download the four official MNIST files (checksummed)")
    p.add_argument("--data-dir", help="target folder (default: $LENET_COURSE_DATA or ~/.cache/lenet-course/mnist)")
    p.add_argument("--mirror", action="append", metavar="URL", help="base URL to try (repeatable; default: public mirrors)")
    p.set_defaults(func=_data_download)
    p = data_sub.add_parser("info", help="which data the lessons will use")
    p.add_argument("--data-dir", help="folder with the four MNIST files")
    p.set_defaults(func=_data_info)

    p = sub.add_parser("run", help="execute every lesson in order and write the results")
    p.add_argument("--fast", action="store_true", help="the CI profile: offline sample, fewest epochs, smallest grids")
    p.add_argument("--data", choices=("auto", "sample", "mnist"), help="data for every lesson (default: auto; sample with --fast)")
    p.add_argument("--data-dir", help="folder with the four MNIST files")
    p.add_argument("--output", default="build", help="folder for executed notebooks and the summary (default: build)")
    p.add_argument("--notebooks", help="folder of lessons (default: the course's notebooks/)")
    p.add_argument("--only", nargs="+", metavar="NN", help="run only these lessons, e.g. --only 00 03")
    p.add_argument("--no-html", action="store_true", help="skip rendering the executed notebooks as HTML")
    p.set_defaults(func=_run)

    p = sub.add_parser("train", help="train a LeNet-5 and write its results as JSON")
    p.add_argument("--variant", choices=("paper", "modern"), default="paper", help="which network (default: paper)")
    p.add_argument("--recipe", choices=("fast", "paper"), default="fast",
                   help="fast: Adam, one-cycle, batch 256; paper: SDLM, one example per update, the paper's schedule")
    p.add_argument("--data", choices=("auto", "sample", "mnist"), default="auto", help="data (default: auto)")
    p.add_argument("--data-dir", help="folder with the four MNIST files")
    p.add_argument("--epochs", type=_positive_int, help="passes over the training set (default: the recipe's)")
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="seed for the initial weights and the order (default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="default: auto")
    p.add_argument("--checkpoint", type=Path, help="write a checkpoint after each pass to this file")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    p.add_argument("--save-model", type=Path, metavar="FILE", help="write the trained state_dict to this file")
    p.add_argument("--json", type=Path, required=True, metavar="OUT", help="write the results to this JSON file")
    p.set_defaults(func=_train)

    ex = sub.add_parser("exercises", help="generate exercise notebooks, or grade a learner's notebooks")
    ex_sub = ex.add_subparsers(dest="exercises_command", required=True, metavar="ACTION")
    p = ex_sub.add_parser("build", help="generate exercises/ from solutions/ (the single source)")
    p.add_argument("--solutions", type=Path, help="folder of solution notebooks (default: the course's solutions/)")
    p.add_argument("--exercises", type=Path, help="folder to write (default: the course's exercises/)")
    p.set_defaults(func=_exercises_build)
    p = ex_sub.add_parser("check", help="run notebooks and report each exercise: passed, failed, not attempted, missing")
    p.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    p.add_argument("--timeout", type=_positive_int, default=60, help="seconds each cell may run (default: 60)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (for grading a folder)")
    p.set_defaults(func=_exercises_check)

    p = sub.add_parser("store", help="(maintainers) execute notebooks in place so their stored outputs are current")
    p.add_argument("notebooks", nargs="+", type=Path)
    p.set_defaults(func=_store)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lenet-course``; returns the exit status."""
    from .data import DataError
    from .exercises import ExerciseError
    from .runner import CourseError
    from .training import CheckpointError, DeviceError
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "resume", False) and not args.checkpoint:
        parser.error("--resume needs --checkpoint FILE (the file to continue from)")
    try:
        return args.func(args)
    except (DataError, CourseError, ExerciseError, CheckpointError, DeviceError) as exc:
        print(f"lenet-course: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lenet-course: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
