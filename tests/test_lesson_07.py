"""Lesson 07 (looking inside): the exercise checks of lenet_course/checks/lesson07.py, called directly
from Python on the solution notebook's functions and on typical wrong answers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lenet_course.checks import get_exercise, lesson07, lesson_exercises
from lenet_course.data import BACKGROUND
from lenet_course.inspection import confusion_matrix

from exercise_testing import (
    assert_fails_in_one_line, assert_fails_with, assert_missing_name, assert_nothing_leaks, assert_stub_not_attempted,
    notebook_namespace, printed_lines, run_check, solution_lines,
)

SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "07_inspection.ipynb"
IDS = ["07.1", "07.2", "07.3", "07.4"]


@pytest.fixture(scope="module")
def solved() -> dict:
    """The namespace of the solution notebook run in this process, check cells left out."""
    return notebook_namespace(SOLUTION)


# --------------------------------------------------------------------------------------------
# Registry, the reference solutions, the cases
# --------------------------------------------------------------------------------------------

def test_lesson_07_registers_four_exercises():
    exercises = lesson_exercises("07")
    assert [e.id for e in exercises] == IDS
    assert all(e.title and e.hint and e.names for e in exercises)
    assert [e.names for e in exercises] == [("record_c3",), ("confusion",), ("occlusion_grid",), ("pca_2d",)]


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


def test_the_cases_are_what_their_descriptions_say():
    digits = lesson07.stroke_digits()
    assert digits.shape == (3, 28, 28) and digits.dtype == np.uint8
    assert all(d.max() == 255 and d[0].sum() == 0 for d in digits)      # ink inside, a blank border
    (_, (paper, _)), (_, (modern, noise)), _ = lesson07.hook_cases()
    assert paper.config.head == "rbf" and modern.config.head == "linear" and noise.shape == (4, 1, 32, 32)
    confusions = [confusion_matrix(*args) for _, args in lesson07.confusion_cases()]
    assert confusions[0].trace() == 5 and confusions[0][1, 7] == 1 and confusions[0][5, 3] == 1
    assert confusions[2][3:].sum() == 0 and confusions[2][:, 3:].sum() == 0
    assert confusions[3][7, 7] == 300 and lesson07.confusion_cases()[3][1][0].dtype == np.uint8
    shapes = [(x.shape, patch, stride) for _, (_, x, _, patch, stride) in lesson07.occlusion_cases()]
    assert shapes == [((1, 32, 32), 8, 4), ((1, 32, 32), 6, 2), ((1, 32, 32), 5, 3)]
    features, prototypes = lesson07.pca_cases()[1][1]
    assert np.abs(features.mean(axis=0)).max() > 5                     # far from centred
    assert lesson07.pca_cases()[0][1][1].shape == (10, 84)


def test_building_the_cases_leaves_the_global_generator_alone():
    state = torch.random.get_rng_state()
    lesson07.hook_cases()
    lesson07.occlusion_cases()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_solution_with_flipped_components_passes(ns, capsys):
    def pca_2d(features, prototypes):
        points, protos = ns_pca(features, prototypes)
        return -points, -protos
    ns_pca = ns["pca_2d"]
    result, _ = run_check("07.4", {**ns, "pca_2d": pca_2d}, capsys)
    assert result.status == "passed", result.message


# --------------------------------------------------------------------------------------------
# Wrong answers
# --------------------------------------------------------------------------------------------

def _recorder(layer: str, keep=lambda model, output: output, remove: bool = True):
    """record_c3 variants: hook ``layer``, keep ``keep(model, output)``, remove the hook or not."""
    def record(model, x):
        kept = []
        handle = getattr(model, layer).register_forward_hook(lambda m, i, o: kept.append(keep(model, o.detach())))
        with torch.no_grad():
            model(x)
        if remove:
            handle.remove()
        return kept[-1]
    return record


def _record_input(model, x):
    kept = []
    handle = model.c3.register_forward_hook(lambda m, inputs, o: kept.append(inputs[0].detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[0]


def _confusion_in_label_dtype(labels, predicted):
    matrix = np.zeros((10, 10), dtype=np.asarray(labels).dtype)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _confusion_of_present_classes(labels, predicted):
    classes = int(max(labels.max(), predicted.max())) + 1
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def _occlusion(fill=BACKGROUND, last=True, sign=1.0, subtract=True):
    """occlusion_grid variants: another fill value, the last corner left out, the sign flipped, no subtraction."""
    def grid(model, x, target, patch, stride):
        corners = range(0, 32 - patch + (1 if last else 0), stride)
        out = torch.zeros(len(corners), len(corners))
        with torch.no_grad():
            base = model.scores(x[None])[0, target] if subtract else 0.0
            for r, top in enumerate(corners):
                for c, left in enumerate(corners):
                    occluded = x.clone()
                    occluded[:, top:top + patch, left:left + patch] = fill
                    out[r, c] = sign * (base - model.scores(occluded[None])[0, target])
        return out
    return grid


def _pca(centre=True, own_mean_for_prototypes=False, rows=slice(0, 2), transpose=False):
    def pca_2d(features, prototypes):
        mean = features.mean(axis=0) if centre else 0.0
        _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
        directions = vt[rows]
        proto_mean = prototypes.mean(axis=0) if own_mean_for_prototypes else mean
        points, protos = (features - mean) @ directions.T, (prototypes - proto_mean) @ directions.T
        return (points.T, protos.T) if transpose else (points, protos)
    return pca_2d


HOOK_PAPER = "record_c3(the paper's LeNet-5 (seeded), 3 made-up digits)"
CONF_8 = "confusion(8 digits: labels [3, 1, 4, 1, 5, 9, 2, 6], predicted [3, 7, 4, 1, 3, 9, 2, 0])"
CONF_SEVENS = "confusion(300 sevens, all right, labels and predictions as uint8 (as MNIST stores labels))"
CONF_FEW = "confusion(6 digits of classes 0-2 only (the rows and columns of 3-9 stay 0))"
OCC_PAPER = "occlusion_grid(the paper's LeNet-5 (seeded), the made-up 1, target 1, patch 8, stride 4)"
PCA_F6 = "pca_2d(300 F6-like states (300, 84) and the 10 RBF prototypes (10, 84))"

WRONG = [
    ("07.1", {"record_c3": _recorder("c3", remove=False)},
     f"after {HOOK_PAPER} returned, the model still has 1 forward hook(s)"),
    ("07.1", {"record_c3": _recorder("c3", keep=lambda model, o: model.act(o))},
     f"{HOOK_PAPER} returned C3's maps after the squashing"),
    ("07.1", {"record_c3": _record_input}, f"{HOOK_PAPER} returned a tensor of shape (3, 6, 14, 14), S2's maps"),
    ("07.1", {"record_c3": _recorder("c1")}, f"{HOOK_PAPER} should have shape (3, 16, 10, 10), got (3, 6, 28, 28)"),
    ("07.1", {"record_c3": _recorder("output")}, f"{HOOK_PAPER} should have shape (3, 16, 10, 10), got (3, 10)"),
    ("07.1", {"record_c3": _recorder("c3", keep=lambda model, o: [o])}, f"{HOOK_PAPER} should return a torch tensor, got list"),
    ("07.1", {"record_c3": _recorder("c3", keep=lambda model, o: o.numpy())},
     f"{HOOK_PAPER} should return a torch tensor, got an array of shape (3, 16, 10, 10)"),
    ("07.2", {"confusion": lambda labels, predicted: confusion_matrix(predicted, labels)},
     f"{CONF_8} is the transpose of the expected matrix"),
    ("07.2", {"confusion": _confusion_in_label_dtype}, f"{CONF_SEVENS}: 1 of 100 values differ; first at [7, 7]: expected 300, got 44"),
    ("07.2", {"confusion": _confusion_of_present_classes}, f"{CONF_FEW} should have shape (10, 10), got (3, 3)"),
    ("07.2", {"confusion": lambda labels, predicted: confusion_matrix(labels, predicted).astype(float)},
     f"{CONF_8} should hold integers, got dtype float64"),
    ("07.2", {"confusion": lambda labels, predicted: confusion_matrix(labels, predicted).tolist()},
     f"{CONF_8} should return a numpy array, got list"),
    ("07.3", {"occlusion_grid": _occlusion(fill=0.0)}, f"{OCC_PAPER}: "),
    ("07.3", {"occlusion_grid": _occlusion(last=False)}, f"{OCC_PAPER} should have shape (7, 7), got (6, 6)"),
    ("07.3", {"occlusion_grid": _occlusion(sign=-1.0)}, f"{OCC_PAPER} has every value with the wrong sign"),
    ("07.3", {"occlusion_grid": _occlusion(subtract=False)}, f"{OCC_PAPER}: 49 of 49 values differ"),
    ("07.4", {"pca_2d": _pca(centre=False)}, f"the points of {PCA_F6} (each component's sign aside): 600 of 600 values"),
    ("07.4", {"pca_2d": _pca(own_mean_for_prototypes=True)},
     f"the prototype points of {PCA_F6} (each component's sign aside): 20 of 20 values differ"),
    ("07.4", {"pca_2d": _pca(rows=slice(-2, None))}, f"the points of {PCA_F6} (each component's sign aside): "),
    ("07.4", {"pca_2d": _pca(transpose=True)}, f"the points of {PCA_F6} should be an array of shape (300, 2), got an "
                                               "array of shape (2, 300)"),
    ("07.4", {"pca_2d": lambda features, prototypes: _pca()(features, prototypes)[0]},
     f"{PCA_F6} should return a tuple (points, prototype points), got an array of shape (300, 2)"),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


def test_the_wrong_fill_is_caught_on_values_not_shape(ns, capsys):
    result = assert_fails_with("07.3", {**ns, "occlusion_grid": _occlusion(fill=0.0)}, f"{OCC_PAPER}: ", capsys)
    assert "values differ" in result.message


def test_a_raising_function_fails_naming_the_exception(ns, capsys):
    def record_c3(model, x):
        raise RuntimeError("hook exploded")
    assert_fails_in_one_line("07.1", {**ns, "record_c3": record_c3},
                             f"{HOOK_PAPER} raised RuntimeError: hook exploded", capsys)


def test_a_missing_function_is_named(ns, capsys):
    assert_missing_name("07.3", ns, "occlusion_grid", capsys)


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_stub_is_not_attempted(exercise_id, ns, capsys):
    assert_stub_not_attempted(exercise_id, ns, capsys)


def test_messages_never_show_the_solution(ns, capsys):
    lines = solution_lines([SOLUTION], [lesson07._reference_pca])
    assert_nothing_leaks(printed_lines(WRONG, lambda exercise_id: ns, capsys), lines)
