"""Lesson 10 (from images to video): the exercise checks of lenet_course/checks/lesson10.py, called
directly from Python on the solution notebook's code and on typical wrong answers."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from lenet_course.checks import get_exercise, lesson10, lesson_exercises
from lenet_course.video import LeNet3D, layer_shapes

from exercise_testing import (
    assert_fails_in_one_line, assert_fails_with, assert_missing_name, assert_nothing_leaks,
    assert_stub_not_attempted, notebook_namespace, printed_lines, run_check, solution_lines,
)

SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "10_video.ipynb"
IDS = ["10.1", "10.2", "10.3", "10.4"]


@pytest.fixture(scope="module")
def solved() -> dict:
    """The namespace of the solution notebook run in this process, check cells left out."""
    return notebook_namespace(SOLUTION)


# --------------------------------------------------------------------------------------------
# Registry, the reference solutions, the cases
# --------------------------------------------------------------------------------------------

def test_lesson_10_registers_four_exercises():
    exercises = lesson_exercises("10")
    assert [e.id for e in exercises] == IDS
    assert all(e.title and e.hint and e.names for e in exercises)
    assert [e.names for e in exercises] == [("clip_prediction",), ("direction_from_positions",),
                                            ("conv3d_output_shape",), ("frame_differences",)]


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


def test_the_prediction_cases_are_what_their_descriptions_say():
    cases = lesson10.prediction_cases()
    got = [lesson10._reference_prediction(*args).tolist() for _, args in cases]
    descriptions = [description for description, _ in cases]
    assert descriptions[3].startswith("one clip: 4 frames prefer class 2") and got[3:5] == [[7], [2]]  # mean, vote
    assert descriptions[5].startswith("one clip: class 3 scores 5.0") and got[5:7] == [[3], [6]]      # mean, max
    assert "two won by class 5 and two by class 1" in descriptions[7] and got[7] == [1]
    assert (cases[8][1][0] < 0).all()
    scores = cases[0][1][0]
    assert scores.shape == (6, 8, 10) and cases[1][1][0] is scores and cases[2][1][0] is scores
    assert len({tuple(p) for p in got[:3]}) > 1             # mean, max and vote disagree somewhere


def test_the_position_cases_cover_speeds_and_both_direction_sets():
    cases = lesson10.position_cases()
    for description, (positions,), labels in cases:
        steps = positions[:, 1] - positions[:, 0]
        speed = int(steps.abs().max())
        assert f"{speed} pixel" in description
        assert labels.max() < (8 if "8 directions" in description else 4)
    assert {int(label) for _, _, labels in cases for label in labels} == set(range(8))


def test_the_shape_cases_include_lenet3d_layers_as_measured():
    cases = dict(lesson10.shape_cases())
    measured = {name: shape for name, shape, _ in
                layer_shapes(LeNet3D(), torch.zeros(1, 8, 1, 32, 32), ("c1", "c3", "c5"))}
    assert lesson10._reference_shape(*cases["LeNet3D's C1: 8 frames of 32x32, kernel (3, 5, 5)"]) == measured["c1"][2:]
    assert lesson10._reference_shape(*cases["LeNet3D's C3: (6, 14, 14), kernel (3, 5, 5)"]) == measured["c3"][2:]
    assert lesson10._reference_shape(*cases["LeNet3D's C5: (4, 5, 5), kernel (1, 5, 5)"]) == measured["c5"][2:]
    assert lesson10._reference_shape(*cases["(7, 33, 31), kernel 3, stride 2, padding 1"]) == (4, 17, 16)


def test_the_difference_cases_hold_moving_ink():
    _, (clips,) = lesson10.difference_cases()[1]
    assert clips.shape == (4, 8, 1, 32, 32)
    assert lesson10._reference_differences(clips).abs().sum() > 0


# --------------------------------------------------------------------------------------------
# Wrong answers
# --------------------------------------------------------------------------------------------

def _pooled(scores, how):
    if how == "mean":
        return scores.mean(1)
    if how == "max":
        return scores.amax(1)
    if how == "vote":
        return torch.nn.functional.one_hot(scores.argmax(2), scores.shape[2]).sum(1)
    raise ValueError(how)


def _prediction_pooling_over_classes(scores, how):
    return _pooled(scores, how).argmax(0) if how != "vote" else _pooled(scores, how).argmax(1)


def _prediction_votes_ignore_ties(scores, how):
    if how == "vote":
        counts = torch.nn.functional.one_hot(scores.argmax(2), scores.shape[2]).sum(1)
        return counts.flip(1).argmax(1).neg().add(scores.shape[2] - 1)  # ties to the larger class
    return _pooled(scores, how).argmax(1)


def _prediction_mean_for_everything(scores, how):
    return scores.mean(1).argmax(1)


def _prediction_abs_max(scores, how):
    return (scores.abs().amax(1) if how == "max" else _pooled(scores, how)).argmax(1)


def _prediction_no_value_error(scores, how):
    return _pooled(scores, how if how in ("max", "vote") else "mean").argmax(1)  # anything else: the mean


def _prediction_float(scores, how):
    return _pooled(scores, how).argmax(1).float()


def _direction_swapped_axes(positions):
    step = torch.sign(positions[:, 1] - positions[:, 0]).flip(1)  # (column, row): x and y confused
    steps = torch.tensor([(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)])
    return (step[:, None] == steps[None]).all(2).int().argmax(1)


def _direction_without_sign(positions):
    step = positions[:, 1] - positions[:, 0]
    steps = torch.tensor([(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)])
    return (step[:, None] == steps[None]).all(2).int().argmax(1)


def _direction_as_list(positions):
    return _direction_without_sign(torch.sign(positions)).tolist()


def _shape_no_floor(input_size, kernel_size, stride=1, padding=0):
    three = (lambda v: (v,) * 3 if isinstance(v, int) else tuple(v))
    return tuple((n + 2 * p - k) / s + 1
                 for n, k, s, p in zip(input_size, three(kernel_size), three(stride), three(padding)))


def _shape_one_padding(input_size, kernel_size, stride=1, padding=0):
    three = (lambda v: (v,) * 3 if isinstance(v, int) else tuple(v))
    return tuple((n + p - k) // s + 1
                 for n, k, s, p in zip(input_size, three(kernel_size), three(stride), three(padding)))


def _shape_tuples_only(input_size, kernel_size, stride=1, padding=0):
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(input_size, kernel_size, (1, 1, 1), (0, 0, 0)))


def _shape_as_tensor(input_size, kernel_size, stride=1, padding=0):
    three = (lambda v: (v,) * 3 if isinstance(v, int) else tuple(v))
    return torch.tensor([(n + 2 * p - k) // s + 1
                         for n, k, s, p in zip(input_size, three(kernel_size), three(stride), three(padding))])


PRED_RANDOM = "clip_prediction(scores of 6 clips of 8 frames, 10 classes, how='mean')"
PRED_RANDOM_MAX = "clip_prediction(the same scores, how='max')"
PRED_RANDOM_VOTE = "clip_prediction(the same scores, how='vote')"
DIR_4 = "direction_from_positions(20 clips of 8 frames, 4 directions, 1 pixel per frame)"
DIR_SPEED_2 = "direction_from_positions(20 clips of 6 frames, 4 directions, 2 pixels per frame)"
SHAPE_C1 = "conv3d_output_shape(LeNet3D's C1: 8 frames of 32x32, kernel (3, 5, 5))"
SHAPE_STRIDED = "conv3d_output_shape((8, 32, 32), kernel (3, 5, 5), stride (1, 2, 2), padding (0, 2, 2))"
SHAPE_INT = "conv3d_output_shape((16, 16, 16), kernel 3 (an int: 3 on every axis))"
DIFF_RANDOM = "frame_differences(random clips (2, 5, 1, 6, 6))"

WRONG = [
    ("10.1", {"clip_prediction": _prediction_pooling_over_classes}, f"{PRED_RANDOM} should have shape (6,), got (10,)"),
    ("10.1", {"clip_prediction": _prediction_mean_for_everything}, f"{PRED_RANDOM_MAX}: 3 of 6 values differ"),
    ("10.1", {"clip_prediction": _prediction_votes_ignore_ties}, f"{PRED_RANDOM_VOTE}: 2 of 6 values differ"),
    ("10.1", {"clip_prediction": _prediction_abs_max}, f"{PRED_RANDOM_MAX}: 5 of 6 values differ"),
    ("10.1", {"clip_prediction": _prediction_float}, f"{PRED_RANDOM} should hold integers, got dtype float32"),
    ("10.1", {"clip_prediction": _prediction_no_value_error},
     "clip_prediction(scores of 6 clips, how='median') should raise ValueError, but returned a tensor of shape (6,)"),
    ("10.1", {"clip_prediction": lambda scores, how: _pooled(scores, how)}, f"{PRED_RANDOM} should have shape (6,), "
                                                                           "got (6, 10)"),
    ("10.2", {"direction_from_positions": _direction_swapped_axes}, f"{DIR_4}: "),
    ("10.2", {"direction_from_positions": _direction_without_sign}, f"{DIR_SPEED_2}: "),
    ("10.2", {"direction_from_positions": _direction_as_list}, f"{DIR_4} should return a torch tensor, got list"),
    ("10.3", {"conv3d_output_shape": _shape_no_floor}, f"{SHAPE_C1}: the frames should be an int, got float 6.0"),
    ("10.3", {"conv3d_output_shape": _shape_one_padding}, f"{SHAPE_STRIDED} should be (6, 16, 16), got (6, 15, 15)"),
    ("10.3", {"conv3d_output_shape": _shape_tuples_only}, f"{SHAPE_STRIDED} should be (6, 16, 16), got (6, 28, 28)"),
    ("10.3", {"conv3d_output_shape": _shape_as_tensor},
     f"{SHAPE_C1} should return a tuple of 3 ints (frames, rows, columns), got a tensor of shape (3,)"),
    ("10.4", {"frame_differences": lambda clips: clips[:, :-1] - clips[:, 1:]}, f"{DIFF_RANDOM}: "),
    ("10.4", {"frame_differences": lambda clips: clips[:, 1:] - clips[:, :1]}, f"{DIFF_RANDOM}: "),
    ("10.4", {"frame_differences": lambda clips: clips.diff(dim=2)},
     f"{DIFF_RANDOM} should have shape (2, 4, 1, 6, 6), got (2, 5, 0, 6, 6)"),
    ("10.4", {"frame_differences": lambda clips: (clips[:, 1:] - clips[:, :-1]).abs()}, f"{DIFF_RANDOM}: "),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


def test_a_raising_function_fails_naming_the_exception(ns, capsys):
    def frame_differences(clips):
        raise RuntimeError("The size of tensor a (5) must match the size of tensor b (4)")
    assert_fails_in_one_line("10.4", {**ns, "frame_differences": frame_differences},
                             f"{DIFF_RANDOM} raised RuntimeError: The size of tensor a (5) must match", capsys)


def test_the_check_works_on_copies(ns, capsys):
    """A learner's function that changes its input in place does not spoil the reference."""
    def frame_differences(clips):
        out = clips[:, 1:] - clips[:, :-1]
        clips.zero_()
        return out
    result, _ = run_check("10.4", {**ns, "frame_differences": frame_differences}, capsys)
    assert result.status == "passed"


def test_a_missing_function_is_named(ns, capsys):
    assert_missing_name("10.2", ns, "direction_from_positions", capsys)


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_stub_is_not_attempted(exercise_id, ns, capsys):
    assert_stub_not_attempted(exercise_id, ns, capsys)


def _solution_lines() -> set[str]:
    """The solution regions' lines, and every computing line of the references, for the leak test."""
    references = (lesson10._reference_prediction, lesson10._reference_shape, lesson10._reference_differences)
    lines = {line.strip() for reference in references for line in inspect.getsource(reference).splitlines()}
    return solution_lines([SOLUTION]) | {line for line in lines
                                          if len(line) >= 12 and not line.startswith(('"""', "def "))}


def test_messages_never_show_the_solution(ns, capsys):
    assert_nothing_leaks(printed_lines(WRONG, lambda exercise_id: ns, capsys), _solution_lines())
