"""Checks for the exercises of lesson 08 (ablations): solutions/08_ablations.ipynb.

08.1 the configurations of a one-factor grid, 08.2 per-layer gradient norms, 08.3 mean and spread
of runs, 08.4 a random translation of a batch. The references are ``dataclasses.replace`` of a
:class:`~lenet_course.models.LeNetConfig` (08.1), :func:`lenet_course.ablations.gradient_norms`
(08.2), :func:`lenet_course.ablations.summarize` (08.3) and a padded crop written out here (08.4).
Everything runs on small made-up tensors on the CPU; no data is loaded, nothing is trained.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from lenet_course.ablations import gradient_norms, summarize
from lenet_course.checks import (
    CheckFailed, call, describe, exercise, expect_close, expect_tensor,
)
from lenet_course.data import BACKGROUND, FOREGROUND
from lenet_course.models import MODERN, PAPER, LeNetConfig, lenet5
from lenet_course.paper import LAYER_NAMES

__all__ = ["grid_cases", "norm_cases", "summary_cases", "shift_cases"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, seed: int) -> torch.Tensor:
    """``n`` made-up inputs ``(n, 1, 32, 32)``: background with scattered ink (-0.1 or 1.175)."""
    ink = torch.rand(n, 1, 32, 32, generator=_generator(seed)) > 0.8
    return torch.where(ink, torch.tensor(FOREGROUND), torch.tensor(BACKGROUND))


# --------------------------------------------------------------------------------------------
# 08.1 the configurations of a one-factor grid
# --------------------------------------------------------------------------------------------

def _reference_grid(base: LeNetConfig, choices: dict) -> dict[str, LeNetConfig]:
    configs = {"baseline": base}
    for factor, values in choices.items():
        for value in values:
            if value != getattr(base, factor):
                configs[f"{factor}={value}"] = dataclasses.replace(base, **{factor: value})
    return configs


def grid_cases() -> list[tuple[str, tuple]]:
    """(description, (base, choices)) for 08.1."""
    return [
        ("PAPER, {'pooling': ['avg', 'max']}", (PAPER, {"pooling": ["avg", "max"]})),
        ("PAPER, {'pooling': ['trainable', 'max'], 'activation': ['sigmoid', 'relu']}",
         (PAPER, {"pooling": ["trainable", "max"], "activation": ["sigmoid", "relu"]})),
        ("MODERN, {'c3': ['table'], 'head': ['rbf', 'linear'], 'init': ['paper']}",
         (MODERN, {"c3": ["table"], "head": ["rbf", "linear"], "init": ["paper"]})),
        ("PAPER, {}", (PAPER, {})),
    ]


@exercise("08.1", "The configurations of a one-factor grid", names=("one_factor_configs",),
          hint="Start from a dict holding the base under the key 'baseline'. Then, for each factor and each of its "
               "values that differs from the base's own value, add the base with that one field replaced "
               "(dataclasses.replace), under the key 'factor=value', e.g. 'pooling=max'. Every variant starts again "
               "from the base: changes never accumulate.")
def _one_factor_configs(one_factor_configs: Any) -> None:
    for description, args in grid_cases():
        want = _reference_grid(*args)
        got = call(one_factor_configs, "one_factor_configs", args, description)
        expr = f"one_factor_configs({description})"
        if not isinstance(got, dict):
            raise CheckFailed(f"{expr} should return a dict of name -> LeNetConfig, got {describe(got)}")
        missing, unexpected = [k for k in want if k not in got], [k for k in got if k not in want]
        if missing or unexpected:
            raise CheckFailed(f"{expr} should have the keys {list(want)}; missing: {missing or 'none'}, "
                              f"unexpected: {unexpected or 'none'}")
        for key, config in want.items():
            if not isinstance(got[key], LeNetConfig):
                raise CheckFailed(f"{expr}[{key!r}] should be a LeNetConfig, got {describe(got[key])}")
            wrong = [f"{f.name}={getattr(got[key], f.name)!r} (expected {getattr(config, f.name)!r})"
                     for f in dataclasses.fields(config) if getattr(got[key], f.name) != getattr(config, f.name)]
            if wrong:
                raise CheckFailed(f"{expr}[{key!r}] has the wrong fields: {', '.join(wrong)}")


# --------------------------------------------------------------------------------------------
# 08.2 per-layer gradient norms
# --------------------------------------------------------------------------------------------

def _model(config: LeNetConfig, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return lenet5(config)


def norm_cases() -> list[tuple[str, tuple]]:
    """(description, (model, x, y)) for 08.2."""
    labels = torch.randint(0, 10, (16,), generator=_generator(5))
    return [
        ("the paper's LeNet-5, 16 digits", (_model(PAPER, 0), _images(16, 1), labels)),
        ("the modern LeNet-5 (linear output), 16 digits", (_model(MODERN, 1), _images(16, 2), labels)),
        ("the paper's LeNet-5 with the sigmoid, 8 digits",
         (_model(dataclasses.replace(PAPER, activation="sigmoid"), 2), _images(8, 3), labels[:8])),
    ]


@exercise("08.2", "Per-layer gradient norms", names=("layer_gradient_norms",),
          hint="Run the layers one by one (c1, act, s2, pool_act, c3, act, s4, pool_act, c5, act, flatten, f6, act, "
               "output), keeping each layer's output before its activation. The loss is the criterion of the output "
               "layer (map_criterion for 'rbf', F.cross_entropy for 'linear') times the number of digits; "
               "torch.autograd.grad gives its gradient with respect to the kept outputs. For each, take the norm of "
               "each digit's gradient (flatten from dim 1, norm along dim 1), then the mean over the digits.")
def _layer_gradient_norms(layer_gradient_norms: Any) -> None:
    for description, args in norm_cases():
        want = gradient_norms(*args)
        got = call(layer_gradient_norms, "layer_gradient_norms", args, description)
        expr = f"layer_gradient_norms({description})"
        if not isinstance(got, dict) or list(got) != list(LAYER_NAMES):
            keys = list(got) if isinstance(got, dict) else describe(got)
            raise CheckFailed(f"{expr} should return a dict with the keys {list(LAYER_NAMES)}, in that order, "
                              f"got {keys}")
        for layer in reversed(LAYER_NAMES):  # the output first: an error there explains the others
            value = got[layer].item() if isinstance(got[layer], torch.Tensor) and got[layer].dim() == 0 else got[layer]
            expect_close(value, want[layer], f"the {layer} value of {expr}", rtol=1e-4)


# --------------------------------------------------------------------------------------------
# 08.3 mean and spread of runs
# --------------------------------------------------------------------------------------------

def _rows(errors: dict[str, list[float]]) -> list[dict]:
    """Made-up runs, in the format of run_ablations: one row per error."""
    return [{"name": name, "factor": name.split()[0], "seed": seed, "epochs": 3, "test_error": error,
             "train_seconds": 10.0 + seed} for name, values in errors.items() for seed, error in enumerate(values)]


def _reference_summary(rows: list[dict]) -> dict[str, tuple[float, float, int]]:
    return {s["name"]: (s["mean"], s["std"], s["n"]) for s in summarize(rows)}


def summary_cases() -> list[tuple[str, tuple]]:
    """(description, (rows,)) for 08.3."""
    interleaved = _rows({"baseline": [0.0125, 0.0119, 0.0131], "max pooling": [0.0121, 0.0118, 0.0127]})
    interleaved = interleaved[::2] + interleaved[1::2]   # the rows of the two configurations mixed
    return [
        ("3 runs of one configuration", (_rows({"baseline": [0.0125, 0.0119, 0.0131]}),)),
        ("two configurations of 3 runs, rows mixed", (interleaved,)),
        ("runs of 3 configurations: 2, 4 and 3 runs",
         (_rows({"sigmoid net": [0.9, 0.9], "relu net": [0.012, 0.0135, 0.0128, 0.0117],
                 "avg pooling": [0.0131, 0.0122, 0.0126]}),)),
    ]


@exercise("08.3", "Mean and spread of runs", names=("summarise",),
          hint="Group the test errors by the row's 'name'; for each group return (mean, standard deviation, number "
               "of runs). The standard deviation is the sample one, with n - 1 in the denominator "
               "(statistics.stdev, or torch.std / np.std(ddof=1)), not statistics.pstdev. Keep the errors as "
               "fractions, 0.0125 for 1.25%.")
def _summarise(summarise: Any) -> None:
    for description, args in summary_cases():
        want = _reference_summary(*args)
        got = call(summarise, "summarise", args, description)
        expr = f"summarise({description})"
        if not isinstance(got, dict) or sorted(got) != sorted(want):
            keys = sorted(got) if isinstance(got, dict) else describe(got)
            raise CheckFailed(f"{expr} should return a dict with one entry per configuration name, {sorted(want)}, "
                              f"got {keys}")
        for name, (mean, std, n) in want.items():
            entry = got[name]
            if not isinstance(entry, (tuple, list)) or len(entry) != 3:
                raise CheckFailed(f"{expr}[{name!r}] should be a tuple (mean, std, n), got {describe(entry)}")
            expect_close(entry[0], mean, f"the mean of {expr}[{name!r}]", rtol=1e-9)
            expect_close(entry[1], std, f"the standard deviation of {expr}[{name!r}]", rtol=1e-6)
            if isinstance(entry[2], bool) or not isinstance(entry[2], int) or entry[2] != n:
                raise CheckFailed(f"the number of runs in {expr}[{name!r}] should be the int {n}, got {describe(entry[2])}")


# --------------------------------------------------------------------------------------------
# 08.4 a random translation of a batch
# --------------------------------------------------------------------------------------------

def _reference_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    shifts = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=generator)
    m, (h, w) = max_shift, x.shape[2:]
    padded = F.pad(x, (m, m, m, m), value=BACKGROUND)
    out = torch.empty_like(x)
    for n, (dx, dy) in enumerate(shifts.tolist()):
        out[n] = padded[n, :, m - dy:m - dy + h, m - dx:m - dx + w]
    return out


def shift_cases() -> list[tuple[str, tuple]]:
    """(description, (x, max_shift, seed)) for 08.4; the check makes a fresh generator for each call."""
    return [
        ("8 images, max_shift=2, a generator seeded with 0", (_images(8, 11), 2, 0)),
        ("5 images, max_shift=4, a generator seeded with 1", (_images(5, 12), 4, 1)),
        ("3 images, max_shift=0 (nothing moves), a generator seeded with 2", (_images(3, 13), 0, 2)),
    ]


@exercise("08.4", "A random translation of a batch", names=("random_shift",),
          hint="Draw the shifts exactly as the task says (one torch.randint call with the generator, dx in column 0, "
               "dy in column 1). Image n must move right by dx and down by dy: output pixel (i, j) is input pixel "
               "(i - dy, j - dx). Pad every side by max_shift with the background value -0.1 (F.pad with value=), "
               "then crop a 32x32 window per image; torch.roll is wrong, it wraps the digit around the edges.")
def _random_shift(random_shift: Any) -> None:
    for description, (x, max_shift, seed) in shift_cases():
        want = _reference_shift(x, max_shift, _generator(seed))
        got = call(random_shift, "random_shift", (x, max_shift, _generator(seed)), description)
        expect_tensor(got, want, f"random_shift({description})", atol=1e-6)
