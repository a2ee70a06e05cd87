"""Ablations: which of the paper's design choices matter, measured over several seeds.

* :class:`Ablation` is one configuration: a :class:`~lenet_course.models.LeNetConfig`, a
  :class:`~lenet_course.training.TrainConfig` and, optionally, a
  :class:`~lenet_course.distortions.Distort` applied to the training digits.
* :func:`paper_grid` is lesson 08's grid: the paper's network trained with the fast recipe (the
  baseline), then one factor changed at a time: pooling, activation, C3's connections, the output
  layer and its loss, distortions.
* :func:`run_ablations` trains every configuration with every seed (:func:`lenet_course.training.train`)
  and returns a tidy table, one row per run; :func:`summarize` reduces it to mean, spread, min and
  max per configuration, :func:`format_summary` prints that and :func:`plot_summary` draws it;
  :func:`compare_to_references` sets each variant against its reference.
  Nothing is lost when a run fails: the error carries the rows finished so far, and with
  ``results=`` each finished run is also saved at once (atomically), so a re-run reuses it.
* :func:`gradient_norms` measures the error signal that backpropagation delivers to each layer,
  and :func:`plot_gradient_norms` draws it per layer on a log scale: the way to see the sigmoid's
  vanishing gradients.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from lenet_course.data import MNIST
from lenet_course.distortions import Distort
from lenet_course.files import atomic_write
from lenet_course.models import PAPER, LeNet5, LeNetConfig
from lenet_course.paper import LAYER_NAMES
from lenet_course.progress import progress_bar
from lenet_course.training import RECIPES, TrainConfig, loss_step, train

__all__ = ["Ablation", "AblationError", "ROW_FIELDS", "paper_grid", "run_ablations", "summarize",
           "compare_to_references", "format_summary", "gradient_norms", "plot_summary", "plot_gradient_norms"]

ROW_FIELDS = ("name", "factor", "seed", "epochs", "test_error", "train_seconds")  # one run; errors are fractions
_FORMAT = "lenet-course ablations 1"  # the results file's format marker


@dataclass(frozen=True)
class Ablation:
    """One configuration of an ablation grid; each run replaces ``train.seed`` by its own seed."""
    name: str                      # a short label, unique in its grid ("max pooling")
    factor: str                    # the design choice it varies ("pooling"); "baseline" for the reference
    model: LeNetConfig = PAPER     # the network
    train: TrainConfig = TrainConfig()  # how it is trained
    distort: Distort | None = None  # distort each training batch (None: train on the digits as they are)
    reference: str | None = None   # the configuration it differs from in one factor (None for the baseline)

    def __post_init__(self) -> None:
        for name in ("name", "factor"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"Ablation.{name} must be a non-empty string, got {getattr(self, name)!r}")
        if self.reference is not None and (not isinstance(self.reference, str) or self.reference == self.name):
            raise ValueError(f"Ablation {self.name!r}: reference must name another configuration or be None, "
                             f"got {self.reference!r}")
        for name, kind in (("model", LeNetConfig), ("train", TrainConfig), ("distort", (Distort, type(None)))):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"Ablation {self.name!r}: {name} must be a "
                                f"{'Distort or None' if name == 'distort' else kind.__name__}, "
                                f"got {type(getattr(self, name)).__name__}")


def paper_grid(recipe: TrainConfig | None = None, distort: Distort | None = None) -> list[Ablation]:
    """Lesson 08's grid: the baseline and nine variants, each one factor away from its reference.

    The baseline is the paper's LeNet-5 (trainable subsampling, scaled tanh, Table I, RBF output
    with the MAP criterion) trained with ``recipe``, by default ``RECIPES["fast"]()``. Its variants:
    average and max pooling; the logistic sigmoid and ReLU; a fully connected C3; a linear output
    with softmax and cross-entropy; training on distorted digits, by default the paper's affine
    distortions (``distort=Distort()`` adds elastic ones). The sigmoid and ReLU cannot produce the
    -1 pixels of the RBF output's codes, so they are also compared with the softmax output as
    reference: "sigmoid, softmax" and "ReLU, softmax" differ from "softmax + CE" in the activation.
    """
    recipe = RECIPES["fast"]() if recipe is None else recipe
    distort = Distort(alpha=0.0) if distort is None else distort
    if not isinstance(distort, Distort):
        raise TypeError(f"distort must be a Distort (e.g. Distort(alpha=0.0)), got {type(distort).__name__}")
    if not isinstance(recipe, TrainConfig):
        raise TypeError(f"recipe must be a TrainConfig (e.g. RECIPES['fast'](epochs=3)), got {type(recipe).__name__}")
    if recipe.loss != "auto":
        raise ValueError(f"recipe.loss must be 'auto', so each output layer gets its own criterion (MAP for the "
                         f"RBF output, cross-entropy for the linear one), got {recipe.loss!r}")

    def variant(name: str, factor: str, reference: str | None = "baseline", distorted: bool = False,
                **change: str) -> Ablation:
        return Ablation(name, factor, dataclasses.replace(PAPER, **change), recipe, distort if distorted else None,
                        reference)

    return [
        variant("baseline", "baseline", reference=None),
        variant("avg pooling", "pooling", pooling="avg"),
        variant("max pooling", "pooling", pooling="max"),
        variant("sigmoid", "activation", activation="sigmoid"),
        variant("ReLU", "activation", activation="relu"),
        variant("full C3", "C3", c3="full"),
        variant("softmax + CE", "output", head="linear"),
        variant("sigmoid, softmax", "activation, softmax", "softmax + CE", activation="sigmoid", head="linear"),
        variant("ReLU, softmax", "activation, softmax", "softmax + CE", activation="relu", head="linear"),
        variant("distortions", "distortions", distorted=True),
    ]


class AblationError(RuntimeError):
    """A run of the grid failed; ``rows`` holds the runs that finished before it."""

    def __init__(self, message: str, rows: list[dict]):
        super().__init__(message)
        self.rows = rows


def _check_grid(grid: Sequence[Ablation], seeds: Sequence[int]) -> None:
    if isinstance(grid, Ablation) or not isinstance(grid, Sequence) or not grid:
        raise TypeError(f"grid must be a non-empty list of Ablation (paper_grid() gives one), got {grid!r:.80}")
    bad = [type(a).__name__ for a in grid if not isinstance(a, Ablation)]
    if bad:
        raise TypeError(f"grid must hold Ablation objects only, got {', '.join(sorted(set(bad)))}")
    names = [a.name for a in grid]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"grid: each configuration needs its own name; repeated: {', '.join(repeated)}")
    unknown = [f"{a.name!r} -> {a.reference!r}" for a in grid if a.reference is not None and a.reference not in names]
    if unknown:
        raise ValueError(f"grid: a reference must name a configuration of the grid; unknown: {', '.join(unknown)}")
    if isinstance(seeds, (int, str)) or not isinstance(seeds, Sequence) or not seeds:
        raise TypeError(f"seeds must be a non-empty list of ints, e.g. [0, 1, 2], got {seeds!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct ints >= 0, got {list(seeds)!r}")


def _data_digest(data: MNIST) -> str:
    """SHA-256 of the images and labels: two sets of the same size from one source differ here."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _run_key(ablation: Ablation, seed: int, data_digest: str) -> str:
    """Everything a run's result depends on, as canonical JSON: the key under which it is saved."""
    return json.dumps({"model": dataclasses.asdict(ablation.model),
                       "train": dataclasses.asdict(dataclasses.replace(ablation.train, seed=seed)),
                       "distort": dataclasses.asdict(ablation.distort) if ablation.distort else None,
                       "data": data_digest}, sort_keys=True)


def _load_results(path: Path) -> dict[str, dict]:
    """The saved runs of a results file, by key; empty when the file does not exist yet."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results file ({type(exc).__name__}: {exc}); delete it to "
                         "run the grid again") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT or not isinstance(state.get("runs"), list):
        raise ValueError(f"{path}: not a lenet-course ablation results file; pass another path or delete it")
    return {run["key"]: run for run in state["runs"]}


def run_ablations(grid: Sequence[Ablation], data: MNIST, seeds: Sequence[int] = (0, 1, 2), *,
                  results: str | os.PathLike | None = None, progress: bool = True) -> list[dict]:
    """Train every configuration of ``grid`` with every seed on ``data``; one row per run.

    Each run builds a LeNet-5 seeded with its seed and trains it with
    :func:`lenet_course.training.train` (the test set evaluated after the last pass). A row holds
    :data:`ROW_FIELDS`: ``name``, ``factor``, ``seed``, ``epochs``, ``test_error`` (a fraction)
    and ``train_seconds`` (the training loop only). Rows come in grid order, seeds inner.

    ``results``: a JSON file, rewritten atomically after every run. A run already in it (same
    configuration, seed and data) is not trained again, so an interrupted grid resumes where it
    stopped; runs of other grids in the file are kept. A failing run raises
    :class:`AblationError`, whose ``rows`` hold the runs finished before it (with or without a file).
    """
    _check_grid(grid, seeds)
    if not isinstance(data, MNIST):
        raise TypeError(f"data must be an MNIST (lenet_course.data.load_mnist), got {type(data).__name__}")
    path = Path(results) if results is not None else None
    saved = _load_results(path) if path is not None else {}
    digest = _data_digest(data) if path is not None else ""
    rows: list[dict] = []
    bar = progress_bar(total=len(grid) * len(seeds), desc="ablations", unit="run", enabled=progress)
    try:
        for ablation in grid:
            for seed in seeds:
                bar.set_postfix_str(f"{ablation.name}, seed {seed}")
                key = _run_key(ablation, seed, digest)
                if key not in saved:
                    try:
                        _, history = train(ablation.model, data, dataclasses.replace(ablation.train, seed=seed),
                                           augment=ablation.distort, progress=False)
                    except Exception as exc:
                        raise AblationError(f"run {ablation.name!r} (seed {seed}) failed after {len(rows)} finished "
                                            f"run(s): {type(exc).__name__}: {exc}", rows) from exc
                    saved[key] = {"key": key, "name": ablation.name, "factor": ablation.factor, "seed": seed,
                                  "epochs": len(history.epoch), "test_error": history.test_error[-1],
                                  "train_seconds": history.train_seconds}
                    if path is not None:
                        atomic_write(path, json.dumps({"format": _FORMAT, "runs": list(saved.values())}, indent=1))
                rows.append({"name": ablation.name, "factor": ablation.factor,
                             **{f: saved[key][f] for f in ROW_FIELDS[2:]}})
                bar.update()
    finally:
        bar.close()
    return rows


def summarize(rows: Sequence[Mapping]) -> list[dict]:
    """One row per configuration (in order of first appearance) from the rows of :func:`run_ablations`.

    Each: ``name``, ``factor``, ``n`` (runs), ``epochs``, and over the runs' test errors ``mean``,
    ``std`` (the sample standard deviation, ``n - 1`` in the denominator; NaN for a single run),
    ``min`` and ``max``; ``seconds`` is the mean training time of a run.
    """
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"rows must be a non-empty list of runs (dicts with {', '.join(ROW_FIELDS)})")
    groups: dict[str, list[Mapping]] = {}
    for i, row in enumerate(rows):
        missing = [f for f in ROW_FIELDS if not isinstance(row, Mapping) or f not in row]
        if missing:
            raise ValueError(f"rows[{i}] lacks {', '.join(missing)}; each row needs {', '.join(ROW_FIELDS)}")
        groups.setdefault(row["name"], []).append(row)
    summary = []
    for name, runs in groups.items():
        errors = [float(r["test_error"]) for r in runs]
        n = len(errors)
        mean = sum(errors) / n
        std = math.sqrt(sum((e - mean) ** 2 for e in errors) / (n - 1)) if n > 1 else math.nan
        epochs = sorted({r["epochs"] for r in runs})
        summary.append({"name": name, "factor": runs[0]["factor"], "n": n,
                        "epochs": epochs[0] if len(epochs) == 1 else epochs, "mean": mean, "std": std,
                        "min": min(errors), "max": max(errors),
                        "seconds": sum(float(r["train_seconds"]) for r in runs) / n})
    return summary


def compare_to_references(summary: Sequence[Mapping], grid: Sequence[Ablation]) -> list[dict]:
    """Each configuration of ``grid`` that has a reference, against it: one dict per configuration.

    ``difference`` is its mean test error minus its reference's; ``se`` the standard error of that
    difference, ``sqrt(std^2 / n + std_ref^2 / n_ref)``; ``verdict`` is "worse" or "better" when the
    difference exceeds two standard errors, else "within the noise" (a rough rule: with 2 or 3 runs
    the spread itself is uncertain). Configurations missing from ``summary`` are skipped.
    """
    by_name = {s["name"]: s for s in summary}
    comparisons = []
    for ablation in grid:
        if ablation.reference is None or ablation.name not in by_name or ablation.reference not in by_name:
            continue
        s, ref = by_name[ablation.name], by_name[ablation.reference]
        difference = s["mean"] - ref["mean"]
        se = math.sqrt(s["std"] ** 2 / s["n"] + ref["std"] ** 2 / ref["n"])  # NaN with a single run
        if math.isnan(se):
            verdict = "one run: no spread"
        elif abs(difference) > 2 * se:
            verdict = "worse" if difference > 0 else "better"
        else:
            verdict = "within the noise"
        comparisons.append({"name": ablation.name, "reference": ablation.reference, "factor": ablation.factor,
                            "difference": difference, "se": se, "verdict": verdict})
    return comparisons


def format_summary(summary: Sequence[Mapping]) -> str:
    """:func:`summarize`'s rows as a text table, errors in percent."""
    header = (f"{'configuration':<18}{'factor':<21}{'runs':>5}{'passes':>7}{'mean':>9}{'std':>8}"
              f"{'min':>8}{'max':>8}{'s/run':>8}")
    lines = [header, "-" * len(header)]
    for s in summary:
        std = "-" if math.isnan(s["std"]) else f"{100 * s['std']:.2f}"
        lines.append(f"{s['name']:<18}{s['factor']:<21}{s['n']:>5}{str(s['epochs']):>7}{100 * s['mean']:>8.2f}%"
                     f"{std:>8}{100 * s['min']:>8.2f}{100 * s['max']:>8.2f}{s['seconds']:>8.1f}")
    return "\n".join(lines)


def gradient_norms(model: LeNet5, x: torch.Tensor, y: torch.Tensor, *, loss: str = "auto") -> dict[str, float]:
    """How strongly the error signal reaches each layer: ``{"C1": ..., ..., "OUTPUT": ...}``.

    For each layer, the gradient of the loss with respect to the layer's output (before the
    squashing function: backpropagation's "delta"), one vector per example, is measured by its
    Euclidean norm, averaged over the batch. The loss is the one training uses (``loss="auto"``:
    MAP for an RBF output, cross-entropy for a linear one), summed over the examples so that the
    numbers do not depend on the batch size. ``x`` ``(N, 1, 32, 32)``, ``y`` ``(N,)``. The
    parameters' ``.grad`` are left untouched.
    """
    if not isinstance(model, LeNet5):
        raise TypeError(f"model must be a LeNet5 (lenet_course.models.lenet5), got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]:
        raise ValueError(f"x must be images (N, 1, 32, 32) and y their N labels, got {getattr(x, 'shape', x)!r} "
                         f"and {getattr(y, 'shape', y)!r}")
    step = loss_step(model, loss)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            outputs[name] = output
        return hook

    handles = [getattr(model, name.lower()).register_forward_hook(keep(name)) for name in LAYER_NAMES]
    try:
        with torch.enable_grad():
            value, _ = step(x, y)
            grads = torch.autograd.grad(value * len(x), [outputs[name] for name in LAYER_NAMES])
    finally:
        for handle in handles:
            handle.remove()
    return {name: g.flatten(1).norm(dim=1).mean().item() for name, g in zip(LAYER_NAMES, grads)}


def plot_summary(summary: Sequence[Mapping], rows: Sequence[Mapping] | None = None, *, title: str | None = None):
    """Each configuration's mean test error with its spread (+- one standard deviation), grouped and
    coloured by factor; each run as a small dot when ``rows`` are given; the baseline's mean as a
    dashed line. A log scale when the errors span more than a factor of 10. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not summary:
        raise ValueError("plot_summary needs the summary of at least one configuration (summarize(rows))")
    factors = list(dict.fromkeys(s["factor"] for s in summary))
    positions, x = [], 0.0
    for i, s in enumerate(summary):
        x += 1.0 if i == 0 or s["factor"] == summary[i - 1]["factor"] else 1.6  # a gap between factors
        positions.append(x)
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    for pos, s in zip(positions, summary):
        color = f"C{factors.index(s['factor'])}"
        spread = 0.0 if math.isnan(s["std"]) else 100 * s["std"]
        ax.errorbar(pos, 100 * s["mean"], yerr=spread, fmt="o", color=color, ms=5, capsize=3, lw=1.2)
        if rows is not None:
            errors = [100 * r["test_error"] for r in rows if r["name"] == s["name"]]
            ax.plot([pos + 0.18] * len(errors), errors, ".", color=color, ms=3, alpha=0.6)
    baseline = next((s for s in summary if s["factor"] == "baseline"), None)
    if baseline is not None:
        ax.axhline(100 * baseline["mean"], color="k", ls="--", lw=0.8, label="baseline mean")
        ax.legend(fontsize=7, frameon=False)
    values = [100 * s["min"] for s in summary] + [100 * s["max"] for s in summary]
    if min(values) > 0 and max(values) / min(values) > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2f}%"))
    ax.set_xticks(positions, [s["name"] for s in summary], rotation=30, ha="right")
    for label, s in zip(ax.get_xticklabels(), summary):
        label.set_color(f"C{factors.index(s['factor'])}")
    ax.tick_params(labelsize=7)
    ax.set_ylabel("test error", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_gradient_norms(norms: Mapping[str, Mapping[str, float]], *, title: str | None = None):
    """One line per series (``{"sigmoid": gradient_norms(...), ...}``) over the layers, log scale,
    the input side on the left: the error signal flows from right to left. Returns the figure."""
    import matplotlib.pyplot as plt

    if not norms:
        raise ValueError("plot_gradient_norms needs at least one series, e.g. {'sigmoid': gradient_norms(...)}")
    layers = list(next(iter(norms.values())))
    fig, ax = plt.subplots(figsize=(6, 2.6))
    for k, (name, values) in enumerate(norms.items()):
        if list(values) != layers:
            raise ValueError(f"series {name!r} has layers {list(values)}, expected {layers}")
        ax.plot(range(len(layers)), [values[layer] for layer in layers], "o-", ms=4, lw=1.4, color=f"C{k}", label=name)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("layer (the error signal flows from right to left)", fontsize=8)
    ax.set_ylabel("mean |dE/d(layer output)|", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
