"""Reproduce the paper's MNIST result and produce the weights shipped in lenet_course/weights/.

Each run is one ``lenet-course train`` process; its command, seed, passes, seconds, hardware and
test error go to ``reproduction/results.json`` (rewritten atomically after every run, so an
interrupted reproduction keeps what it finished). The summary per configuration gives the mean,
the spread and the range over seeds. With ``--ship``, the run of the first seed of each shipped
configuration (decided before training, not picked by its result) becomes the package's
pretrained weights, with its SHA-256 and metadata in ``lenet_course/weights/manifest.json``.

    python reproduction/reproduce.py --data-dir ~/.cache/lenet-course/mnist --ship
    python reproduction/reproduce.py --data-dir DIR --only paper-sdlm --seeds 0   # the paper's own method
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lenet_course.files import atomic_write

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "reproduction" / "results.json"
WEIGHTS = ROOT / "lenet_course" / "weights"

# name -> (variant, recipe, passes, shipped as the variant's pretrained weights)
CONFIGS = {
    "modern": ("modern", "fast", 6, True),
    "paper": ("paper", "fast", 12, True),
    "paper-sdlm": ("paper", "paper", 20, False),  # SDLM, one example per update: ~30 min per seed here
}


def _hardware() -> dict:
    import torch
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def _summary(runs: list[dict]) -> dict:
    out = {}
    for name in CONFIGS:
        errors = [r["test_error"] for r in runs if r["config"] == name]
        if errors:
            out[name] = {"runs": len(errors), "mean_test_error": statistics.fmean(errors),
                         "stdev_test_error": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                         "min_test_error": min(errors), "max_test_error": max(errors)}
    return out


def _ship(name: str, run: dict, model_file: Path) -> None:
    variant = CONFIGS[name][0]
    WEIGHTS.mkdir(exist_ok=True)
    target = WEIGHTS / f"{variant}.pt"
    atomic_write(target, model_file.read_bytes())
    manifest_path = WEIGHTS / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[variant] = {
        "file": target.name, "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "data": run["data_source"], "train_size": run["train_size"], "test_size": run["test_size"],
        "seed": run["seed"], "epochs": run["epochs"], "recipe": run["recipe"], "test_error": run["test_error"],
        "command": run["command"],
    }
    atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with the four official MNIST files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), default=["modern", "paper"])
    parser.add_argument("--ship", action="store_true", help="install the first seed's weights into the package")
    args = parser.parse_args()

    previous = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []
    runs = [r for r in previous if r["config"] not in args.only]  # this invocation redoes its configs
    hardware = _hardware()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            variant, recipe, epochs, shipped = CONFIGS[name]
            for seed in args.seeds:
                out, model = Path(tmp) / f"{name}-{seed}.json", Path(tmp) / f"{name}-{seed}.pt"
                argv = ["lenet-course", "train", "--variant", variant, "--recipe", recipe, "--data", "mnist",
                        "--data-dir", args.data_dir, "--epochs", str(epochs), "--seed", str(seed),
                        "--json", str(out), "--save-model", str(model)]
                print(f"[{name} seed {seed}] {shlex.join(argv)}", flush=True)
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "lenet_course.cli", *argv[1:]], check=True,
                               env={**os.environ, "TQDM_DISABLE": "1"})
                result = json.loads(out.read_text())
                recorded = [a if a != args.data_dir else "MNIST_DIR" for a in argv[:-4]] + ["--json", "OUT"]
                run = {"config": name, "command": shlex.join(recorded),
                       "seed": seed, "epochs": result["epochs"], "recipe": recipe, "variant": variant,
                       "data_source": result["data_source"], "train_size": result["train_size"],
                       "test_size": result["test_size"], "train_seconds": result["train_seconds"],
                       "wall_seconds": round(time.perf_counter() - start, 1),
                       "train_images_per_second": result["train_images_per_second"],
                       "test_error": result["test_error"], "device": result["device"], "hardware": hardware}
                runs.append(run)
                print(f"[{name} seed {seed}] test error {run['test_error']:.2%} after {run['train_seconds']:.0f} s",
                      flush=True)
                if args.ship and shipped and seed == args.seeds[0]:
                    _ship(name, run, model)
                atomic_write(RESULTS, json.dumps({"runs": runs, "summary": _summary(runs)}, indent=2) + "\n")
    for name, s in _summary(runs).items():
        print(f"{name:<11} {s['runs']} seeds: test error {s['mean_test_error']:.2%} mean, "
              f"{s['stdev_test_error']:.2%} stdev, {s['min_test_error']:.2%}-{s['max_test_error']:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
