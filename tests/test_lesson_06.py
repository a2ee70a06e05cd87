"""Lesson 06 (assemble and train): the exercise checks of lenet_course/checks/lesson06.py, called
directly from Python, and the learning-curves plot the lesson added to lenet_course.plots."""
from __future__ import annotations

import inspect
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lenet_course.checks import get_exercise, lesson06, lesson_exercises  # noqa: E402
from lenet_course.paper import learning_rate  # noqa: E402
from lenet_course.plots import learning_curves  # noqa: E402
from lenet_course.training import History  # noqa: E402

from exercise_testing import (  # noqa: E402
    assert_missing_name,
    assert_fails_in_one_line, assert_fails_with, assert_nothing_leaks, assert_stub_not_attempted,
    notebook_namespace, printed_lines, run_check, solution_lines,
)

SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "06_training.ipynb"
IDS = ["06.1", "06.2", "06.3", "06.4"]


@pytest.fixture(scope="module")
def solved() -> dict:
    """The namespace of the solution notebook run in this process, check cells left out."""
    return notebook_namespace(SOLUTION)


# --------------------------------------------------------------------------------------------
# Registry, the reference solutions, the cases
# --------------------------------------------------------------------------------------------

def test_lesson_06_registers_four_exercises():
    exercises = lesson_exercises("06")
    assert [e.id for e in exercises] == IDS
    assert all(e.title and e.hint and e.names for e in exercises)
    assert [e.names for e in exercises] == [("train_step",), ("error_rate",), ("paper_eta",), ("sdlm_update",)]


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


def test_the_cases_are_what_their_descriptions_say():
    rates = [lesson06._reference_error_rate(*args) for _, args in lesson06.error_cases()]
    assert rates[:4] == [2 / 8, 3 / 8, 0.0, 1.0]
    outputs, labels, _ = lesson06.error_cases()[-1][1]
    assert outputs.argmax(1).ne(outputs.argmin(1)).all()  # the same numbers read as logits or penalties differ
    assert lesson06.error_cases()[2][1][1].dtype == torch.uint8
    assert lesson06.SCHEDULE_EPOCHS[0] == 0 and lesson06.SCHEDULE_EPOCHS[-1] > 20
    assert (lesson06.sdlm_cases()[0][1][2] == 0).all()
    curvatures = lesson06.sdlm_cases()[1][1][2]
    assert math.isclose(curvatures.min().item(), 1e-4) and math.isclose(curvatures.max().item(), 10.0)


def test_the_stale_gradients_case_really_holds_gradients():
    description, spec = lesson06.step_cases()[2]
    model, optimizer, x, y, loss_fn, previous = lesson06._setup(*spec)
    assert ".grad still holds" in description and previous is not None
    lesson06._prepare(model, loss_fn, previous)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_sdlm_reference_is_the_formula():
    for _, (w, g, h, eta, mu) in lesson06.sdlm_cases():
        assert torch.allclose(lesson06._reference_sdlm(w, g, h, eta, mu), w - eta / (mu + h) * g, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------------------------
# Wrong answers
# --------------------------------------------------------------------------------------------

def _step_without_zero_grad(model, optimizer, x, y, loss_fn):
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_without_update(model, optimizer, x, y, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    return loss.item()


def _step_before_backward(model, optimizer, x, y, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    optimizer.step()
    loss.backward()
    return loss.item()


def _step_returning_the_tensor(model, optimizer, x, y, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def _step_returning_nothing(model, optimizer, x, y, loss_fn):
    _step_returning_the_tensor(model, optimizer, x, y, loss_fn)


def _step_returning_the_new_loss(model, optimizer, x, y, loss_fn):
    _step_returning_the_tensor(model, optimizer, x, y, loss_fn)
    with torch.no_grad():
        return loss_fn(model(x), y).item()


def _step_on_scores(model, optimizer, x, y, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model.scores(x), y)  # minus the penalties: wrong for the RBF criteria
    loss.backward()
    optimizer.step()
    return loss.item()


def _predicted(outputs, head):
    return outputs.argmax(dim=1) if head == "linear" else outputs.argmin(dim=1)


def _error_rate_no_value_error(outputs, labels, head):
    predicted = outputs.argmax(dim=1) if head == "linear" else outputs.argmin(dim=1)
    return (predicted != labels.long()).float().mean().item()


def _eta_list(epoch):
    return ([0.0005] * 2 + [0.0002] * 3 + [0.0001] * 3 + [0.00005] * 4 + [0.00001] * 8)[epoch]


def _sdlm_in_place(weights, grads, curvature, eta, mu=0.02):
    weights -= eta / (mu + curvature) * grads


STEP_SGD = "train_step(the modern LeNet-5, SGD with lr 0.1, cross-entropy, 8 digits)"
STEP_MAP = "train_step(the paper's LeNet-5, Adam with lr 0.001, the MAP criterion, 4 digits)"
STEP_STALE = "train_step(the modern LeNet-5 whose .grad still holds the gradients of an earlier batch, SGD, 8 digits)"
ERR_LOGITS = "error_rate(logits of 8 digits, 2 of them wrong, head='linear')"
ERR_RBF = "error_rate(RBF penalties of 8 digits, 3 of them wrong, head='rbf')"
SDLM_ZERO = "sdlm_update(5 weights whose curvature is 0 (every step is eta / mu), eta = 0.0005, mu = 0.02)"

WRONG = [
    ("06.1", {"train_step": _step_without_zero_grad}, f"after {STEP_STALE}, c1.weight differs from one correct step by up to"),
    ("06.1", {"train_step": _step_without_update},
     f"after {STEP_SGD} the parameters have not changed: the optimizer made no update"),
    ("06.1", {"train_step": _step_before_backward},
     f"after {STEP_SGD} the parameters have not changed: the optimizer made no update"),
    ("06.1", {"train_step": _step_returning_the_tensor},
     f"{STEP_SGD} should return the loss as a Python float (loss.item()), got a tensor of shape () and dtype torch.float32"),
    ("06.1", {"train_step": _step_returning_nothing}, f"{STEP_SGD} should return the loss as a Python float (loss.item()), got None"),
    ("06.1", {"train_step": _step_returning_the_new_loss},
     f"the loss returned by {STEP_SGD} (computed before the update) should be about"),
    ("06.1", {"train_step": _step_on_scores}, f"the loss returned by {STEP_MAP} (computed before the update) should be about"),
    ("06.1", {"train_step": 3}, "`train_step` should be a function, got int 3"),
    ("06.2", {"error_rate": lambda o, t, head: (o.argmax(dim=1) != t).float().mean().item()},
     f"{ERR_RBF} should be about 0.375, got"),
    ("06.2", {"error_rate": lambda o, t, head: 100 * (_predicted(o, head) != t).float().mean().item()},
     f"{ERR_LOGITS} should be about 0.25, got 25"),
    ("06.2", {"error_rate": lambda o, t, head: (_predicted(o, head) == t).float().mean().item()},
     f"{ERR_LOGITS} should be about 0.25, got 0.75"),
    ("06.2", {"error_rate": lambda o, t, head: int((_predicted(o, head) != t).sum())}, f"{ERR_LOGITS} should be about 0.25, got 2"),
    ("06.2", {"error_rate": lambda o, t, head: (_predicted(o, head) != t).float()},
     f"{ERR_LOGITS} should be a single number, the fraction of wrong predictions, got a tensor of shape (8,)"),
    ("06.2", {"error_rate": _error_rate_no_value_error},
     "error_rate(logits of 8 digits, head='softmax') should raise ValueError, but returned float"),
    ("06.3", {"paper_eta": lambda epoch: learning_rate(epoch - 1) if epoch else 0.0005},
     "paper_eta(2) should be about 0.0002, got 0.0005"),
    ("06.3", {"paper_eta": _eta_list}, "paper_eta(20) raised IndexError: list index out of range"),
    ("06.3", {"paper_eta": lambda epoch: 0.0005 * 0.5 ** (epoch // 2)}, "paper_eta(2) should be about 0.0002, got 0.00025"),
    ("06.4", {"sdlm_update": lambda w, g, h, eta, mu=0.02: w - eta / mu + h * g}, f"{SDLM_ZERO}: 5 of 5 values differ"),
    ("06.4", {"sdlm_update": lambda w, g, h, eta, mu=0.02: w + eta / (mu + h) * g}, f"{SDLM_ZERO}: 5 of 5 values differ"),
    ("06.4", {"sdlm_update": lambda w, g, h, eta, mu=0.02: w - eta * (mu + h) * g}, f"{SDLM_ZERO}: 5 of 5 values differ"),
    ("06.4", {"sdlm_update": lambda w, g, h, eta, mu=0.02: w - eta / (mu + h.mean()) * g},
     "sdlm_update(a 3x4 weight matrix with curvatures from 0.0001 to 10, eta = 0.0005, mu = 0.02): 12 of 12 values differ"),
    ("06.4", {"sdlm_update": lambda w, g, h, eta, mu=0.02: w - eta / h * g}, f"{SDLM_ZERO}: 5 of 5 values differ"),
    ("06.4", {"sdlm_update": lambda w, g, h, eta, mu=0.02: (w - eta / (mu + h) * g).numpy()},
     f"{SDLM_ZERO} should return a torch tensor, got an array of shape (5,) and dtype float64 (use torch operations"),
    ("06.4", {"sdlm_update": _sdlm_in_place}, f"{SDLM_ZERO} should return a torch tensor, got None"),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


def test_a_raising_function_fails_naming_the_exception(ns, capsys):
    def train_step(model, optimizer, x, y, loss_fn):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    assert_fails_in_one_line("06.1", {**ns, "train_step": train_step},
                             f"{STEP_SGD} raised RuntimeError: mat1 and mat2 shapes cannot be multiplied", capsys)


def test_the_check_works_on_copies(ns, capsys):
    """The learner's function gets copies: what it does to them never reaches the next case."""
    seen = []

    def train_step(model, optimizer, x, y, loss_fn):
        seen.append(model)
        return ns_step(model, optimizer, x, y, loss_fn)
    ns_step = ns["train_step"]
    ns["train_step"] = train_step
    result, _ = run_check("06.1", ns, capsys)
    assert result.status == "passed"
    assert len({id(m) for m in seen}) == len(lesson06.step_cases())


def test_a_missing_function_is_named(ns, capsys):
    assert_missing_name("06.2", ns, "error_rate", capsys)


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_stub_is_not_attempted(exercise_id, ns, capsys):
    assert_stub_not_attempted(exercise_id, ns, capsys)


def _solution_lines() -> set[str]:
    """The solution regions' lines, and every computing line of the references (not only those with
    a return or an =), for the leak test."""
    references = (lesson06._reference_step, lesson06._reference_error_rate, lesson06._reference_sdlm)
    lines = {line.strip() for reference in references for line in inspect.getsource(reference).splitlines()}
    return solution_lines([SOLUTION]) | {line for line in lines
                                          if len(line) >= 12 and not line.startswith(('"""', "def "))}


def test_messages_never_show_the_solution(ns, capsys):
    assert_nothing_leaks(printed_lines(WRONG, lambda exercise_id: ns, capsys), _solution_lines())


# --------------------------------------------------------------------------------------------
# The learning curves
# --------------------------------------------------------------------------------------------

def _history(n: int, test: bool = True) -> History:
    errors = list(np.geomspace(0.5, 0.01, n))
    return History(epoch=list(range(1, n + 1)), lr=[0.01] * n, train_loss=list(np.geomspace(2.0, 0.05, n)),
                   train_error=errors, test_loss=list(np.geomspace(1.0, 0.04, n)) if test else [],
                   test_error=[e * 0.8 for e in errors] if test else [], seconds=[1.0] * n)


def test_learning_curves_draws_a_loss_and_two_error_lines_perrun_check():
    fig = learning_curves({"modern": _history(4), "paper": _history(3)}, title="t")
    try:
        loss_ax, error_ax = fig.axes
        assert len(loss_ax.lines) == 2 and len(error_ax.lines) == 4   # train and test error for each run
        assert loss_ax.get_yscale() == error_ax.get_yscale() == "log"
        assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["modern", "paper"]
        assert [t.get_text() for t in error_ax.get_legend().get_texts()] == ["test", "train (during the pass)"]
        assert np.allclose(error_ax.lines[1].get_ydata(), [100 * e * 0.8 for e in _history(4).train_error])  # percent
        assert all(label.get_text().endswith("%") for label in error_ax.get_yticklabels() if label.get_text())
        assert fig._suptitle.get_text() == "t"
    finally:
        plt.close(fig)


def test_learning_curves_takes_one_history_without_a_test_set():
    fig = learning_curves(_history(2, test=False))
    try:
        loss_ax, error_ax = fig.axes
        assert len(loss_ax.lines) == 1 and len(error_ax.lines) == 1
        assert loss_ax.get_legend() is None
    finally:
        plt.close(fig)


def test_learning_curves_refuses_empty_or_inconsistent_histories():
    with pytest.raises(ValueError, match="no completed pass"):
        learning_curves(History())
    broken = _history(3)
    broken.test_error.pop()
    with pytest.raises(ValueError, match="different lengths"):
        learning_curves({"broken": broken})
    with pytest.raises(ValueError, match="at least one"):
        learning_curves({})
