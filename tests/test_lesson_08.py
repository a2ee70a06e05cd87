"""Lesson 08 (ablations): the exercise checks of lenet_course/checks/lesson08.py, called directly from Python."""
from __future__ import annotations

import dataclasses
import inspect
import statistics
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lenet_course.ablations import gradient_norms
from lenet_course.checks import get_exercise, lesson08, lesson_exercises
from lenet_course.data import BACKGROUND
from lenet_course.losses import map_criterion
from lenet_course.models import MODERN, PAPER

from exercise_testing import (
    assert_fails_in_one_line, assert_fails_with, assert_missing_name, assert_nothing_leaks, assert_stub_not_attempted,
    notebook_namespace, printed_lines, run_check, solution_lines,
)

SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "08_ablations.ipynb"
IDS = ["08.1", "08.2", "08.3", "08.4"]


@pytest.fixture(scope="module")
def solved() -> dict:
    """The namespace of the solution notebook run in this process, check cells left out."""
    return notebook_namespace(SOLUTION)


# --------------------------------------------------------------------------------------------
# Registry, the reference solutions, the cases
# --------------------------------------------------------------------------------------------

def test_lesson_08_registers_four_exercises():
    exercises = lesson_exercises("08")
    assert [e.id for e in exercises] == IDS
    assert all(e.title and e.hint and e.names for e in exercises)
    assert [e.names for e in exercises] == [("one_factor_configs",), ("layer_gradient_norms",), ("summarise",),
                                            ("random_shift",)]


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


def test_the_cases_are_what_their_descriptions_say():
    grids = [lesson08._reference_grid(*args) for _, args in lesson08.grid_cases()]
    assert list(grids[1]) == ["baseline", "pooling=max", "activation=sigmoid", "activation=relu"]  # 'trainable' skipped
    assert list(grids[2]) == ["baseline", "c3=table", "head=rbf", "init=paper"]
    assert grids[3] == {"baseline": PAPER}
    models = [args[0].config for _, args in lesson08.norm_cases()]
    assert models == [PAPER, MODERN, dataclasses.replace(PAPER, activation="sigmoid")]
    assert len(lesson08.norm_cases()[2][1][1]) == 8
    names = [sorted({r["name"] for r in args[0]}) for _, args in lesson08.summary_cases()]
    assert names == [["baseline"], ["baseline", "max pooling"], ["avg pooling", "relu net", "sigmoid net"]]
    mixed = [r["name"] for r in lesson08.summary_cases()[1][1][0]]
    assert mixed != sorted(mixed, key=mixed.index)  # the rows of the two configurations really are mixed
    assert [args[1] for _, args in lesson08.shift_cases()] == [2, 4, 0]


def test_the_references_do_what_the_tasks_say():
    # 08.3: the reference is statistics.mean / stdev
    rows = lesson08.summary_cases()[2][1][0]
    errors = [r["test_error"] for r in rows if r["name"] == "relu net"]
    assert lesson08._reference_summary(rows)["relu net"] == pytest.approx((statistics.mean(errors),
                                                                           statistics.stdev(errors), 4))
    # 08.4: a shift of (dx, dy) moves a single ink pixel right by dx and down by dy, background coming in
    x = torch.full((1, 1, 32, 32), BACKGROUND)
    x[0, 0, 10, 12] = 1.0
    g = torch.Generator().manual_seed(0)
    dx, dy = torch.randint(-3, 4, (1, 2), generator=torch.Generator().manual_seed(0))[0].tolist()
    out = lesson08._reference_shift(x, 3, g)
    assert out[0, 0, 10 + dy, 12 + dx] == 1.0 and (out == 1.0).sum() == 1
    assert (out[0, 0] == BACKGROUND).sum() == 32 * 32 - 1
    zero = lesson08.shift_cases()[2][1][0]
    assert torch.equal(lesson08._reference_shift(zero, 0, torch.Generator()), zero)


# --------------------------------------------------------------------------------------------
# Wrong answers
# --------------------------------------------------------------------------------------------

def _grid_without_baseline(base, choices):
    return {f"{f}={v}": dataclasses.replace(base, **{f: v}) for f, values in choices.items() for v in values
            if v != getattr(base, f)}


def _grid_not_skipping(base, choices):
    return {"baseline": base, **{f"{f}={v}": dataclasses.replace(base, **{f: v})
                                 for f, values in choices.items() for v in values}}


def _grid_accumulating(base, choices):
    configs, config = {"baseline": base}, base
    for f, values in choices.items():
        for v in values:
            if v != getattr(base, f):
                config = dataclasses.replace(config, **{f: v})
                configs[f"{f}={v}"] = config
    return configs


def _grid_value_names(base, choices):
    return {"baseline": base, **{str(v): dataclasses.replace(base, **{f: v}) for f, values in choices.items()
                                 for v in values if v != getattr(base, f)}}


def _norms(model, x, y, *, scale=True, after_activation=False, per_digit=True, loss=None):
    kept, h = {}, x
    for name, layer, act in (("C1", model.c1, model.act), ("S2", model.s2, model.pool_act),
                             ("C3", model.c3, model.act), ("S4", model.s4, model.pool_act),
                             ("C5", model.c5, model.act), ("F6", model.f6, model.act)):
        a = layer(h.flatten(1) if name == "F6" else h)
        h = act(a)
        kept[name] = h if after_activation else a
    kept["OUTPUT"] = model.output(h)
    criterion = loss or (map_criterion if model.config.head == "rbf" else F.cross_entropy)
    value = criterion(kept["OUTPUT"], y) * (len(x) if scale else 1)
    grads = torch.autograd.grad(value, list(kept.values()))
    if per_digit:
        return {k: g.flatten(1).norm(dim=1).mean().item() for k, g in zip(kept, grads)}
    return {k: g.norm().item() for k, g in zip(kept, grads)}


def _summary(rows, spread=statistics.stdev, percent=False, key="name", count=len):
    errors = {}
    for row in rows:
        errors.setdefault(row[key], []).append(row["test_error"] * (100 if percent else 1))
    return {name: (statistics.mean(e), spread(e), count(e)) for name, e in errors.items()}


def _shift(x, max_shift, generator, *, fill=BACKGROUND, sign=1, roll=False):
    shifts = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=generator) * sign
    if roll:
        return torch.stack([torch.roll(x[n], (dy, dx), dims=(1, 2)) for n, (dx, dy) in enumerate(shifts.tolist())])
    m, (h, w) = max_shift, x.shape[2:]
    padded = F.pad(x, (m, m, m, m), value=fill)
    return torch.stack([padded[n, :, m - dy:m - dy + h, m - dx:m - dx + w] for n, (dx, dy) in enumerate(shifts.tolist())])


GRID_2 = "one_factor_configs(PAPER, {'pooling': ['trainable', 'max'], 'activation': ['sigmoid', 'relu']})"
NORMS_PAPER = "layer_gradient_norms(the paper's LeNet-5, 16 digits)"
SUMMARY_1 = "summarise(3 runs of one configuration)"
SHIFT_1 = "random_shift(8 images, max_shift=2, a generator seeded with 0)"

WRONG = [
    ("08.1", {"one_factor_configs": _grid_without_baseline}, "missing: ['baseline'], unexpected: none"),
    ("08.1", {"one_factor_configs": _grid_not_skipping}, f"{GRID_2} should have the keys"),
    ("08.1", {"one_factor_configs": _grid_not_skipping}, "missing: none, unexpected: ['pooling=trainable']"),
    ("08.1", {"one_factor_configs": _grid_accumulating},
     f"{GRID_2}['activation=sigmoid'] has the wrong fields: pooling='max' (expected 'trainable')"),
    ("08.1", {"one_factor_configs": lambda base, choices: dict.fromkeys(lesson08._reference_grid(base, choices), "x")},
     "one_factor_configs(PAPER, {'pooling': ['avg', 'max']})['baseline'] should be a LeNetConfig, got str 'x'"),
    ("08.1", {"one_factor_configs": _grid_value_names}, "missing: ['pooling=avg', 'pooling=max']"),
    ("08.1", {"one_factor_configs": lambda base, choices: [base]}, "should return a dict of name -> LeNetConfig, got list"),
    ("08.2", {"layer_gradient_norms": lambda m, x, y: _norms(m, x, y, scale=False)},
     f"the OUTPUT value of {NORMS_PAPER} should be about 1, got 0.0625"),
    ("08.2", {"layer_gradient_norms": lambda m, x, y: _norms(m, x, y, after_activation=True)},
     f"the F6 value of {NORMS_PAPER} should be about"),
    ("08.2", {"layer_gradient_norms": lambda m, x, y: _norms(m, x, y, per_digit=False)},
     f"the OUTPUT value of {NORMS_PAPER} should be about 1, got 4"),
    ("08.2", {"layer_gradient_norms": lambda m, x, y: _norms(m, x, y, loss=F.cross_entropy)},
     f"the OUTPUT value of {NORMS_PAPER} should be about 1, got"),
    ("08.2", {"layer_gradient_norms": lambda m, x, y: {k.lower(): v for k, v in gradient_norms(m, x, y).items()}},
     f"{NORMS_PAPER} should return a dict with the keys ['C1', 'S2', 'C3', 'S4', 'C5', 'F6', 'OUTPUT'], in that "
     "order, got ['c1',"),
    ("08.3", {"summarise": lambda rows: _summary(rows, spread=statistics.pstdev)},
     f"the standard deviation of {SUMMARY_1}['baseline'] should be about 0.0006, got 0.000489898"),
    ("08.3", {"summarise": lambda rows: _summary(rows, percent=True)}, f"the mean of {SUMMARY_1}['baseline'] should be "
                                                                      "about 0.0125, got 1.25"),
    ("08.3", {"summarise": lambda rows: _summary(rows, count=lambda e: float(len(e)))},
     f"the number of runs in {SUMMARY_1}['baseline'] should be the int 3, got float 3.0"),
    ("08.3", {"summarise": lambda rows: _summary(rows, key="factor")},
     "summarise(two configurations of 3 runs, rows mixed) should return a dict with one entry per configuration name, "
     "['baseline', 'max pooling'], got ['baseline', 'max']"),
    ("08.3", {"summarise": lambda rows: {k: {"mean": v[0]} for k, v in _summary(rows).items()}},
     f"{SUMMARY_1}['baseline'] should be a tuple (mean, std, n), got dict"),
    ("08.4", {"random_shift": lambda x, m, g: _shift(x, m, g, fill=0.0)}, f"{SHIFT_1}: "),
    ("08.4", {"random_shift": lambda x, m, g: _shift(x, m, g, sign=-1)}, f"{SHIFT_1}: "),
    ("08.4", {"random_shift": lambda x, m, g: _shift(x, m, g, roll=True)}, f"{SHIFT_1}: "),
    ("08.4", {"random_shift": lambda x, m, g: _shift(x, m, torch.Generator().manual_seed(99))}, f"{SHIFT_1}: "),
    ("08.4", {"random_shift": lambda x, m, g: _shift(x, m, g).numpy()},
     f"{SHIFT_1} should return a torch tensor, got an array of shape (8, 1, 32, 32)"),
    ("08.4", {"random_shift": lambda x, m, g: _shift(x, m, g)[:, 0]}, f"{SHIFT_1} should have shape (8, 1, 32, 32)"),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


def test_the_wrong_shifts_really_differ_in_values(ns, capsys):
    """The four wrong translations above fail on the values, not on the shape or type."""
    for fill, sign, roll in ((0.0, 1, False), (BACKGROUND, -1, False), (BACKGROUND, 1, True)):
        result = assert_fails_with("08.4", {**ns, "random_shift": lambda x, m, g: _shift(x, m, g, fill=fill, sign=sign,
                                                                                          roll=roll)},
                                   f"{SHIFT_1}: ", capsys)
        assert " values differ; first at [" in result.message


def test_a_raising_function_fails_naming_the_exception(ns, capsys):
    def random_shift(x, max_shift, generator):
        raise IndexError("index 34 is out of bounds for dimension 2 with size 32")
    assert_fails_in_one_line("08.4", {**ns, "random_shift": random_shift},
                             f"{SHIFT_1} raised IndexError: index 34 is out of bounds", capsys)


def test_the_check_works_on_copies(ns, capsys):
    """The learner's function may change its inputs: the next case and the reference never see it."""
    def random_shift(x, max_shift, generator):
        out = ns_shift(x, max_shift, generator)
        x.fill_(0.0)
        return out
    ns_shift = ns["random_shift"]
    result, _ = run_check("08.4", {**ns, "random_shift": random_shift}, capsys)
    assert result.status == "passed"


def test_a_missing_function_is_named(ns, capsys):
    assert_missing_name("08.3", ns, "summarise", capsys)


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_stub_is_not_attempted(exercise_id, ns, capsys):
    assert_stub_not_attempted(exercise_id, ns, capsys)


def _solution_lines() -> set[str]:
    """The solution regions' lines, and every computing line of the references, for the leak test."""
    references = (lesson08._reference_grid, lesson08._reference_summary, lesson08._reference_shift)
    lines = {line.strip() for reference in references for line in inspect.getsource(reference).splitlines()}
    return solution_lines([SOLUTION]) | {line for line in lines
                                          if len(line) >= 12 and not line.startswith(('"""', "def "))}


def test_messages_never_show_the_solution(ns, capsys):
    assert_nothing_leaks(printed_lines(WRONG, lambda exercise_id: ns, capsys), _solution_lines())
