"""The exercise checks (lenet_course.checks and lesson00), called directly from Python."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lenet_course import data as lcdata
from lenet_course.checks import (
    MIMETYPE, TODO_MESSAGE, CheckFailed, check, exercise, expect_array, expect_fields, expect_int, expect_tuple,
    get_exercise, is_int, lesson_exercises,
)
from lenet_course.checks import lesson00
from lenet_course.data import pad_to_32, paper_scale

from exercise_testing import (
    assert_missing_name,
    assert_fails_in_one_line, assert_fails_with, assert_nothing_leaks, notebook_namespace, printed_lines,
    run_check, solution_lines,
)

SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "00_data.ipynb"


def _solution_notebook() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTION, as_version=4)


@pytest.fixture(scope="module")
def solved() -> dict:
    """The namespace of the solution notebook run in this process, check cells left out."""
    return notebook_namespace(SOLUTION)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

def test_lesson_00_registers_four_exercises():
    exercises = lesson_exercises("00")
    assert [e.id for e in exercises] == ["00.1", "00.2", "00.3", "00.4"]
    assert all(e.title and e.hint and e.names for e in exercises)
    assert lesson_exercises("42") == []


def test_unknown_and_malformed_ids_are_refused():
    with pytest.raises(ValueError, match=r"unknown exercise 00\.9; lesson 00 has: 00\.1, 00\.2, 00\.3, 00\.4"):
        get_exercise("00.9")
    with pytest.raises(ValueError, match="look like '00.1'"):
        get_exercise("0.1")
    with pytest.raises(ValueError, match="registered twice"):
        exercise("00.1", "again", names=("x",), hint="h")(lambda x: None)


# --------------------------------------------------------------------------------------------
# check(): pass, fail, not attempted
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exercise_id", ["00.1", "00.2", "00.3", "00.4"])
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed"
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


def test_check_defaults_to_the_callers_globals(solved):
    namespace = {"check": check, "count_classes": solved["count_classes"]}
    exec("result = check('00.3')", namespace)
    assert namespace["result"].status == "passed"


def _dims(data, ndim):
    return tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))


def _little_endian(data):
    return int.from_bytes(data[:4], "little"), ()


def _dims_as_list(data):
    return int.from_bytes(data[:4], "big"), list(_dims(data, data[3]))


def _no_length_check(data):
    return int.from_bytes(data[:4], "big"), _dims(data, data[3] if len(data) > 3 else 0)


def _index_error(data):
    return int.from_bytes(data[:4], "big"), _dims(data, data[3])


def _pad_after_scaling(digit):
    return np.pad(paper_scale(digit), 2)


WRONG = [
    ("00.1", {"parse_idx_header": _little_endian},
     "parse_idx_header(a labels file of 3 digits) should be (2049, (3,)), got tuple (17301504, ())"),
    ("00.1", {"parse_idx_header": _dims_as_list}, "should be (2049, (3,)), got tuple (2049, [3])"),
    ("00.1", {"parse_idx_header": _no_length_check},
     "parse_idx_header(no bytes at all) should raise ValueError, but returned tuple (0, ())"),
    ("00.1", {"parse_idx_header": _index_error},
     "parse_idx_header(no bytes at all) should raise ValueError, but raised IndexError: index out of range"),
    ("00.2", {"pad_and_scale": paper_scale}, "pad_and_scale(a blank digit) should have shape (32, 32), got (28, 28)"),
    ("00.2", {"pad_and_scale": lambda d: pad_to_32(d) * (1.275 / 255) - 0.1},
     "pad_and_scale(a blank digit) should have dtype float32, got float64"),
    ("00.2", {"pad_and_scale": _pad_after_scaling},
     "pad_and_scale(a blank digit): 240 of 1,024 values differ; first at [0, 0]: expected -0.1, got 0"),
    ("00.2", {"pad_and_scale": lambda d: paper_scale(pad_to_32(d)).tolist()},
     "pad_and_scale(a blank digit) should return a numpy array, got list [[-0.1"),
    ("00.2", {"pad_and_scale": lambda d: (pad_to_32(d) / np.float32(255)).astype(np.float32)},
     "pad_and_scale(a blank digit): 1,024 of 1,024 values differ; first at [0, 0]: expected -0.1, got 0"),
    ("00.3", {"count_classes": lambda labels: np.unique(labels, return_counts=True)[1]},
     "count_classes(labels without any 7) should have shape (10,), got (9,)"),
    ("00.3", {"count_classes": np.bincount},
     "count_classes(labels that stop at 4) should have shape (10,), got (5,)"),
    ("00.3", {"count_classes": lambda labels: np.bincount(labels, minlength=10) * 1.0},
     "count_classes(the labels 0 to 9 once each) should hold integers, got dtype float64"),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


@pytest.mark.parametrize("answer, expected", [
    (lambda unpadded: {"scaled_mean": float(unpadded.mean())},
     "scaled_mean should be about 0.0280517, got 0.0672512"),
    (lambda unpadded: {"scaled_mean": unpadded.mean(axis=(1, 2))},
     "scaled_mean should be a single number, got an array of shape (4000,) and dtype float32"),
    (lambda unpadded: {"scaled_std": "0.35"}, "scaled_std should be a single number, got str '0.35'"),
])
def test_wrong_measurements_fail_with_what_was_expected(answer, expected, ns, capsys):
    ns.update(answer(paper_scale(ns["data"].train_images)))  # forgot to pad
    result, _ = run_check("00.4", ns, capsys)
    assert result.status == "failed"
    assert expected in result.message


def test_messages_never_show_the_solution(ns, capsys):
    shown = printed_lines(WRONG, lambda exercise_id: ns, capsys)
    assert_nothing_leaks(shown, solution_lines([SOLUTION], (pad_to_32, paper_scale)))


def test_a_stub_function_is_not_attempted(ns, capsys):
    def pad_and_scale(digit):
        raise NotImplementedError("Exercise 00.2 (Pad and scale a digit the paper's way): ...")
    ns["pad_and_scale"] = pad_and_scale
    result, out = run_check("00.2", ns, capsys)
    assert result.status == "not_attempted"
    assert out == f"[TODO] 00.2 Pad and scale a digit the paper's way: {TODO_MESSAGE}\n"


def test_a_raising_function_fails_naming_the_exception(ns, capsys):
    def count_classes(labels):
        raise KeyError("line one\nline two")
    ns["count_classes"] = count_classes
    assert_fails_in_one_line("00.3", ns, "count_classes(the labels 0 to 9 once each) raised "
                                         "KeyError: 'line one\\nline two'", capsys)


def test_an_undefined_name_fails_and_says_to_run_the_cell(ns, capsys):
    assert_missing_name("00.2", ns, "pad_and_scale", capsys)
    not_a_function, _ = run_check("00.2", {**ns, "pad_and_scale": 3}, capsys)
    assert not_a_function.message.startswith("`pad_and_scale` should be a function, got int 3")


def _raised_in_a_cell(monkeypatch, exc: BaseException) -> None:
    """What IPython records when a notebook cell raises."""
    monkeypatch.setattr(sys, "last_value", exc, raising=False)
    monkeypatch.setattr(sys, "last_exc", exc, raising=False)


def test_an_undefined_name_after_the_stub_raised_is_not_attempted(ns, capsys, monkeypatch):
    for name in ("scaled_mean", "scaled_std"):
        del ns[name]
    _raised_in_a_cell(monkeypatch, NotImplementedError("Exercise 00.4 (Measure ...): hint"))
    result, _ = run_check("00.4", ns, capsys)
    assert result.status == "not_attempted"
    _raised_in_a_cell(monkeypatch, NotImplementedError("Exercise 00.2 (Pad ...): hint"))  # another exercise's stub
    result, _ = run_check("00.4", ns, capsys)
    assert result.status == "failed"
    assert result.message.startswith("`scaled_mean`, `scaled_std` are not defined: run the cell above.")


def test_the_learners_function_gets_copies_of_the_inputs(ns, capsys):
    def count_classes(labels):
        counts = np.bincount(labels, minlength=10)
        labels[:] = 0  # must not change the reference's input
        return counts
    ns["count_classes"] = count_classes
    assert run_check("00.3", ns, capsys)[0].status == "passed"


# --------------------------------------------------------------------------------------------
# The check data and helpers
# --------------------------------------------------------------------------------------------

def test_idx_samples_parse_the_same_with_read_idx(tmp_path):
    for n, (_, type_code, dims) in enumerate(lesson00.IDX_SAMPLES):
        path = tmp_path / f"sample-{n}"
        path.write_bytes(lesson00.idx_bytes(type_code, dims))
        assert lcdata.read_idx(path).shape == dims
    for n, (_, data) in enumerate(lesson00.SHORT_HEADERS):
        path = tmp_path / f"short-{n}"
        path.write_bytes(data)
        with pytest.raises(lcdata.DataError):
            lcdata.read_idx(path)


@settings(max_examples=50, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6)), data=st.data())
def test_expect_array_names_the_first_difference(shape, data):
    want = np.zeros(shape, np.float32)
    i, j = data.draw(st.integers(0, shape[0] - 1)), data.draw(st.integers(0, shape[1] - 1))
    got = want.copy()
    got[i, j] = 0.5
    expect_array(want.copy(), want, "f(x)")
    with pytest.raises(CheckFailed, match=re.escape(f"f(x): 1 of {want.size} values differ; first at [{i}, {j}]: "
                                                    "expected 0, got 0.5")):
        expect_array(got, want, "f(x)")


def test_the_int_and_tuple_helpers():
    assert is_int(3) and is_int(np.int64(3))
    assert not any(map(is_int, (True, np.bool_(True), 3.0, np.float32(3), "3")))
    expect_int(np.int32(5), "n")
    with pytest.raises(CheckFailed, match=re.escape("n should be an int, got float 5.0")):
        expect_int(5.0, "n")
    expect_tuple([1, 2], ("a", "b"), "f(x)", lists=True)
    with pytest.raises(CheckFailed, match=re.escape("f(x) should return a tuple (a, b), got list [1, 2]")):
        expect_tuple([1, 2], ("a", "b"), "f(x)")
    with pytest.raises(CheckFailed, match=re.escape("f(x) should return a tuple (a, b), got tuple (1, 2, 3)")):
        expect_tuple((1, 2, 3), ("a", "b"), "f(x)", lists=True)
    expect_fields((1, 2), (1, 2), ("a", "b"), "f(x)")
    with pytest.raises(CheckFailed, match=re.escape("the b of f(x) should be 3, got int 2")):
        expect_fields((1, 2), (1, 3), ("a", "b"), "f(x)")


def test_the_committed_solution_stores_pass_records():
    nb = _solution_notebook()
    checks = [cell for cell in nb.cells if cell.cell_type == "code" and "check(" in cell.source]
    assert len(checks) == 4
    for cell, ex in zip(checks, lesson_exercises("00")):
        assert cell.source.startswith("# NBVAL_CHECK_OUTPUT\n")
        [output] = cell.outputs
        assert output.data["text/plain"] == f"[PASS] {ex.id} {ex.title}"
        assert output.data[MIMETYPE] == {"id": ex.id, "title": ex.title, "status": "passed", "message": ""}
