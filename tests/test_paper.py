"""The paper's facts in lenet_course.paper, checked against the paper's own arithmetic."""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from lenet_course import data, paper


def row(name: str) -> paper.LayerFacts:
    return next(r for r in paper.LAYERS if r.layer == name)


def test_layer_order_and_names():
    assert paper.LAYER_NAMES == ("C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT")
    assert paper.INPUT_SHAPE == (1, 32, 32)


def test_rows_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        row("C1").params = 0  # type: ignore[misc]


@pytest.mark.parametrize("name, shape", [
    ("C1", (6, 28, 28)), ("S2", (6, 14, 14)), ("C3", (16, 10, 10)), ("S4", (16, 5, 5)),
    ("C5", (120, 1, 1)), ("F6", (84,)), ("OUTPUT", (10,)),
])
def test_output_shapes(name, shape):
    assert row(name).output_shape == shape


def test_sizes_follow_from_valid_convolution_and_halving():
    c1, s2, c3, s4, c5 = (row(n) for n in ("C1", "S2", "C3", "S4", "C5"))
    assert c1.size == (32 - 5 + 1,) * 2
    assert s2.size == (c1.size[0] // 2,) * 2
    assert c3.size == (s2.size[0] - 5 + 1,) * 2
    assert s4.size == (c3.size[0] // 2,) * 2
    assert c5.size == (s4.size[0] - 5 + 1,) * 2


def test_c1():
    assert row("C1").kernel == (5, 5)
    assert row("C1").params == 6 * (25 + 1) == 156
    assert row("C1").connections == 156 * 28 * 28 == 122_304


def test_s2():
    assert row("S2").kernel == (2, 2)
    assert row("S2").params == 6 * 2 == 12
    assert row("S2").connections == 6 * 14 * 14 * (4 + 1) == 5_880


def test_c3():
    links = sum(len(inputs) for inputs in paper.C3_TABLE)
    assert row("C3").params == links * 25 + 16 == 1_516
    assert row("C3").connections == 1_516 * 10 * 10 == 151_600


def test_s4():
    assert row("S4").params == 16 * 2 == 32
    assert row("S4").connections == 16 * 5 * 5 * 5 == 2_000


def test_c5_f6_output():
    assert row("C5").params == row("C5").connections == 120 * (16 * 25 + 1) == 48_120
    assert row("F6").params == row("F6").connections == 84 * (120 + 1) == 10_164
    assert row("OUTPUT").params == 0
    assert row("OUTPUT").connections == 10 * 84 == 840
    assert math.prod(paper.PROTOTYPE_SHAPE) == row("F6").maps == 84


def test_totals():
    assert sum(r.params for r in paper.LAYERS) == paper.PARAMS_TOTAL == 60_000
    assert sum(r.connections for r in paper.LAYERS) == paper.CONNECTIONS_TOTAL == 340_908
    full_c3 = 16 * (6 * 25 + 1)
    linear_output = 10 * (84 + 1)
    assert full_c3 == 2_416 and linear_output == 850
    assert 156 + full_c3 + 48_120 + 10_164 + linear_output == paper.MODERN_PARAMS_TOTAL == 61_706


def test_table_one():
    table = paper.C3_TABLE
    assert len(table) == 16
    assert sum(len(inputs) for inputs in table) == 60
    expected = [
        {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {0, 4, 5}, {0, 1, 5},
        {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {0, 3, 4, 5}, {0, 1, 4, 5}, {0, 1, 2, 5},
        {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},
        {0, 1, 2, 3, 4, 5},
    ]
    assert [set(inputs) for inputs in table] == expected
    assert all(len(set(inputs)) == len(inputs) for inputs in table)
    assert isinstance(table, tuple) and all(isinstance(inputs, tuple) for inputs in table)


def test_table_one_structure():
    """Maps 0-5 read 3 cyclically adjacent maps, 6-11 read 4 adjacent, 12-14 read 4 non-adjacent."""
    def adjacent(inputs):
        return any(set(inputs) == {(start + i) % 6 for i in range(len(inputs))} for start in range(6))
    table = paper.C3_TABLE
    assert all(len(t) == 3 and adjacent(t) for t in table[0:6])
    assert all(len(t) == 4 and adjacent(t) for t in table[6:12])
    assert all(len(t) == 4 and not adjacent(t) for t in table[12:15])
    # every S2 map feeds the same number of C3 maps: 10
    assert all(sum(c in t for t in table) == 10 for c in range(6))


def test_squashing_constants():
    assert paper.A == 1.7159
    assert paper.S == 2 / 3
    assert abs(paper.A * math.tanh(paper.S * 1.0) - 1.0) < 1e-4
    assert abs(paper.A * math.tanh(paper.S * -1.0) + 1.0) < 1e-4


def test_input_scaling_comes_from_data():
    assert paper.INPUT_BACKGROUND is data.BACKGROUND
    assert paper.INPUT_FOREGROUND is data.FOREGROUND
    assert (paper.INPUT_BACKGROUND, paper.INPUT_FOREGROUND) == (-0.1, 1.175)


def test_training_constants():
    assert paper.INIT_SCALE == 2.4
    assert paper.MU == 0.02
    assert paper.HESSIAN_SAMPLES == 500
    assert paper.EPOCHS == 20


def test_schedule_table():
    assert paper.LR_SCHEDULE == ((2, 0.0005), (3, 0.0002), (3, 0.0001), (4, 0.00005), (8, 0.00001))
    assert sum(passes for passes, _ in paper.LR_SCHEDULE) == paper.EPOCHS


def test_learning_rate_per_pass():
    expected = [0.0005] * 2 + [0.0002] * 3 + [0.0001] * 3 + [0.00005] * 4 + [0.00001] * 8
    assert [paper.learning_rate(e) for e in range(paper.EPOCHS)] == expected
    assert paper.learning_rate(20) == paper.learning_rate(100) == 0.00001


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_learning_rate_rejects(bad, error):
    with pytest.raises(error, match="epoch"):
        paper.learning_rate(bad)


def test_reported_errors():
    assert dict(paper.TEST_ERRORS) == {
        "linear classifier": 12.0, "k-NN Euclidean": 5.0, "40 PCA + quadratic": 3.3,
        "SVM poly-4": 1.1, "LeNet-1": 1.7, "LeNet-4": 1.1, "LeNet-5": 0.95,
        "LeNet-5, distortions": 0.8, "boosted LeNet-4, distortions": 0.7,
    }
    with pytest.raises(TypeError):
        paper.TEST_ERRORS["LeNet-5"] = 0.0  # type: ignore[index]


def test_paper_imports_no_torch():
    code = "import sys, lenet_course.paper; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
