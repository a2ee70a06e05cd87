"""Checks for the exercises of lesson 05 (the RBF output and the loss): solutions/05_rbf_loss.ipynb.

05.1 RBF penalties for a batch, 05.2 the MSE criterion, 05.3 the MAP criterion computed so that it
never underflows, 05.4 the class from the penalties (with rejection), 05.5 the MAP criterion's
gradient by hand. The references are :func:`torch.cdist` (squared) and :mod:`lenet_course.losses`
(``mse_criterion``, ``map_criterion``, differentiated by autograd for 05.5). The learner works
with torch tensors: losses must come back as 0-d tensors that ``.backward()`` can differentiate.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from lenet_course.checks import CheckFailed, call, describe, exercise, expect_close, expect_tensor
from lenet_course.layers import rbf_prototypes
from lenet_course.losses import map_criterion, mse_criterion

__all__ = ["rbf_cases", "penalty_batches", "map_cases", "classify_cases"]

_RTOL = 1e-5  # relative tolerance on a loss (the cases are float64, except one float32 case)


def _prototypes() -> torch.Tensor:
    bitmaps = rbf_prototypes()
    return torch.tensor(bitmaps.reshape(len(bitmaps), -1), dtype=torch.float64)  # (10, 84)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _near_codes(labels: list[int], noise: float, seed: int) -> torch.Tensor:
    """F6-like states: the codes of ``labels`` plus Gaussian noise, float64 ``(len(labels), 84)``."""
    w = _prototypes()
    return w[labels] + noise * torch.randn(len(labels), w.shape[1], generator=_generator(seed), dtype=torch.float64)


def _penalties(states: torch.Tensor) -> torch.Tensor:
    return torch.cdist(states, _prototypes()) ** 2


# --------------------------------------------------------------------------------------------
# Descriptions of tensors, and comparisons
# --------------------------------------------------------------------------------------------

def _expect_loss(got: Any, want: float, expr: str, *, underflow_note: bool = False) -> None:
    """``got`` is a 0-d torch tensor close to ``want``, and stays differentiable."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{expr} should return a 0-d torch tensor (so that .backward() works), got {describe(got)}")
    if got.dim() != 0:
        raise CheckFailed(f"{expr} should be a single number, the mean over the batch (a tensor of shape ()), "
                          f"got shape {tuple(got.shape)}")
    value = got.item()
    if not math.isfinite(value):
        note = (": a penalty this large makes exp(-y) underflow to 0, and log(0) is -inf"
                if underflow_note else "")
        raise CheckFailed(f"{expr} should be about {want:.6g}, got {value}{note}")
    expect_close(value, want, expr, rtol=_RTOL)


def _expect_differentiable(fn: Any, name: str, args: tuple, description: str,
                           reference: Callable[..., torch.Tensor]) -> None:
    """``fn(*args)`` backpropagates to the penalties (args[0]) the same gradient as ``reference``."""
    def gradient(penalties: torch.Tensor, *rest: Any) -> torch.Tensor:
        penalties = penalties.clone().requires_grad_(True)
        loss = fn(penalties, *rest)
        if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
            raise CheckFailed(f"{name}({description}) returned a number that has lost its gradient: compute it "
                              "with torch operations on the penalties (no .item(), float(), .numpy() or .detach())")
        (grad,) = torch.autograd.grad(loss, penalties, allow_unused=True)
        if grad is None:
            raise CheckFailed(f"{name}({description}) does not depend on the penalties it was given")
        return grad

    got = call(gradient, name, args, description)
    penalties = args[0].clone().requires_grad_(True)
    (want,) = torch.autograd.grad(reference(penalties, *args[1:]), penalties)
    expect_tensor(got, want, f"the gradient of {name}({description}) with respect to the penalties", atol=1e-5)


# --------------------------------------------------------------------------------------------
# 05.1 RBF penalties for a batch
# --------------------------------------------------------------------------------------------

def rbf_cases() -> list[tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(description, (x, prototypes)) for 05.1: the paper's sizes and others, float64."""
    w = _prototypes()
    small = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0, 1.0], [-2.0, 0.0, 2.0, 0.0, -2.0]],
                         dtype=torch.float64)
    two = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    return [
        ("x = the code of 3 alone, against the ten prototypes", (w[3:4].clone(), w)),
        ("x = 4 noisy codes, against the ten prototypes", (_near_codes([1, 7, 0, 6], 0.5, 1), w)),
        ("x = 3 all-zero F6 states, against the ten prototypes", (torch.zeros(3, w.shape[1], dtype=torch.float64), w)),
        ("x = 12 random states (more states than classes)",
         (1.7 * (2 * torch.rand(12, w.shape[1], generator=_generator(2), dtype=torch.float64) - 1), w)),
        ("x of shape (3, 5) against 2 prototypes of length 5", (small, two)),
    ]


@exercise("05.1", "RBF penalties for a batch", names=("rbf_penalties",),
          hint="Give x and prototypes one new axis each (None in an index) so that broadcasting forms "
               "every (sample, class) difference at once, shape (N, K, D); square, then sum over the input "
               "axis: one row of K penalties per sample. Do not assume 10 classes or 84 inputs.")
def _rbf_penalties(rbf_penalties: Any) -> None:
    for description, (x, prototypes) in rbf_cases():
        got = call(rbf_penalties, "rbf_penalties", (x, prototypes), description)
        expect_tensor(got, torch.cdist(x, prototypes) ** 2, f"rbf_penalties({description})", atol=1e-4)


# --------------------------------------------------------------------------------------------
# 05.2 and 05.3: the criteria
# --------------------------------------------------------------------------------------------

def penalty_batches() -> list[tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(description, (penalties, targets)) shared by 05.2, 05.3 and 05.5."""
    confused = _penalties(0.55 * _prototypes()[[0]] + 0.45 * _prototypes()[[6]])
    scaled = torch.tensor([[3.0, 1.0, 7.0], [2.0, 9.0, 4.0], [6.0, 5.0, 0.5], [8.0, 8.5, 1.0],
                           [0.0, 2.0, 2.0], [4.0, 1.0, 3.0]], dtype=torch.float64)
    return [
        ("penalties of 4 noisy codes, targets [2, 5, 9, 4]",
         (_penalties(_near_codes([2, 5, 9, 4], 0.4, 3)), torch.tensor([2, 5, 9, 4]))),
        ("penalties of 5 states, two of them misclassified, targets [3, 8, 8, 0, 1]",
         (_penalties(_near_codes([3, 3, 8, 6, 1], 0.3, 4)), torch.tensor([3, 8, 8, 0, 1]))),
        ("the penalties of one 6 whose F6 state is nearer the code of 0, target [6]", (confused, torch.tensor([6]))),
        ("6 samples with only 3 classes, targets [1, 0, 2, 2, 0, 1]", (scaled, torch.tensor([1, 0, 2, 2, 0, 1]))),
    ]


@exercise("05.2", "The MSE criterion", names=("mse_loss",),
          hint="Pick, in each row, the penalty of that row's target class (index the rows with "
               "torch.arange(N) and the columns with targets, or use gather), then average over the batch; "
               "keep it a tensor (no .item()) so that .backward() works.")
def _mse_loss(mse_loss: Any) -> None:
    batches = penalty_batches()
    for description, (penalties, targets) in batches:
        got = call(mse_loss, "mse_loss", (penalties, targets), description)
        _expect_loss(got, mse_criterion(penalties, targets).item(), f"mse_loss({description})")
    description, args = batches[1]
    _expect_differentiable(mse_loss, "mse_loss", args, description, mse_criterion)


def _large_batches() -> list[tuple[str, tuple]]:
    """(description, (penalties, targets, j)): penalties so large that exp(-y) underflows."""
    far = torch.tensor([[1000.0, 1010.0, 1003.0, 1020.0], [1500.0, 1490.0, 1495.0, 1499.0]], dtype=torch.float64)
    float32 = (_penalties(1.6 * (2 * torch.rand(3, 84, generator=_generator(5), dtype=torch.float64) - 1)) + 40).float()
    return [
        ("penalties around 1,000 and 1,500 (float64), targets [0, 2], j = 2000",
         (far, torch.tensor([0, 2]), 2000.0)),
        ("penalties around 1,000 and 1,500 (float64), targets [0, 2], j = math.inf",
         (far, torch.tensor([0, 2]), math.inf)),
        ("float32 penalties of 3 random F6 states (all above 150), targets [4, 1, 7], j = math.inf",
         (float32, torch.tensor([4, 1, 7]), math.inf)),
    ]


def map_cases() -> list[tuple[str, tuple]]:
    """(description, (penalties, targets, j)) for 05.3 and 05.5."""
    small = [(f"{d}, j = {j:g}", (p, t, j)) for (d, (p, t)), j in zip(penalty_batches(), (10.0, 10.0, 10.0, 1.0))]
    description, (penalties, targets) = penalty_batches()[0]
    return small + [
        (f"{description}, j = 0", (penalties, targets, 0.0)),
        (f"{description}, j = math.inf", (penalties, targets, math.inf)),
    ] + _large_batches()


@exercise("05.3", "The MAP criterion, numerically stable", names=("map_loss",),
          hint="log(e^-j + sum_i e^-y_i) is a log-sum-exp of K + 1 numbers, the -y_i and -j; "
               "torch.logsumexp computes one without underflow (or factor out the largest term yourself). "
               "Never exp() the penalties directly: e^-y is 0 for large penalties. Then add each row's "
               "penalty of its target class and average over the batch.")
def _map_loss(map_loss: Any) -> None:
    cases = map_cases()
    for description, args in cases:
        got = call(map_loss, "map_loss", args, description)
        _expect_loss(got, map_criterion(*args).item(), f"map_loss({description})", underflow_note=True)
    for description, args in (cases[1], cases[-1]):
        _expect_differentiable(map_loss, "map_loss", args, description, map_criterion)


# --------------------------------------------------------------------------------------------
# 05.4 classify, with rejection
# --------------------------------------------------------------------------------------------

def _reference_classify(penalties: torch.Tensor, max_penalty: float | None = None) -> torch.Tensor:
    smallest, classes = penalties.min(dim=1)
    return classes if max_penalty is None else torch.where(smallest > max_penalty, -1, classes)


def classify_cases() -> list[tuple[str, tuple]]:
    """(description, (penalties, max_penalty)) for 05.4."""
    near = _penalties(_near_codes([7, 2, 0, 5], 0.4, 6))
    many = _penalties(_near_codes([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], 0.5, 7))
    mixed = torch.cat([_penalties(_near_codes([4], 0.3, 8)),
                       _penalties(1.6 * (2 * torch.rand(1, 84, generator=_generator(9), dtype=torch.float64) - 1)),
                       _penalties(_near_codes([9], 0.5, 10))])
    exact = torch.tensor([[50.0, 30.0, 44.0], [31.0, 60.0, 35.0]], dtype=torch.float64)
    return [
        ("penalties of 4 noisy codes, max_penalty=None", (near, None)),
        ("penalties of 12 noisy codes (more rows than classes), max_penalty=None", (many, None)),
        ("penalties of 3 F6 states, the second random noise far from every code, max_penalty=60", (mixed, 60.0)),
        ("a first row whose smallest penalty equals max_penalty=30 (kept) and a second above it (rejected)",
         (exact, 30.0)),
        ("the penalties of one random F6 state, max_penalty=None (no rejection)", (mixed[1:2], None)),
    ]


CLASSIFY_HINT = ("The class of a row is the index of its smallest penalty (argmin along dim=1, not argmax: "
                 "a penalty is a distance); where that smallest penalty is greater than max_penalty put -1 "
                 "instead (torch.where), and reject nothing when max_penalty is None.")


@exercise("05.4", "Classify from the penalties, with rejection", names=("classify",), hint=CLASSIFY_HINT)
def _classify(classify: Any) -> None:
    for description, args in classify_cases():
        got = call(classify, "classify", args, description)
        expect_tensor(got, _reference_classify(*args), f"classify({description})", atol=1e-4)


# --------------------------------------------------------------------------------------------
# 05.5 the MAP criterion's gradient by hand
# --------------------------------------------------------------------------------------------

def _reference_map_gradient(penalties: torch.Tensor, targets: torch.Tensor, j: float) -> torch.Tensor:
    penalties = penalties.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(map_criterion(penalties, targets, j), penalties)
    return grad


@exercise("05.5", "The MAP criterion's gradient by hand", names=("map_gradient",),
          hint="For one sample, dE/dy_i = [i == D] - e^-y_i / (e^-j + sum_k e^-y_k). Get the fractions "
               "from a softmax over the K + 1 numbers -y_1, ..., -y_K, -j (then drop the rubbish column) "
               "so that large penalties do not give 0/0, and divide by N: the criterion is a mean.")
def _map_gradient(map_gradient: Any) -> None:
    for description, args in map_cases():
        got = call(map_gradient, "map_gradient", args, description)
        expect_tensor(got, _reference_map_gradient(*args), f"map_gradient({description})", atol=1e-5)
