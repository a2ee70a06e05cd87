"""The exercise checks of lessons 03 (C3's table) and 04 (the trunk), called directly from Python.

The references inside lenet_course/checks/lesson03.py and lesson04.py are pinned to the paper's
numbers and to the model's own layers; the solutions pass; typical wrong answers fail with a
message that names the exercise and what was expected; stubs are "not attempted"; no message
shows the solution. Also the two plotting helpers the lessons added (connection_table,
activation_curves).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch

from lenet_course.checks import MIMETYPE, TODO_MESSAGE, get_exercise, lesson_exercises
from lenet_course.checks import lesson03, lesson04
from lenet_course.layers import Subsampling, c3_mask, conv2d, sparse_conv2d, squash, squash_grad
from lenet_course.models import LeNetConfig, count_parameters, layer_table, lenet5
from lenet_course.paper import A, LAYERS, PARAMS_TOTAL, S

from exercise_testing import (
    assert_missing_name,
    assert_fails_with, assert_nothing_leaks, notebook_namespace, printed_lines, run_check, solution_lines,
)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = {"03": ROOT / "solutions" / "03_c3_table.ipynb", "04": ROOT / "solutions" / "04_trunk.ipynb"}
FACTS = {row.layer: row for row in LAYERS}


def _notebook(lesson: str) -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS[lesson], as_version=4)


def _solution_namespace(lesson: str) -> dict:
    """The solution notebook's definitions, run in this process: its parameters, setup and solution
    cells (not the check cells, nor the data and the closing cells)."""
    return notebook_namespace(SOLUTIONS[lesson],
                              lambda cell: cell.id in ("parameters", "setup") or cell.id.endswith("-solution"))


@pytest.fixture(scope="module")
def solved() -> dict[str, dict]:
    return {lesson: _solution_namespace(lesson) for lesson in SOLUTIONS}


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lesson, ids", [("03", ["03.1", "03.2", "03.3"]), ("04", ["04.1", "04.2", "04.3"])])
def test_each_lesson_registers_three_exercises(lesson, ids):
    exercises = lesson_exercises(lesson)
    assert [e.id for e in exercises] == ids
    assert all(e.title and e.hint and e.names for e in exercises)


# --------------------------------------------------------------------------------------------
# The references are the paper's numbers and the model's layers
# --------------------------------------------------------------------------------------------

def test_the_mask_tables_are_valid_and_the_bad_ones_are_refused_by_c3_mask():
    for _, table, n_inputs in lesson03.MASK_TABLES:
        mask = c3_mask(table, n_inputs)
        assert mask.shape == (len(table), n_inputs)
        assert mask.sum() == sum(len(inputs) for inputs in table)
    assert c3_mask(lesson03.MASK_TABLES[3][1], 5)[:, 4].sum() == 0  # the input map that feeds nothing
    for _, table, n_inputs in lesson03.BAD_TABLES:
        with pytest.raises(ValueError):
            c3_mask(table, n_inputs)


def test_the_masked_convolution_cases_are_what_they_say():
    cases = dict(lesson03.conv_cases())
    x, w, b, mask = cases["one 6-map 14x14 input through Table I's mask"]
    assert (w[mask == 0] != 0).all()  # the unconnected slices hold weights that must be masked out
    x, w, b, mask = cases["an all-zero mask: only the biases remain"]
    np.testing.assert_allclose(sparse_conv2d(x, w, b, mask), np.broadcast_to(b[:, None, None], (2, 2, 4, 4)))
    x, w, b, mask = cases["an all-ones mask: an ordinary convolution"]
    np.testing.assert_allclose(sparse_conv2d(x, w, b, mask), conv2d(x, w, b))


def test_table_counts_give_the_papers_c1_c3_c5_and_the_models_layer_table():
    cases = dict(lesson03.COUNT_CASES)
    paper_rows = {"C1": "C1 as a table", "C3": "Table I", "C5": "C5 as a table"}
    for layer, prefix in paper_rows.items():
        [args] = [a for description, a in cases.items() if description.startswith(prefix)]
        assert lesson03.table_conv_counts(*args) == (FACTS[layer].params, FACTS[layer].connections)
    full = {row["layer"]: row for row in layer_table(lenet5(LeNetConfig(c3="full")))}["C3"]
    [args] = [a for description, a in cases.items() if description.startswith("a full C3")]
    assert lesson03.table_conv_counts(*args) == (full["params"], full["connections"]) == (2_416, 241_600)


def _trunk_to_c5(model, height: int, width: int) -> tuple[int, ...]:
    h = torch.zeros(1, 1, height, width)
    with torch.no_grad():
        for layer in (model.c1, model.s2, model.c3, model.s4, model.c5):
            h = model.act(layer(h))
    return tuple(h.shape[1:])


@pytest.mark.parametrize("height, width", [args for _, args in lesson04.SHAPE_CASES]
                         + [(37, 37), (35, 48), (100, 33), (48, 48)])
def test_c5_output_shape_is_what_the_models_layers_produce(height, width):
    assert lesson04.c5_output_shape(height, width) == _trunk_to_c5(lenet5("paper"), height, width)


@pytest.mark.parametrize("height, width", [args for _, args in lesson04.TOO_SMALL] + [(31, 31), (32, 30)])
def test_inputs_too_small_for_the_trunk_fail_in_the_model_too(height, width):
    with pytest.raises(ValueError):
        lesson04.c5_output_shape(height, width)
    with pytest.raises((RuntimeError, ValueError)):
        _trunk_to_c5(lenet5("paper"), height, width)


def test_the_smallest_input_is_32_pixels_and_the_size_steps_by_4():
    assert lesson04.c5_output_shape(32, 32) == lesson04.c5_output_shape(35, 35) == (120, 1, 1)
    assert lesson04.c5_output_shape(36, 36) == (120, 2, 2)


def test_trunk_parameter_counts_are_the_papers_and_the_models():
    paper_args = dict(lesson04.TRUNK_CASES)["the paper's trunk: 6, Table I, 120, 84"]
    counts = lesson04.trunk_parameter_counts(*paper_args)
    assert counts == {layer: FACTS[layer].params for layer in lesson04.TRUNK_LAYERS}
    assert sum(counts.values()) == PARAMS_TOTAL
    full_model = lenet5(LeNetConfig(c3="full"))
    full = lesson04.trunk_parameter_counts(*dict(lesson04.TRUNK_CASES)["a full C3: 6, 16 maps each reading all 6, 120, 84"])
    assert full == {layer: count_parameters(getattr(full_model, layer.lower())) for layer in lesson04.TRUNK_LAYERS}


def test_a_small_trunk_counts_like_modules_of_those_sizes():
    c1_maps, table, c5_maps, f6_units = dict(lesson04.TRUNK_CASES)["a small trunk: 4, ((0, 1), (2, 3), (0, 1, 2, 3)), 50, 20"]
    from lenet_course.layers import SparseConv2d
    modules = {"C1": torch.nn.Conv2d(1, c1_maps, 5), "S2": Subsampling(c1_maps),
               "C3": SparseConv2d(c1_maps, len(table), 5, table), "S4": Subsampling(len(table)),
               "C5": torch.nn.Conv2d(len(table), c5_maps, 5), "F6": torch.nn.Linear(c5_maps, f6_units)}
    assert lesson04.trunk_parameter_counts(c1_maps, table, c5_maps, f6_units) == {
        name: count_parameters(m) for name, m in modules.items()}


# --------------------------------------------------------------------------------------------
# The solutions pass
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exercise_id", ["03.1", "03.2", "03.3", "04.1", "04.2", "04.3"])
def test_the_solutions_pass(exercise_id, solved, capsys):
    result, out = run_check(exercise_id, dict(solved[exercise_id[:2]]), capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


@pytest.mark.parametrize("lesson", ["03", "04"])
def test_the_committed_solutions_store_pass_records(lesson):
    checks = [cell for cell in _notebook(lesson).cells if cell.cell_type == "code" and "check(" in cell.source]
    exercises = lesson_exercises(lesson)
    assert len(checks) == len(exercises)
    for cell, ex in zip(checks, exercises):
        assert cell.source.startswith("# NBVAL_CHECK_OUTPUT\n")
        [output] = cell.outputs
        assert output.data["text/plain"] == f"[PASS] {ex.id} {ex.title}"
        assert output.data[MIMETYPE] == {"id": ex.id, "title": ex.title, "status": "passed", "message": ""}


# --------------------------------------------------------------------------------------------
# Wrong answers fail, naming the exercise and what was expected
# --------------------------------------------------------------------------------------------

def _mask_width_from_table(table, n_inputs):
    return c3_mask(table, max(max(inputs) for inputs in table) + 1)


def _mask_without_validation(table, n_inputs):
    mask = np.zeros((len(table), n_inputs))
    for k, inputs in enumerate(table):
        mask[k, list(inputs)] = 1.0
    return mask


def _mask_checking_only_the_top(table, n_inputs):
    if any(c >= n_inputs for inputs in table for c in inputs):
        raise ValueError("input map out of range")
    return _mask_without_validation(table, n_inputs)


def _counts(table, kernel_size, output_size, *, biases=True, positions=True, as_float=False):
    links = sum(len(inputs) for inputs in table)
    params = links * kernel_size ** 2 + (len(table) if biases else 0)
    connections = params * (output_size ** 2 if positions else 1)
    return (float(params), float(connections)) if as_float else (params, connections)


def _c5_shape_with(conv_cut=4, rounding=lambda s: s // 2, check_sizes=True, swap=False, layers=5):
    def c5_shape(height, width):
        size = [height, width]
        for n in range(layers):
            if check_sizes and min(size) < (5 if n % 2 == 0 else 2):
                raise ValueError("too small")
            size = [s - conv_cut for s in size] if n % 2 == 0 else [rounding(s) for s in size]
        return (120, size[1], size[0]) if swap else (120, size[0], size[1])
    return c5_shape


def _trunk(**changes):
    def trunk_parameters(c1_maps, c3_table, c5_maps, f6_units):
        counts = lesson04.trunk_parameter_counts(c1_maps, c3_table, c5_maps, f6_units)
        for layer, change in changes.items():
            counts[layer] = change(c1_maps, c3_table, c5_maps, f6_units)
        return counts
    return trunk_parameters


WRONG = [
    # 03.1
    ("03.1", {"connection_mask": lambda table, n: c3_mask(table, n).T},
     "connection_mask(Table I, 16 maps reading from 6) should have shape (16, 6), got (6, 16)"),
    ("03.1", {"connection_mask": lambda table, n: c3_mask(table, n).astype(np.int64)},
     "connection_mask(Table I, 16 maps reading from 6) should hold floats, got dtype int64"),
    ("03.1", {"connection_mask": _mask_width_from_table},
     "connection_mask(2 maps reading from 5, where input map 4 feeds nothing: (0, 1), (2, 3)) should have "
     "shape (2, 5), got (2, 4)"),
    ("03.1", {"connection_mask": _mask_without_validation},
     "connection_mask(a table naming input map 6 when the maps are 0 to 5: (0, 6)) should raise ValueError, "
     "but raised IndexError"),
    ("03.1", {"connection_mask": _mask_checking_only_the_top},
     "connection_mask(a table naming input map -1: (-1,)) should raise ValueError, but returned an array of "
     "shape (1, 6) and dtype float64"),
    ("03.1", {"connection_mask": lambda table, n: np.ones((len(table), n))},
     "connection_mask(Table I, 16 maps reading from 6): 36 of 96 values differ; first at [0, 3]: expected 0, got 1"),
    # 03.2
    ("03.2", {"masked_conv2d": lambda x, w, b, mask: conv2d(x, w, b)},
     "masked_conv2d(one 6-map 14x14 input through Table I's mask): "),
    ("03.2", {"masked_conv2d": lambda x, w, b, mask: sparse_conv2d(x, w, np.zeros_like(b), mask)},
     "masked_conv2d(one 6-map 14x14 input through Table I's mask): 1,600 of 1,600 values differ"),
    ("03.2", {"masked_conv2d": lambda x, w, b, mask: conv2d(x, w * mask[:, :, None, None], b)[:, :, 1:, 1:]},
     "masked_conv2d(one 6-map 14x14 input through Table I's mask) should have shape (1, 16, 10, 10), got (1, 16, 9, 9)"),
    ("03.2", {"masked_conv2d": lambda x, w, b, mask: conv2d(x, w * mask.T[:, :, None, None], b)},
     "masked_conv2d(one 6-map 14x14 input through Table I's mask) raised ValueError"),
    # 03.3
    ("03.3", {"table_counts": lambda t, k, o: _counts(t, k, o, biases=False)},
     "table_counts(Table I, 5x5 kernels, 10x10 maps) should be (1,516 parameters, 151,600 connections), "
     "got (1,500, 150,000)"),
    ("03.3", {"table_counts": lambda t, k, o: _counts(t, k, o, positions=False)},
     "should be (1,516 parameters, 151,600 connections), got (1,516, 1,516)"),
    ("03.3", {"table_counts": lambda t, k, o: _counts(t, k, o, as_float=True)},
     "table_counts(Table I, 5x5 kernels, 10x10 maps): parameters should be an int, got float 1516.0"),
    ("03.3", {"table_counts": lambda t, k, o: _counts(t, k, o)[0]},
     "table_counts(Table I, 5x5 kernels, 10x10 maps) should return a tuple (parameters, connections), got int 1516"),
    ("03.3", {"table_counts": lambda t, k, o: _counts(((0, 1, 2, 3, 4, 5),) * 16, k, o)},
     "table_counts(Table I, 5x5 kernels, 10x10 maps) should be (1,516 parameters, 151,600 connections), "
     "got (2,416, 241,600)"),
    # 04.1
    ("04.1", {"scaled_tanh": np.tanh},
     "scaled_tanh(a = [-1, 0, 1]): 2 of 3 values differ; first at [0]: expected -0.999997, got -0.761594"),
    ("04.1", {"scaled_tanh": lambda a: A * np.tanh(a)},
     "scaled_tanh(a = [-1, 0, 1]): 2 of 3 values differ; first at [0]: expected -0.999997, got -1.30682"),
    ("04.1", {"scaled_tanh": lambda a: 1 / (1 + np.exp(-a))},
     "scaled_tanh(a = [-1, 0, 1]): 3 of 3 values differ; first at [0]: expected -0.999997, got 0.268941"),
    ("04.1", {"scaled_tanh_grad": lambda a: A * (1 - np.tanh(S * a) ** 2)},
     "scaled_tanh_grad(a = [-1, 0, 1]): 3 of 3 values differ; first at [0]: expected 0.755412, got 1.13312"),
    ("04.1", {"scaled_tanh_grad": lambda a: A * S * (1 - np.tanh(a) ** 2)},
     "scaled_tanh_grad(a = [-1, 0, 1]): 2 of 3 values differ"),
    ("04.1", {"scaled_tanh": lambda a: A * (np.exp(2 * S * a) - 1) / (np.exp(2 * S * a) + 1)},
     "scaled_tanh(a = [-2000, -40, 40, 2000], far in the flat tails): 1 of 4 values differ; first at [3]: "
     "expected 1.7159, got nan"),
    ("04.1", {"scaled_tanh": lambda a: float(A * np.tanh(S * a[0]))},
     "scaled_tanh(a = [-1, 0, 1]) should return a numpy array, got float -0.99999"),
    # 04.2
    ("04.2", {"c5_shape": _c5_shape_with(layers=4)},
     "c5_shape(a 32x32 input, the paper's) should be (120, 1, 1), got tuple (120, 5, 5)"),
    ("04.2", {"c5_shape": _c5_shape_with(rounding=lambda s: -(-s // 2))},
     "c5_shape(a 33x33 input (odd sizes: subsampling drops the last row and column)) should be (120, 1, 1), "
     "got tuple (120, 2, 2)"),
    ("04.2", {"c5_shape": _c5_shape_with(rounding=lambda s: s / 2)},
     "c5_shape(a 32x32 input, the paper's) should be a tuple of three ints, got tuple (120, 1.0, 1.0)"),
    ("04.2", {"c5_shape": _c5_shape_with(swap=True)},
     "c5_shape(a 32x64 input, twice as wide) should be (120, 1, 9), got tuple (120, 9, 1)"),
    ("04.2", {"c5_shape": _c5_shape_with(check_sizes=False)},
     "c5_shape(a 28x28 input (an unpadded digit)) should raise ValueError, but returned tuple (120, 0, 0)"),
    ("04.2", {"c5_shape": _c5_shape_with(conv_cut=5)},
     "c5_shape(a 32x32 input, the paper's) raised ValueError: too small"),
    ("04.2", {"c5_shape": lambda h, w: [120, *_c5_shape_with()(h, w)[1:]]},
     "c5_shape(a 32x32 input, the paper's) should be (120, 1, 1), got list [120, 1, 1]"),
    # 04.3
    ("04.3", {"trunk_parameters": _trunk(C5=lambda c1, t, c5, f6: c5 * (c1 * 25 + 1))},
     "trunk_parameters(the paper's trunk: 6, Table I, 120, 84)['C5'] should be 48,120, got 18,120"),
    ("04.3", {"trunk_parameters": _trunk(S2=lambda c1, t, c5, f6: c1, S4=lambda c1, t, c5, f6: len(t))},
     "trunk_parameters(the paper's trunk: 6, Table I, 120, 84)['S2'] should be 12, got 6"),
    ("04.3", {"trunk_parameters": _trunk(F6=lambda c1, t, c5, f6: f6 * c5)},
     "trunk_parameters(the paper's trunk: 6, Table I, 120, 84)['F6'] should be 10,164, got 10,080"),
    ("04.3", {"trunk_parameters": _trunk(C3=lambda c1, t, c5, f6: len(t) * c1 * 25 + len(t))},
     "trunk_parameters(the paper's trunk: 6, Table I, 120, 84)['C3'] should be 1,516, got 2,416"),
    ("04.3", {"trunk_parameters": lambda *args: list(lesson04.trunk_parameter_counts(*args).values())},
     "trunk_parameters(the paper's trunk: 6, Table I, 120, 84) should return a dict from layer name to count, got list"),
    ("04.3", {"trunk_parameters": lambda *args: {k.lower(): v for k, v in lesson04.trunk_parameter_counts(*args).items()}},
     "should have the keys C1, S2, C3, S4, C5, F6, got 'c1', 's2', 'c3', 's4', 'c5', 'f6'"),
    ("04.3", {"trunk_parameters": lambda *args: {k: float(v) for k, v in lesson04.trunk_parameter_counts(*args).items()}},
     "trunk_parameters(the paper's trunk: 6, Table I, 120, 84)['C1'] should be an int, got float 156.0"),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, solved, capsys):
    with np.errstate(over="ignore", invalid="ignore"):
        assert_fails_with(exercise_id, {**solved[exercise_id[:2]], **answer}, expected, capsys)


REFERENCES = (lesson03.table_conv_counts, lesson04.c5_output_shape, lesson04.trunk_parameter_counts,
              c3_mask, sparse_conv2d, squash, squash_grad)


def test_messages_never_show_the_solution(solved, capsys):
    with np.errstate(over="ignore", invalid="ignore"):
        shown = printed_lines(WRONG, lambda exercise_id: solved[exercise_id[:2]], capsys)
    shown += [ex.hint for ex in [*lesson_exercises("03"), *lesson_exercises("04")]]
    assert_nothing_leaks(shown, solution_lines(SOLUTIONS.values(), REFERENCES))


# --------------------------------------------------------------------------------------------
# Stubs, missing names, broken answers
# --------------------------------------------------------------------------------------------

def _stub(exercise_id: str):
    def stub(*args):
        raise NotImplementedError(f"Exercise {exercise_id} (...): ...")
    return stub


@pytest.mark.parametrize("exercise_id", ["03.1", "03.2", "03.3", "04.1", "04.2", "04.3"])
def test_a_stub_is_not_attempted(exercise_id, solved, capsys):
    ex = get_exercise(exercise_id)
    namespace = {**solved[exercise_id[:2]], **{name: _stub(exercise_id) for name in ex.names}}
    result, out = run_check(exercise_id, namespace, capsys)
    assert result.status == "not_attempted"
    assert out == f"[TODO] {exercise_id} {ex.title}: {TODO_MESSAGE}\n"


def test_one_stub_of_two_functions_is_still_not_attempted(solved, capsys):
    namespace = {**solved["04"], "scaled_tanh_grad": _stub("04.1")}
    assert run_check("04.1", namespace, capsys)[0].status == "not_attempted"


def test_a_missing_name_fails_and_says_which(capsys):
    assert_missing_name("04.1", {"scaled_tanh": squash}, "scaled_tanh_grad", capsys)


def test_an_answer_that_is_not_a_function_fails_clearly(solved, capsys):
    result, _ = run_check("03.3", {**solved["03"], "table_counts": (1516, 151600)}, capsys)
    assert result.status == "failed"
    assert "`table_counts` should be a function, got tuple (1516, 151600)" in result.message


def test_answers_that_change_their_inputs_do_not_spoil_the_check(solved, capsys):
    def masked_conv2d(x, w, b, mask):
        w *= mask[:, :, None, None]   # in place: the check passes copies
        out = conv2d(x, w, b)
        x[:] = 0
        mask[:] = 1
        return out
    assert run_check("03.2", {**solved["03"], "masked_conv2d": masked_conv2d}, capsys)[0].status == "passed"


def test_numpy_integer_answers_are_accepted(solved, capsys):
    def table_counts(table, kernel_size, output_size):
        links = np.int64(sum(len(t) for t in table))
        params = links * kernel_size ** 2 + len(table)
        return params, params * output_size ** 2
    assert run_check("03.3", {**solved["03"], "table_counts": table_counts}, capsys)[0].status == "passed"


# --------------------------------------------------------------------------------------------
# The plotting helpers the lessons use
# --------------------------------------------------------------------------------------------

def test_connection_table_draws_one_x_per_link():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lenet_course.plots import connection_table
    fig = connection_table(c3_mask(), groups=[(0, 6, "3 adjacent"), (6, 16, "more")], title="Table I")
    try:
        [ax] = fig.axes
        texts = [t.get_text() for t in ax.texts]
        assert texts.count("X") == 60 and "3 adjacent" in texts and "more" in texts
        assert fig.get_size_inches()[0] <= 9
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"\(K, C\) mask"):
        connection_table(np.zeros(6))


def test_activation_curves_draws_each_curve_in_each_panel():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lenet_course.plots import activation_curves
    a = np.linspace(-3, 3, 61)
    fig = activation_curves(a, {"f": (squash(a), squash_grad(a), None), "tanh": (np.tanh(a), None, None)},
                            panel_titles=("f", "f'", "f''"))
    try:
        assert [len(ax.lines) - 2 for ax in fig.axes] == [2, 1, 0]  # minus the two axis lines per panel
        assert [ax.get_title() for ax in fig.axes] == ["f", "f'", "f''"]
    finally:
        plt.close(fig)
