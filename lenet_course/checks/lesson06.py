"""Checks for the exercises of lesson 06 (assemble and train): solutions/06_training.ipynb.

06.1 one training step, 06.2 the error rate from logits or RBF penalties, 06.3 the paper's
learning-rate schedule, 06.4 SDLM's per-weight update. The references are a step written out
here (06.1), argmax/argmin (06.2), :func:`lenet_course.paper.learning_rate` (06.3) and the
package's optimizer :class:`lenet_course.training.SDLM` (06.4). Everything runs on small torch
tensors on the CPU; no data is loaded.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F

from lenet_course.checks import (
    CheckFailed, call, describe, exercise, expect_close, expect_raises, expect_tensor,
)
from lenet_course.losses import map_criterion
from lenet_course.models import lenet5
from lenet_course.paper import EPOCHS, MU, learning_rate
from lenet_course.training import SDLM

__all__ = ["step_cases", "error_cases", "SCHEDULE_EPOCHS", "sdlm_cases"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# 06.1 one training step
# --------------------------------------------------------------------------------------------

def _images(n: int, seed: int) -> torch.Tensor:
    """``n`` made-up 32x32 inputs in the paper's range (-0.1 .. 1.175)."""
    return -0.1 + 1.275 * torch.rand(n, 1, 32, 32, generator=_generator(seed))


def _labels(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 10, (n,), generator=_generator(seed))


def _setup(variant: str, optimizer: str, n: int, seed: int, stale: bool) -> tuple:
    """(model, optimizer, x, y, loss_fn, stale batch or None): a fresh seeded setup for one case."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = lenet5(variant)
    opt = (torch.optim.SGD(model.parameters(), lr=0.1) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    loss_fn = map_criterion if variant == "paper" else F.cross_entropy
    previous = (_images(n, seed + 100), _labels(n, seed + 100)) if stale else None
    return model, opt, _images(n, seed), _labels(n, seed), loss_fn, previous


def step_cases() -> list[tuple[str, tuple]]:
    """(description, setup) for 06.1; each setup is built fresh by :func:`_setup`."""
    return [
        ("the modern LeNet-5, SGD with lr 0.1, cross-entropy, 8 digits", ("modern", "sgd", 8, 0, False)),
        ("the paper's LeNet-5, Adam with lr 0.001, the MAP criterion, 4 digits", ("paper", "adam", 4, 1, False)),
        ("the modern LeNet-5 whose .grad still holds the gradients of an earlier batch, SGD, 8 digits",
         ("modern", "sgd", 8, 2, True)),
    ]


def _prepare(model, loss_fn, previous) -> None:
    """Leave the gradients of an earlier batch in ``.grad``, as a loop that forgot zero_grad would."""
    if previous is not None:
        loss_fn(model(previous[0]), previous[1]).backward()


def _reference_step(model, optimizer, x, y, loss_fn) -> float:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _after_step(step: Callable) -> Callable:
    """``(model, optimizer, x, y, loss_fn, previous) -> (returned value, model after the step)``."""
    def run(model, optimizer, x, y, loss_fn, previous):
        _prepare(model, loss_fn, previous)
        return step(model, optimizer, x, y, loss_fn), model
    return run


@exercise("06.1", "One training step", names=("train_step",),
          hint="In this order: clear the optimizer's gradients, compute the loss of the model's outputs on x "
               "against y, backpropagate it, let the optimizer update the parameters; return the loss (before "
               "the update) as a Python float, with .item().")
def _train_step(train_step: Any) -> None:
    if not callable(train_step):
        raise CheckFailed(f"`train_step` should be a function, got {describe(train_step)}")
    for description, spec in step_cases():
        setup = _setup(*spec)
        start = {name: p.detach().clone() for name, p in setup[0].named_parameters()}
        want_loss, want_model = _after_step(_reference_step)(*copy.deepcopy(setup))
        got_loss, got_model = call(_after_step(train_step), "train_step", setup, description)
        expr = f"train_step({description})"
        if isinstance(got_loss, torch.Tensor):
            raise CheckFailed(f"{expr} should return the loss as a Python float (loss.item()), got "
                              f"{describe(got_loss)}")
        if got_loss is None:
            raise CheckFailed(f"{expr} should return the loss as a Python float (loss.item()), got None")
        expect_close(got_loss, want_loss, f"the loss returned by {expr} (computed before the update)", rtol=1e-5)
        got, want = dict(got_model.named_parameters()), dict(want_model.named_parameters())
        if all(torch.equal(got[name].detach(), start[name]) for name in start):
            raise CheckFailed(f"after {expr} the parameters have not changed: the optimizer made no update")
        for name in start:
            gap = (got[name].detach() - want[name].detach()).abs().max().item()
            if not gap <= 1e-6:
                raise CheckFailed(f"after {expr}, {name} differs from one correct step by up to {gap:.3g}")


# --------------------------------------------------------------------------------------------
# 06.2 the error rate
# --------------------------------------------------------------------------------------------

def _reference_error_rate(outputs: torch.Tensor, labels: torch.Tensor, head: str) -> float:
    predicted = outputs.argmax(dim=1) if head == "linear" else outputs.argmin(dim=1)
    return (predicted != labels.long()).float().mean().item()


def _scores_with(labels: list[int], wrong: set[int], seed: int, head: str) -> torch.Tensor:
    """Outputs for ``labels``: right except at the indices in ``wrong``; logits or penalties."""
    g = _generator(seed)
    logits = torch.randn(len(labels), 10, generator=g, dtype=torch.float64)
    for i, label in enumerate(labels):
        winner = (label + 1 + i % 9) % 10 if i in wrong else label
        logits[i, winner] = logits[i].max() + 1.0 + torch.rand(1, generator=g, dtype=torch.float64).item()
    return logits if head == "linear" else 84.0 - 10.0 * logits  # penalties: the largest logit is the smallest


def error_cases() -> list[tuple[str, tuple]]:
    """(description, (outputs, labels, head)) for 06.2."""
    eight = [3, 1, 4, 1, 5, 9, 2, 6]
    random_logits = torch.randn(1000, 10, generator=_generator(7))
    return [
        ("logits of 8 digits, 2 of them wrong, head='linear'",
         (_scores_with(eight, {1, 6}, 3, "linear"), torch.tensor(eight), "linear")),
        ("RBF penalties of 8 digits, 3 of them wrong, head='rbf'",
         (_scores_with(eight, {0, 2, 7}, 4, "rbf"), torch.tensor(eight), "rbf")),
        ("RBF penalties of 5 digits, all right, with uint8 labels as MNIST stores them, head='rbf'",
         (_scores_with([0, 7, 7, 2, 9], set(), 5, "rbf"), torch.tensor([0, 7, 7, 2, 9], dtype=torch.uint8), "rbf")),
        ("logits of 4 digits, all wrong, head='linear'",
         (_scores_with([8, 0, 6, 4], {0, 1, 2, 3}, 6, "linear"), torch.tensor([8, 0, 6, 4]), "linear")),
        ("random logits of 1,000 digits, head='linear'", (random_logits, _labels(1000, 8), "linear")),
        ("the same 1,000 random numbers read as RBF penalties, head='rbf'", (random_logits, _labels(1000, 8), "rbf")),
    ]


@exercise("06.2", "The error rate from logits or penalties", names=("error_rate",),
          hint="The predicted class of a row is the index of its largest logit (head 'linear') but of its "
               "smallest penalty (head 'rbf': a penalty is a distance), along dim 1; the error rate is the "
               "fraction of predictions that differ from the labels, between 0 and 1 (0.25, not 25). Raise "
               "ValueError for any other head.")
def _error_rate(error_rate: Any) -> None:
    for description, args in error_cases():
        got = call(error_rate, "error_rate", args, description)
        expr = f"error_rate({description})"
        if isinstance(got, torch.Tensor) and got.dim() != 0:
            raise CheckFailed(f"{expr} should be a single number, the fraction of wrong predictions, got "
                              f"{describe(got)}")
        expect_close(got, _reference_error_rate(*args), expr, rtol=1e-6)
    outputs, labels, _ = error_cases()[0][1]
    expect_raises(error_rate, "error_rate", (outputs, labels, "softmax"), "logits of 8 digits, head='softmax'",
                  ValueError)


# --------------------------------------------------------------------------------------------
# 06.3 the paper's schedule
# --------------------------------------------------------------------------------------------

SCHEDULE_EPOCHS = tuple(range(EPOCHS + 6))  # 0..25: the 20 passes, then a few more at the last rate


@exercise("06.3", "The paper's learning-rate schedule", names=("paper_eta",),
          hint="Passes are counted from 0: 0.0005 for passes 0-1, 0.0002 for 2-4, 0.0001 for 5-7, 0.00005 for "
               "8-11, then 0.00001 from pass 12 on, also after the 20th pass (no error, no index past the end).")
def _paper_eta(paper_eta: Any) -> None:
    for epoch in SCHEDULE_EPOCHS:
        got = call(paper_eta, "paper_eta", (epoch,), str(epoch))
        expect_close(got, learning_rate(epoch), f"paper_eta({epoch})", rtol=1e-9)


# --------------------------------------------------------------------------------------------
# 06.4 SDLM's per-weight update
# --------------------------------------------------------------------------------------------

def _reference_sdlm(weights: torch.Tensor, grads: torch.Tensor, curvature: torch.Tensor, eta: float,
                    mu: float = MU) -> torch.Tensor:
    """One step of the package's SDLM optimizer on a copy of ``weights``."""
    w = torch.nn.Parameter(weights.clone())
    w.grad = grads.clone()
    optimizer = SDLM([("w", w)], lr=eta, mu=mu)
    optimizer.set_curvature({"w": curvature})
    optimizer.step()
    return w.detach()


def sdlm_cases() -> list[tuple[str, tuple]]:
    """(description, (weights, grads, curvature, eta, mu)) for 06.4, float64."""
    g = _generator(11)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    spread = torch.logspace(-4, 1, 12, dtype=torch.float64).reshape(3, 4)  # 1e-4 .. 10
    return [
        ("5 weights whose curvature is 0 (every step is eta / mu), eta = 0.0005, mu = 0.02",
         (rand(5), rand(5), torch.zeros(5, dtype=torch.float64), 0.0005, 0.02)),
        ("a 3x4 weight matrix with curvatures from 0.0001 to 10, eta = 0.0005, mu = 0.02",
         (rand(3, 4), rand(3, 4), spread, 0.0005, 0.02)),
        ("6 C1-like 5x5 kernels with random curvatures, eta = 0.0002, mu = 0.02",
         (rand(6, 1, 5, 5), rand(6, 1, 5, 5), rand(6, 1, 5, 5).abs() * 0.05, 0.0002, 0.02)),
        ("the same 3x4 matrix with a larger damping, eta = 0.01, mu = 0.5", (rand(3, 4), rand(3, 4), spread, 0.01, 0.5)),
    ]


@exercise("06.4", "SDLM's per-weight update", names=("sdlm_update",),
          hint="Each weight moves against its own gradient, by eta divided by (mu plus its own curvature): "
               "elementwise tensor arithmetic, with parentheses around the sum in the denominator; subtract "
               "from the weights and return the result, a new tensor of the weights' shape.")
def _sdlm_update(sdlm_update: Any) -> None:
    for description, args in sdlm_cases():
        got = call(sdlm_update, "sdlm_update", args, description)
        expect_tensor(got, _reference_sdlm(*args), f"sdlm_update({description})", atol=1e-12)
