"""Lesson 05 (the RBF output and the loss): the exercise checks of lenet_course/checks/lesson05.py,
called directly from Python, and the plotting helpers the lesson added to lenet_course.plots."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lenet_course.checks import get_exercise, lesson05, lesson_exercises  # noqa: E402
from lenet_course.layers import rbf  # noqa: E402
from lenet_course.losses import map_criterion, mse_criterion  # noqa: E402
from lenet_course.plots import grouped_bars, heatmap  # noqa: E402

from exercise_testing import (  # noqa: E402
    assert_missing_name,
    assert_fails_in_one_line, assert_fails_with, assert_nothing_leaks, assert_stub_not_attempted,
    notebook_namespace, printed_lines, run_check, solution_lines,
)

SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "05_rbf_loss.ipynb"
IDS = ["05.1", "05.2", "05.3", "05.4", "05.5"]


@pytest.fixture(scope="module")
def solved() -> dict:
    """The namespace of the solution notebook run in this process, check cells left out."""
    return notebook_namespace(SOLUTION)


def _rows(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return y[torch.arange(len(t)), t]


# --------------------------------------------------------------------------------------------
# Registry and the reference solutions
# --------------------------------------------------------------------------------------------

def test_lesson_05_registers_five_exercises():
    exercises = lesson_exercises("05")
    assert [e.id for e in exercises] == IDS
    assert all(e.title and e.hint and e.names for e in exercises)
    assert [e.names for e in exercises] == [("rbf_penalties",), ("mse_loss",), ("map_loss",), ("classify",),
                                            ("map_gradient",)]


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


def test_the_cases_are_what_their_descriptions_say():
    """The checks' inputs: penalties too large for a naive exp, a kept tie with max_penalty, general sizes."""
    large = lesson05.map_cases()[-3:]
    assert all(float(args[0].min()) > 104 and args[2] >= 2000 for _, args in large)  # exp(-y) = 0 in float32
    assert float(large[0][1][0].min()) > 745                                         # ... and in float64
    assert large[-1][1][0].dtype == torch.float32 and float(large[-1][1][0].min()) > 150
    assert any(args[0].shape[1] != 10 for _, args in lesson05.map_cases())
    assert any(x.shape[1] != 84 and w.shape[0] != 10 for _, (x, w) in lesson05.rbf_cases())
    assert any(x.shape[0] > w.shape[0] for _, (x, w) in lesson05.rbf_cases())
    described = {d: args for d, args in lesson05.classify_cases()}
    exact = next(args for d, args in described.items() if "equals max_penalty" in d)
    assert float(exact[0].min(dim=1).values[0]) == exact[1]
    for description, (penalties, targets) in lesson05.penalty_batches():
        assert penalties.shape == (len(targets), penalties.shape[1]) and targets.dtype == torch.int64, description


# --------------------------------------------------------------------------------------------
# Wrong answers fail, naming the exercise and what was expected
# --------------------------------------------------------------------------------------------

def _map_naive(y, t, j=10.0):
    return (_rows(y, t) + torch.log(math.exp(-j) + torch.exp(-y).sum(dim=1))).mean()


def _map_without_rubbish(y, t, j=10.0):
    return F.cross_entropy(-y, t)


def _map_wrong_sign(y, t, j=10.0):
    rubbish = torch.full_like(y[:, :1], j)
    return (_rows(y, t) + torch.logsumexp(torch.cat([y, rubbish], dim=1), dim=1)).mean()


def _gradient_naive(y, t, j=10.0):
    q = torch.exp(-y) / (math.exp(-j) + torch.exp(-y).sum(dim=1, keepdim=True))
    return (F.one_hot(t, y.shape[1]).to(y.dtype) - q) / len(t)


def _gradient_of_the_sum(y, t, j=10.0):
    q = torch.softmax(torch.cat([-y, torch.full_like(y[:, :1], -j)], dim=1), dim=1)[:, :-1]
    return F.one_hot(t, y.shape[1]).to(y.dtype) - q


def _gradient_without_rubbish(y, t, j=10.0):
    return (F.one_hot(t, y.shape[1]).to(y.dtype) - torch.softmax(-y, dim=1)) / len(t)


def _gradient_descent_direction(y, t, j=10.0):
    q = torch.softmax(torch.cat([-y, torch.full_like(y[:, :1], -j)], dim=1), dim=1)[:, :-1]
    return (q - F.one_hot(t, y.shape[1]).to(y.dtype)) / len(t)


def _classify_at_or_above(y, max_penalty=None):
    smallest, classes = y.min(dim=1)
    return classes if max_penalty is None else torch.where(smallest >= max_penalty, -1, classes)


CODE_3 = "rbf_penalties(x = the code of 3 alone, against the ten prototypes)"
NOISY = "penalties of 4 noisy codes, targets [2, 5, 9, 4]"
MISCLASSIFIED = "penalties of 5 states, two of them misclassified, targets [3, 8, 8, 0, 1]"

WRONG = [
    ("05.1", {"rbf_penalties": lambda x, w: ((w[:, None, :] - x[None, :, :]) ** 2).sum(dim=2)},
     f"{CODE_3} should have shape (1, 10), got (10, 1)"),
    ("05.1", {"rbf_penalties": lambda x, w: ((x[:, None, :] - w[None, :, :]) ** 2).sum(dim=1)},
     f"{CODE_3} should have shape (1, 10), got (1, 84)"),
    ("05.1", {"rbf_penalties": torch.cdist}, f"{CODE_3}: 9 of 10 values differ; first at [0, 0]: expected 112, got 10.583"),
    ("05.1", {"rbf_penalties": lambda x, w: rbf(x.numpy(), w.numpy())},
     f"{CODE_3} should return a torch tensor, got an array of shape (1, 10) and dtype float64 (use torch operations throughout, or convert with torch.as_tensor)"),
    ("05.1", {"rbf_penalties": lambda x, w: ((x.reshape(-1, 1, 84) - w.reshape(1, 10, 84)) ** 2).sum(dim=2)},
     "rbf_penalties(x of shape (3, 5) against 2 prototypes of length 5) raised RuntimeError: shape '[-1, 1, 84]'"),
    ("05.1", {"rbf_penalties": lambda x, w: ((x[:, None, :] - w[None, :, :]) ** 2).sum()},
     f"{CODE_3} should have shape (1, 10), got ()"),
    ("05.2", {"mse_loss": lambda y, t: y.mean()}, f"mse_loss({NOISY}) should be about"),
    ("05.2", {"mse_loss": lambda y, t: y.min(dim=1).values.mean()}, f"mse_loss({MISCLASSIFIED}) should be about"),
    ("05.2", {"mse_loss": lambda y, t: y[:, t].mean()}, f"mse_loss({NOISY}) should be about"),
    ("05.2", {"mse_loss": lambda y, t: _rows(y, t).sum()}, f"mse_loss({NOISY}) should be about"),
    ("05.2", {"mse_loss": lambda y, t: _rows(y, t)},
     f"mse_loss({NOISY}) should be a single number, the mean over the batch (a tensor of shape ()), got shape (4,)"),
    ("05.2", {"mse_loss": lambda y, t: _rows(y, t).mean().item()},
     f"mse_loss({NOISY}) should return a 0-d torch tensor (so that .backward() works), got float"),
    ("05.2", {"mse_loss": lambda y, t: torch.tensor(_rows(y, t).mean().item())},
     f"mse_loss({MISCLASSIFIED}) returned a number that has lost its gradient"),
    ("05.3", {"map_loss": _map_naive},
     "map_loss(penalties around 1,000 and 1,500 (float64), targets [0, 2], j = 2000) should be about 2.52776, "
     "got -inf: a penalty this large makes exp(-y) underflow to 0, and log(0) is -inf"),
    ("05.3", {"map_loss": _map_without_rubbish}, f"map_loss({NOISY}, j = 10) should be about"),
    ("05.3", {"map_loss": _map_wrong_sign}, f"map_loss({NOISY}, j = 10) should be about"),
    ("05.3", {"map_loss": lambda y, t, j=10.0: map_criterion(y, t)}, "map_loss(6 samples with only 3 classes"),
    ("05.4", {"classify": lambda y, max_penalty=None: y.argmax(dim=1)},
     "classify(penalties of 4 noisy codes, max_penalty=None): 4 of 4 values differ"),
    ("05.4", {"classify": lambda y, max_penalty=None: y.argmin(dim=0)},
     "classify(penalties of 4 noisy codes, max_penalty=None) should have shape (4,), got (10,)"),
    ("05.4", {"classify": lambda y, max_penalty=None: y.argmin(dim=1)},
     "classify(penalties of 3 F6 states, the second random noise far from every code, max_penalty=60): 1 of 3 "
     "values differ; first at [1]: expected -1, got"),
    ("05.4", {"classify": _classify_at_or_above},
     "classify(a first row whose smallest penalty equals max_penalty=30 (kept) and a second above it (rejected)): "
     "1 of 2 values differ; first at [0]: expected 1, got -1"),
    ("05.4", {"classify": lambda y, max_penalty=None: y.argmin(dim=1).numpy()},
     "classify(penalties of 4 noisy codes, max_penalty=None) should return a torch tensor, got an array"),
    ("05.4", {"classify": lambda y, max_penalty=None: y.argmin(dim=1).double()},
     "classify(penalties of 4 noisy codes, max_penalty=None) should hold integers, got dtype float64"),
    ("05.5", {"map_gradient": _gradient_of_the_sum}, f"map_gradient({NOISY}, j = 10): 4 of 40 values differ; first at [0, 2]: expected 0.233596, got 0.934386"),
    ("05.5", {"map_gradient": _gradient_without_rubbish}, f"map_gradient({NOISY}, j = 10): "),
    ("05.5", {"map_gradient": _gradient_descent_direction}, f"map_gradient({NOISY}, j = 10): "),
    ("05.5", {"map_gradient": _gradient_naive},
     "map_gradient(penalties around 1,000 and 1,500 (float64), targets [0, 2], j = 2000): 8 of 8 values differ; "
     "first at [0, 0]: expected 0.0237335, got nan"),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


def test_the_naive_map_formula_is_fine_until_the_penalties_are_large(ns):
    """The naive formula agrees on moderate penalties: the check fails it only where it underflows."""
    for description, args in lesson05.map_cases()[:-3]:
        assert math.isclose(_map_naive(*args).item(), map_criterion(*args).item(), rel_tol=1e-9), description
    for description, args in lesson05.map_cases()[-3:]:
        assert _map_naive(*args).item() == -math.inf, description
        assert math.isfinite(ns["map_loss"](*args).item()), description


def test_a_raising_function_fails_naming_the_exception(ns, capsys):
    def map_loss(penalties, targets, j=10.0):
        raise IndexError("index 10 is out of bounds")
    ns["map_loss"] = map_loss
    assert_fails_in_one_line("05.3", ns, f"map_loss({NOISY}, j = 10) raised IndexError: index 10 is out of bounds",
                             capsys)


def test_a_missing_function_is_named(ns, capsys):
    assert_missing_name("05.4", ns, "classify", capsys)


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_stub_is_not_attempted(exercise_id, ns, capsys):
    assert_stub_not_attempted(exercise_id, ns, capsys)


def test_messages_never_show_the_solution(ns, capsys):
    shown = printed_lines(WRONG, lambda exercise_id: ns, capsys)
    references = (mse_criterion, map_criterion, lesson05._reference_classify)
    assert_nothing_leaks(shown, solution_lines([SOLUTION], references))


# --------------------------------------------------------------------------------------------
# The plotting helpers the lesson uses
# --------------------------------------------------------------------------------------------

def test_heatmap_writes_every_value_in_its_cell():
    matrix = np.arange(12.0).reshape(3, 4)
    fig = heatmap(matrix, fmt="{:.0f}", title="t", colorbar="c")
    try:
        ax = fig.axes[0]
        assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in range(12))
        assert len(fig.axes) == 2  # the matrix and its colour bar
        assert ax.get_title() == "t"
    finally:
        plt.close(fig)
    fig = heatmap(torch.eye(3), labels=["a", "b", "c"])
    try:
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="2-D matrix"):
        heatmap(np.zeros(3))
    with pytest.raises(ValueError, match="square matrix"):
        heatmap(np.zeros((2, 3)), labels=["a", "b"])


def test_grouped_bars_draws_one_bar_per_value_and_series():
    fig = grouped_bars({"a": [1.0, -2.0, 3.0], "b": torch.tensor([0.5, 0.5, 0.5])}, labels=["x", "y", "z"])
    try:
        ax = fig.axes[0]
        assert len(ax.patches) == 6
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    finally:
        plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    try:
        assert grouped_bars({"a": [1, 2]}, ax=axes[1]) is fig
        assert len(axes[1].patches) == 2 and len(axes[0].patches) == 0
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="one length"):
        grouped_bars({"a": [1, 2], "b": [1, 2, 3]})
