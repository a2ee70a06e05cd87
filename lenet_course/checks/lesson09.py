"""Checks for the exercises of lesson 09 (transfer learning): solutions/09_transfer.ipynb.

09.1 freeze the layers up to one and count what still trains, 09.2 a new linear output layer
for K classes, 09.3 an optimizer with a smaller rate for the pretrained trunk (parameter
groups), 09.4 n examples of each class, drawn at random. The references are the package's
:mod:`lenet_course.transfer` (``freeze``, ``new_head``, ``param_groups``) and
:func:`lenet_course.models.count_parameters`. Everything runs on freshly initialised networks
and made-up arrays on the CPU; no data or weights are loaded.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from lenet_course.checks import CheckFailed, call, describe, exercise, expect_equal, expect_int, expect_raises
from lenet_course.models import LeNet5, count_parameters, lenet5
from lenet_course.transfer import TRUNK, freeze, new_head, param_groups

__all__ = ["network", "freeze_cases", "head_cases", "optimizer_cases", "numbered_digits", "sample_cases"]


def network(variant: str, seed: int, head: int | None = 10, frozen_upto: str | None = None) -> LeNet5:
    """A freshly initialised LeNet-5 (seeded, torch's global generator untouched), with a new linear
    head for ``head`` classes unless None, frozen up to ``frozen_upto``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = lenet5(variant)
        if head is not None:
            new_head(model, head)
    return freeze(model, frozen_upto) if head is not None else model


def _after(fn: Callable) -> Callable:
    """``(model, *args) -> (what fn returned, the model after the call)``: the check sees both."""
    def run(model, *args):
        return fn(model, *args), model
    return run


# --------------------------------------------------------------------------------------------
# 09.1 freeze up to a layer, count what trains
# --------------------------------------------------------------------------------------------

def freeze_cases() -> list[tuple[str, tuple, str]]:
    """(description, (variant, seed), upto) for 09.1; each network has a new 10-class head."""
    return [
        ("the paper LeNet-5 with a new 10-class head, upto='f6'", ("paper", 0), "f6"),
        ("the paper LeNet-5 with a new 10-class head, upto='c5'", ("paper", 1), "c5"),
        ("the paper LeNet-5 with a new 10-class head, upto='c1'", ("paper", 2), "c1"),
        ("the modern LeNet-5 with a new 10-class head, upto='s4'", ("modern", 3), "s4"),
    ]


def _layer(parameter_name: str) -> str:
    return parameter_name.split(".")[0]


@exercise("09.1", "Freeze the layers up to one, count what trains", names=("freeze_upto",),
          hint="Walk the layers in order (model.c1, model.s2, ..., model.f6) up to and including upto, and set "
               "requires_grad = False on each of their parameters; leave the later layers alone. Then return what "
               "count_parameters (from lenet_course.models) counts for the model: only trainable parameters, and only "
               "the connected weights of the paper's C3, as an int.")
def _freeze_upto(freeze_upto: Any) -> None:
    for description, spec, upto in freeze_cases():
        want = freeze(network(*spec), upto)
        got_count, got_model = call(_after(freeze_upto), "freeze_upto", (network(*spec), upto), description)
        expr = f"freeze_upto({description})"
        last = TRUNK.index(upto)
        for name, p in got_model.named_parameters():
            layer = _layer(name)
            should_freeze = layer in TRUNK and TRUNK.index(layer) <= last
            if should_freeze and p.requires_grad:
                raise CheckFailed(f"after {expr}, {name} still trains (requires_grad True): every layer from C1 up to "
                                  f"{upto.upper()} should be frozen")
            if not should_freeze and not p.requires_grad:
                raise CheckFailed(f"after {expr}, {name} is frozen, but only the layers up to {upto.upper()} should be")
        if got_count is None:
            raise CheckFailed(f"{expr} should return the number of trainable parameters, got None")
        expect_int(got_count, expr)
        expect_equal(got_count, count_parameters(want), f"the number of trainable parameters returned by {expr}")


# --------------------------------------------------------------------------------------------
# 09.2 a new output layer
# --------------------------------------------------------------------------------------------

def head_cases() -> list[tuple[str, tuple, int]]:
    """(description, (variant, seed), num_classes) for 09.2; the networks arrive with their own output."""
    return [
        ("the paper LeNet-5 (RBF output), 10 classes", ("paper", 4), 10),
        ("the modern LeNet-5 (linear output), 26 classes", ("modern", 5), 26),
        ("the paper LeNet-5 (RBF output), 2 classes", ("paper", 6), 2),
    ]


@exercise("09.2", "A new output layer for K classes", names=("replace_head",),
          hint="Assign to model.output a new nn.Linear from F6's 84 units to num_classes outputs. model.config is "
               "a frozen dataclass: replace it by a copy whose head is 'linear' (dataclasses.replace), so that "
               "training uses cross-entropy on the logits. Change nothing else, and return the model.")
def _replace_head(replace_head: Any) -> None:
    for description, spec, k in head_cases():
        original = network(*spec, head=None)
        got, model = call(_after(replace_head), "replace_head", (network(*spec, head=None), k), description)
        expr = f"replace_head({description})"
        if got is not model:
            raise CheckFailed(f"{expr} should return the model it was given (changed in place), got {describe(got)}")
        if not isinstance(model.output, nn.Linear):
            raise CheckFailed(f"after {expr}, model.output should be an nn.Linear, got {describe(model.output)}")
        shape = (model.output.in_features, model.output.out_features)
        if shape != (original.f6.out_features, k):
            raise CheckFailed(f"after {expr}, model.output should map F6's {original.f6.out_features} features to {k} "
                              f"classes, got nn.Linear({shape[0]}, {shape[1]})")
        if not all(p.requires_grad for p in model.output.parameters()):
            raise CheckFailed(f"after {expr}, the new output layer should be trainable")
        if model.config.head != "linear":
            raise CheckFailed(f"after {expr}, model.config.head should be 'linear' (training picks cross-entropy "
                              f"from it), got {model.config.head!r}")
        before = dict(original.named_parameters())
        for name, p in model.named_parameters():
            if not name.startswith("output.") and not torch.equal(p.detach(), before[name].detach()):
                raise CheckFailed(f"{expr} changed {name}: only the output layer should be replaced")
        with torch.no_grad():
            out = model(torch.zeros(3, 1, 32, 32))
        if tuple(out.shape) != (3, k):
            raise CheckFailed(f"after {expr}, the model should give (3, {k}) outputs for 3 digits, got "
                              f"{tuple(out.shape)}")


# --------------------------------------------------------------------------------------------
# 09.3 parameter groups
# --------------------------------------------------------------------------------------------

def optimizer_cases() -> list[tuple[str, tuple, float, float]]:
    """(description, (variant, seed, head, frozen_upto), lr, trunk_lr) for 09.3."""
    return [
        ("the modern LeNet-5 with a new head, lr=0.01, trunk_lr=0.001", ("modern", 7, 10, None), 0.01, 0.001),
        ("the paper LeNet-5 with a new head, frozen up to C3, lr=0.003, trunk_lr=0.0001",
         ("paper", 8, 10, "c3"), 0.003, 0.0001),
    ]


@exercise("09.3", "A smaller learning rate for the pretrained layers", names=("make_optimizer",),
          hint="Give the optimizer a list of two dicts, {'params': [...], 'lr': ...}: one with the trainable "
               "parameters of C1 to F6 at trunk_lr, one with those of model.output at lr; leave out parameters "
               "whose requires_grad is False.")
def _make_optimizer(make_optimizer: Any) -> None:
    for description, spec, lr, trunk_lr in optimizer_cases():
        model = network(*spec)
        got, model = call(_after(make_optimizer), "make_optimizer", (model, lr, trunk_lr), description)
        expr = f"make_optimizer({description})"
        if not isinstance(got, torch.optim.Optimizer):
            raise CheckFailed(f"{expr} should return a torch optimizer, got {describe(got)}")
        rates: dict[int, list[float]] = {}
        for group in got.param_groups:
            for p in group["params"]:
                rates.setdefault(id(p), []).append(group["lr"])
        want = {id(p): group["lr"] for group in param_groups(model, lr, trunk_lr) for p in group["params"]}
        for name, p in model.named_parameters():
            where = "the new output layer" if name.startswith("output.") else "the trunk (C1-F6)"
            if not p.requires_grad:
                if id(p) in rates:
                    raise CheckFailed(f"{expr} hands {name} to the optimizer, but it is frozen (requires_grad False): "
                                      "leave frozen parameters out")
                continue
            if id(p) not in rates:
                raise CheckFailed(f"{expr} leaves out {name}, which should train with {where}")
            if len(rates[id(p)]) > 1:
                raise CheckFailed(f"{expr} puts {name} in {len(rates[id(p)])} parameter groups; each parameter "
                                  "belongs to exactly one")
            if not np.isclose(rates[id(p)][0], want[id(p)], rtol=1e-9, atol=0):
                raise CheckFailed(f"{expr} gives {name} the learning rate {rates[id(p)][0]:g}; {where} should learn "
                                  f"at {want[id(p)]:g}")
        known = {id(p) for p in model.parameters()}
        if set(rates) - known:
            raise CheckFailed(f"{expr} holds {len(set(rates) - known)} tensors that are not the model's parameters")


# --------------------------------------------------------------------------------------------
# 09.4 n examples of each class
# --------------------------------------------------------------------------------------------

def numbered_digits(counts: dict[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Made-up digits, uint8 ``(N, 28, 28)``, image i filled with the value i (so it can be recognised),
    and their labels: ``counts[c]`` of class c, in a shuffled order."""
    labels = np.random.default_rng(seed).permutation(np.repeat(list(counts), list(counts.values()))).astype(np.uint8)
    images = np.broadcast_to(np.arange(len(labels), dtype=np.uint8)[:, None, None], (len(labels), 28, 28)).copy()
    return images, labels


def sample_cases() -> list[tuple[str, dict[int, int], int, int]]:
    """(description, class counts, n, seed) for 09.4."""
    return [
        ("60 digits, 6 of each class 0-9, n=2, seed=0", {c: 6 for c in range(10)}, 2, 0),
        ("42 digits of classes 3 (20), 5 (12) and 8 (10), n=10, seed=1", {3: 20, 5: 12, 8: 10}, 10, 1),
        ("100 digits, 10 of each class 0-9, n=1, seed=7", {c: 10 for c in range(10)}, 1, 7),
    ]


def _picked(take_per_class: Callable, counts: dict[int, int], n: int, seed: int, description: str) -> np.ndarray:
    """The indices of the digits ``take_per_class`` returned, after checking what it returned."""
    images, labels = numbered_digits(counts, seed=len(counts))
    got = call(take_per_class, "take_per_class", (images, labels, n, seed), description)
    expr = f"take_per_class({description})"
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(a, np.ndarray) for a in got)):
        raise CheckFailed(f"{expr} should return a tuple of two numpy arrays (images, labels), got {describe(got)}")
    got_images, got_labels = got
    total = n * len(counts)
    if got_images.shape != (total, 28, 28) or got_labels.shape != (total,):
        raise CheckFailed(f"{expr} should return {total} images (N, 28, 28) and {total} labels, got shapes "
                          f"{got_images.shape} and {got_labels.shape}")
    for c in counts:
        if int((got_labels == c).sum()) != n:
            raise CheckFailed(f"{expr} returned {int((got_labels == c).sum())} digits of class {c}; expected {n} of "
                              "each class")
    index = got_images[:, 0, 0].astype(int)
    if not (got_images == got_images[:, :1, :1]).all() or (index >= len(labels)).any():
        raise CheckFailed(f"{expr} returned images that are not among the images given")
    if len(set(index.tolist())) != total:
        raise CheckFailed(f"{expr} returned some digit more than once; draw without replacement")
    if (labels[index] != got_labels).any():
        raise CheckFailed(f"{expr} returned images with labels that are not their own: keep each image with its "
                          "label")
    return index


@exercise("09.4", "n examples of each class, at random", names=("take_per_class",),
          hint="For each class of np.unique(labels), shuffle the indices of its examples with one generator made "
               "from the seed (np.random.default_rng) and keep the first n; then index images and labels with all "
               "the kept indices at once. Raise ValueError when n < 1 or a class has fewer than n examples.")
def _take_per_class(take_per_class: Any) -> None:
    for description, counts, n, seed in sample_cases():
        first = _picked(take_per_class, counts, n, seed, description)
        again = _picked(take_per_class, counts, n, seed, description)
        if sorted(first.tolist()) != sorted(again.tolist()):
            raise CheckFailed(f"take_per_class({description}) drew other digits on a second call with the same "
                              "seed: draw with np.random.default_rng(seed), not the global generator")
    description, counts, n, _ = sample_cases()[0]
    draws = {tuple(sorted(_picked(take_per_class, counts, n, seed, description.replace("seed=0", f"seed={seed}"))))
             for seed in range(4)}
    if len(draws) == 1:
        raise CheckFailed(f"take_per_class({description.replace('seed=0', 'seed=0..3')}) returned the same digits for "
                          "every seed: draw them at random with the seed")
    images, labels = numbered_digits({3: 20, 5: 12, 8: 10}, seed=3)
    expect_raises(take_per_class, "take_per_class", (images, labels, 11, 0),
                  "42 digits of which 10 of class 8, n=11", ValueError)
    expect_raises(take_per_class, "take_per_class", (images, labels, 0, 0), "n=0", ValueError)
