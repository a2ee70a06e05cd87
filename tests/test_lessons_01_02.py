"""Lessons 01 (convolution, C1) and 02 (subsampling, S2): their exercise checks and notebooks.

The checks are called directly from Python on the solution notebooks' code (run in this process)
and on typical wrong answers: a solution passes, a wrong answer fails with a line that names the
exercise and what was expected, a stub is "not attempted", and no message shows the solution.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lenet_course import paper
from lenet_course.checks import MIMETYPE, get_exercise, lesson_exercises
from lenet_course.checks import lesson01, lesson02
from lenet_course.layers import conv2d, conv2d_loops, squash, subsample

from exercise_testing import (
    assert_missing_name,
    assert_fails_with, assert_nothing_leaks, notebook_namespace, printed_lines, run_check, solution_lines,
)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = {"01": ROOT / "solutions" / "01_convolution.ipynb", "02": ROOT / "solutions" / "02_subsampling.ipynb"}
EXERCISES = {lesson: ROOT / "exercises" / path.name for lesson, path in SOLUTIONS.items()}
LESSONS = {"01": ROOT / "notebooks" / "01_convolution_c1.ipynb", "02": ROOT / "notebooks" / "02_subsampling_s2.ipynb"}
IDS = {"01": ["01.1", "01.2", "01.3"], "02": ["02.1", "02.2", "02.3", "02.4"]}


def _exec_cells(path: Path) -> dict:
    """Run a notebook's code cells in a fresh namespace, leaving out the check cells and the closing
    "try" cells (which load data); a cell that raises NotImplementedError is recorded as IPython would."""
    return notebook_namespace(path, lambda cell: not cell.id.startswith("try"), record_stubs=True)


@pytest.fixture(scope="module")
def solved() -> dict:
    namespace: dict = {}
    for path in SOLUTIONS.values():
        namespace.update(_exec_cells(path))
    return namespace


# --------------------------------------------------------------------------------------------
# Registry and the solutions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lesson", ["01", "02"])
def test_each_lesson_registers_its_exercises(lesson):
    exercises = lesson_exercises(lesson)
    assert [e.id for e in exercises] == IDS[lesson]
    assert all(e.title and e.hint and e.names for e in exercises)


@pytest.mark.parametrize("exercise_id", IDS["01"] + IDS["02"])
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


@pytest.mark.parametrize("lesson", ["01", "02"])
def test_the_committed_solutions_store_pass_records(lesson):
    nb = nbformat.read(SOLUTIONS[lesson], as_version=4)
    assert nb.metadata.lenet_course.lesson == lesson
    checks = [cell for cell in nb.cells if cell.cell_type == "code" and "check(" in cell.source]
    assert len(checks) == len(IDS[lesson])
    for cell, ex in zip(checks, lesson_exercises(lesson)):
        assert cell.source == f'# NBVAL_CHECK_OUTPUT\ncheck("{ex.id}")'
        assert cell.metadata.nbgrader == {"grade": False, "grade_id": f"ex{ex.id.replace('.', '_')}_check",
                                          "locked": True, "schema_version": 3, "solution": False}
        [output] = cell.outputs
        assert output.data["text/plain"] == f"[PASS] {ex.id} {ex.title}"
        assert output.data[MIMETYPE] == {"id": ex.id, "title": ex.title, "status": "passed", "message": ""}


@pytest.mark.parametrize("lesson", ["01", "02"])
def test_the_generated_exercises_are_not_attempted(lesson, capsys, monkeypatch):
    monkeypatch.setattr(sys, "last_value", None, raising=False)
    namespace = _exec_cells(EXERCISES[lesson])
    for exercise_id in IDS[lesson]:
        result, out = run_check(exercise_id, namespace, capsys)
        assert result.status == "not_attempted", (exercise_id, result.message)
        assert out.startswith(f"[TODO] {exercise_id} ")


# --------------------------------------------------------------------------------------------
# Wrong answers
# --------------------------------------------------------------------------------------------

def _flipped_kernel(x, w, b):
    return conv2d_loops(x[None], w[None, :, ::-1, ::-1], [b])[0, 0]


def _slow_conv(x, w, b):
    if len(x) == lesson01.SPEED_BATCH:
        time.sleep(lesson01.SPEED_LIMIT_S + 0.1)
    return conv2d(x, w, b)


def _blocks(x):
    n, c, h, w = x.shape
    return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)


WRONG = [
    ("01.1", {"conv_map": _flipped_kernel},
     "conv_map(a 5x5 ramp 0..24 and an asymmetric 3x3 kernel, bias 0.5): 9 of 9 values differ"),
    ("01.1", {"conv_map": lambda x, w, b: conv2d_loops(x[None], w[None], [0.0])[0, 0]},
     "conv_map(a 5x5 ramp 0..24 and an asymmetric 3x3 kernel, bias 0.5): 9 of 9 values differ; first at [0, 0]: "
     "expected -39.5, got -40"),
    ("01.1", {"conv_map": lambda x, w, b: x[0]},
     "conv_map(a 5x5 ramp 0..24 and an asymmetric 3x3 kernel, bias 0.5) should have shape (3, 3), got (5, 5)"),
    ("01.1", {"conv_map": lambda x, w, b: conv2d_loops(x[None, :1], w[None, :1], [b])[0, 0]},
     "conv_map(3 input maps of 6x6 and a 3x3x3 kernel): 16 of 16 values differ"),
    ("01.2", {"conv_batch": lambda x, w, b: conv2d(x, w, b).swapaxes(0, 1)},
     "conv_batch(8 digit-like images (8, 1, 32, 32) and C1's bank of 6 kernels (6, 1, 5, 5)) should have shape "
     "(8, 6, 28, 28), got (6, 8, 28, 28)"),
    ("01.2", {"conv_batch": lambda x, w, b: conv2d(x, w, np.zeros_like(b))}, "values differ"),
    ("01.2", {"conv_batch": lambda x, w, b: conv2d(x.sum(axis=1, keepdims=True), w[:, :1], b)},
     "conv_batch(2 images of 3 maps 7x9 and 4 kernels 3x2 (multi-channel, nothing square)): "),
    ("01.2", {"conv_batch": _slow_conv},
     f"conv_batch({lesson01.SPEED_BATCH} digits and 6 kernels) gives the right numbers but took"),
    ("01.3", {"conv_counts": lambda m, k, s, c=1: (m * c * k * k, (s - k + 1) ** 2 * m * (c * k * k + 1))},
     "the parameters of conv_counts(C1: 6 maps, 5x5 kernels, a 32x32 input) should be 156, got int 150"),
    ("01.3", {"conv_counts": lambda m, k, s, c=1: (m * (c * k * k + 1), (s - k + 1) ** 2 * m * c * k * k)},
     "the connections of conv_counts(C1: 6 maps, 5x5 kernels, a 32x32 input) should be 122304, got int 117600"),
    ("01.3", {"conv_counts": lambda m, k, s, c=1: [m * (c * k * k + 1), (s - k + 1) ** 2 * m * (c * k * k + 1)]},
     "conv_counts(C1: 6 maps, 5x5 kernels, a 32x32 input) should return a tuple (parameters, connections), "
     "got list [156, 122304]"),
    ("01.3", {"conv_counts": lambda m, k, s, c=1: (m * (k * k + 1), (s - k + 1) ** 2 * m * (k * k + 1))},
     "the parameters of conv_counts(C3 fully connected: 16 maps, 5x5 kernels on 6 input maps of 14x14) "
     "should be 2416, got int 416"),
    ("01.3", {"conv_counts": lambda m, k, s, c=1: (m * (c * k * k + 1), max(s - k + 1, 0) ** 2 * m * (c * k * k + 1))},
     "conv_counts(a 5x5 kernel on a 4x4 input) should raise ValueError, but returned tuple (156, 0)"),
    ("02.1", {"s2_forward": lambda x, c, b: subsample(x, c, b)},
     "s2_forward(the lesson's 4x4 map, coef 1, bias 0): 3 of 4 values differ; first at [0, 0, 0, 1]: "
     "expected -1.59769, got -2.5"),
    ("02.1", {"s2_forward": lambda x, c, b: squash(np.asarray(c)[:, None, None] * _blocks(x).mean(axis=(3, 5))
                                                   + np.asarray(b)[:, None, None])},
     "s2_forward(the lesson's 4x4 map, coef 1, bias 0): 4 of 4 values differ"),
    ("02.1", {"s2_forward": lambda x, c, b: squash(subsample(np.pad(x, ((0, 0), (0, 0), (0, x.shape[2] % 2),
                                                                         (0, x.shape[3] % 2))), c, b))},
     "s2_forward(a 5x7 map (odd sizes: the last row and column have no partner and are dropped)) should have "
     "shape (1, 1, 2, 3), got (1, 1, 3, 4)"),
    ("02.2", {"subsampling_counts": lambda m, s: (s // 2, m, m * (s // 2) ** 2 * 5)},
     "the parameters of subsampling_counts(S2: 6 maps of 28x28) should be 12, got int 6"),
    ("02.2", {"subsampling_counts": lambda m, s: (s // 2, 2 * m, m * (s // 2) ** 2 * 4)},
     "the connections of subsampling_counts(S2: 6 maps of 28x28) should be 5880, got int 4704"),
    ("02.2", {"subsampling_counts": lambda m, s: (s / 2, 2 * m, m * (s // 2) ** 2 * 5)},
     "the output size of subsampling_counts(6 maps of 7x7 (odd: the last row and column are dropped)) "
     "should be 3, got float 3.5"),
    ("02.2", {"subsampling_counts": lambda m, s: (s // 2, 2 * m, m * (s // 2) ** 2 * 5)},
     "subsampling_counts(6 maps of 1x1) should raise ValueError, but returned tuple (0, 12, 0)"),
    ("02.3", {"pool2x2": lambda x, kind: (_blocks(x).mean(axis=(3, 5)) if kind == "avg"
                                          else np.abs(_blocks(x)).max(axis=(3, 5)))},
     "pool2x2(the lesson's 4x4 map, 'max'): 1 of 4 values differ; first at [0, 0, 0, 1]: expected 0.5, got 1"),
    ("02.3", {"pool2x2": lambda x, kind: _blocks(x).max(axis=(3, 5)) if kind == "max" else _blocks(x).mean(axis=(3, 5))},
     "pool2x2(the lesson's 4x4 map, 'sum') should raise ValueError, but returned an array of shape (1, 1, 2, 2)"),
    ("02.3", {"pool2x2": lambda x, kind: F.avg_pool2d(torch.from_numpy(x), 2)},
     "pool2x2(the lesson's 4x4 map, 'avg') should return a numpy array, got a tensor of shape (1, 1, 2, 2) and dtype torch.float32"),
    ("02.4", {"shift_digits": lambda images, dy, dx: np.roll(images, (dy, dx), axis=(1, 2))},
     "shift_digits(3 digits, dy=1, dx=0 (one row down)): "),
    ("02.4", {"shift_digits": lambda images, dy, dx: lesson02.shift_reference(images, dy, dx).astype(np.float32)},
     "shift_digits(3 digits, dy=0, dx=0 (no shift)) should have dtype uint8, got float32"),
    ("02.4", {"shift_digits": lambda images, dy, dx: lesson02.shift_reference(images, dx, dy)},
     "shift_digits(3 digits, dy=1, dx=0 (one row down)): "),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_naming_the_exercise(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


def test_messages_never_show_the_solution(ns, capsys):
    shown = printed_lines(WRONG, lambda exercise_id: ns, capsys)
    shown += [f"{e.title} {e.hint}" for e in lesson_exercises("01") + lesson_exercises("02")]
    assert_nothing_leaks(shown, solution_lines(SOLUTIONS.values()))


def test_a_stub_is_not_attempted_and_a_missing_name_says_to_run_the_cell(ns, capsys):
    def conv_map(x, w, b):
        raise NotImplementedError("Exercise 01.1 (Convolve one output map with loops): ...")
    result, out = run_check("01.1", {**ns, "conv_map": conv_map}, capsys)
    assert result.status == "not_attempted"
    assert_missing_name("02.3", ns, "pool2x2", capsys)


# --------------------------------------------------------------------------------------------
# The check data against the paper and torch
# --------------------------------------------------------------------------------------------

def test_the_count_references_give_the_papers_numbers():
    c1, s2, c5, s4 = (paper.LAYERS[i] for i in (0, 1, 4, 3))
    assert lesson01.conv_counts_reference(6, 5, 32) == (c1.params, c1.connections)
    assert lesson01.conv_counts_reference(120, 5, 5, 16) == (c5.params, c5.connections)
    assert lesson02.subsampling_counts_reference(6, 28) == (s2.size[0], s2.params, s2.connections)
    assert lesson02.subsampling_counts_reference(16, 10) == (s4.size[0], s4.params, s4.connections)


def test_the_pooling_and_shift_references():
    x = lesson02.SMALL_MAP
    assert np.array_equal(lesson02.pool_reference(x, "max")[0, 0], [[1.0, 0.5], [1.5, 2.0]])
    assert np.allclose(lesson02.pool_reference(x, "avg") * 4, subsample(x, [1.0], [0.0]))
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28).astype(np.uint8)
    moved = lesson02.shift_reference(images, 2, -3)
    assert np.array_equal(moved[:, 2:, :-3], images[:, :-2, 3:])
    assert not moved[:, :2].any() and not moved[:, :, -3:].any()
    assert np.array_equal(lesson02.shift_reference(images, 0, 0), images)


def test_the_speed_limit_leaves_room_for_a_vectorized_answer():
    x, w, b = lesson01._speed_case()
    conv2d(x, w, b)
    start = time.perf_counter()
    conv2d(x, w, b)
    assert time.perf_counter() - start < lesson01.SPEED_LIMIT_S / 5


# --------------------------------------------------------------------------------------------
# The lesson notebooks' conventions
# --------------------------------------------------------------------------------------------

def _code(path: Path) -> list:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


@pytest.mark.parametrize("path", list(LESSONS.values()) + list(SOLUTIONS.values()), ids=lambda p: p.name)
def test_notebooks_open_with_parameters_and_validation(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    first, second = _code(path)[:2]
    assert first.metadata.tags == ["parameters"]
    assert re.findall(r"^(\w+) = ", first.source, re.M) == ["DATA", "DATA_DIR", "SEED", "FAST"]
    assert "P = validate(LessonParams, DATA=DATA, DATA_DIR=DATA_DIR, SEED=SEED, FAST=FAST)" in second.source
    assert path.stat().st_size < 250_000
    assert "load_mnist(P.DATA, P.DATA_DIR or None)" in "".join(c.source for c in _code(path))


@pytest.mark.parametrize("path", list(LESSONS.values()) + list(SOLUTIONS.values()), ids=lambda p: p.name)
def test_the_papers_counts_are_computed_never_typed(path):
    typed = [(cell.id, match) for cell in _code(path)
             for match in re.findall(r"\b(?:156|122[,_]?304|5[,_]?880|60[,_]?000)\b", cell.source)]
    assert not typed


@pytest.mark.parametrize("path", list(LESSONS.values()) + list(SOLUTIONS.values()), ids=lambda p: p.name)
def test_stored_outputs_are_clean(path):
    raw = json.loads(path.read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        assert not any(o["output_type"] == "error" for o in cell["outputs"]), cell["id"]
        if any("image/png" in o.get("data", {}) for o in cell["outputs"]):
            assert not source.startswith("# NBVAL_CHECK_OUTPUT"), cell["id"]
        text = json.dumps(cell["outputs"])
        assert str(ROOT) not in text and "/tmp/" not in text and "/home/" not in text, cell["id"]
