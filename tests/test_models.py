"""LeNet-5 as assembled by lenet_course.models, against the paper's table."""
from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch
from torch import nn

from lenet_course import paper
from lenet_course.data import to_tensor
from lenet_course.layers import RBFOutput, SparseConv2d, Subsampling
from lenet_course.models import (MODERN, PAPER, LeNet5, LeNetConfig, count_parameters, format_layer_table,
                                 init_paper_, layer_table, lenet5, predict)

CHOICES = {f.name: typing.get_args(typing.get_type_hints(LeNetConfig)[f.name])
           for f in dataclasses.fields(LeNetConfig)}
ALL_CONFIGS = [LeNetConfig(**dict(zip(CHOICES, values))) for values in itertools.product(*CHOICES.values())]


@pytest.fixture(autouse=True)
def _seeded():
    """Each test draws its weights from a fixed seed, leaving the global generator as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------

def test_presets():
    assert PAPER == LeNetConfig()
    assert PAPER == LeNetConfig("scaled_tanh", "trainable", "table", "rbf", "paper")
    assert MODERN == LeNetConfig("relu", "avg", "full", "linear", "default")
    assert lenet5().config == lenet5("paper").config == PAPER
    assert lenet5("modern").config == MODERN
    assert lenet5(MODERN).config == MODERN


def test_config_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.head = "linear"  # type: ignore[misc]
    with pytest.raises(ValueError, match="activation .*'relu'.*got 'gelu'"):
        LeNetConfig(activation="gelu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pooling"):
        LeNetConfig(pooling="Max")  # type: ignore[arg-type]


def test_lenet5_rejects_unknown_variant():
    with pytest.raises(ValueError, match="'paper', 'modern'"):
        lenet5("classic")
    with pytest.raises(TypeError, match="LeNetConfig"):
        LeNet5({"head": "rbf"})  # type: ignore[arg-type]


def test_every_choice_is_covered():
    assert len(ALL_CONFIGS) == 4 * 3 * 2 * 2 * 2


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: "-".join(dataclasses.astuple(c)))
def test_every_config_builds_runs_and_is_measured(config):
    model = lenet5(config)
    x = torch.randn(2, 1, 32, 32)
    y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert model.scores(x).shape == (2, 10)
    rows = layer_table(model)
    assert [r["output_shape"] for r in rows] == [f.output_shape for f in paper.LAYERS]
    expected_params = (156 + (12 + 32 if config.pooling == "trainable" else 0)
                       + (1_516 if config.c3 == "table" else 2_416)
                       + 48_120 + 10_164 + (0 if config.head == "rbf" else 850))
    assert count_parameters(model) == sum(r["params"] for r in rows) == expected_params


# --------------------------------------------------------------------------------------------
# Parameter counts and the table against the paper
# --------------------------------------------------------------------------------------------

def test_paper_has_60000_parameters():
    model = lenet5("paper")
    assert count_parameters(model) == paper.PARAMS_TOTAL == 60_000
    # the raw tensors also hold C3's 16 * 6 * 25 - 1,500 = 900 unconnected weight slots
    assert sum(p.numel() for p in model.parameters()) == 60_000 + 900


def test_modern_has_61706_parameters():
    model = lenet5("modern")
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) == paper.MODERN_PARAMS_TOTAL
    assert [r["params"] for r in layer_table(model)] == [156, 0, 2_416, 0, 48_120, 10_164, 850]


def test_paper_layer_table_equals_the_paper():
    rows = layer_table(lenet5("paper"))
    assert [r["layer"] for r in rows] == list(paper.LAYER_NAMES)
    for row, facts in zip(rows, paper.LAYERS):
        assert row == {"layer": facts.layer, "output_shape": facts.output_shape,
                       "params": facts.params, "connections": facts.connections}
    assert [r["connections"] for r in rows] == [122_304, 5_880, 151_600, 2_000, 48_120, 10_164, 840]
    assert sum(r["connections"] for r in rows) == paper.CONNECTIONS_TOTAL


def test_modern_connections():
    rows = layer_table(lenet5("modern"))
    assert [r["connections"] for r in rows] == [122_304, 6 * 14 * 14 * 4, 100 * (2_400 + 16),
                                                16 * 5 * 5 * 4, 48_120, 10_164, 850]


def test_count_parameters_skips_frozen_layers():
    model = lenet5("paper")
    for p in model.c3.parameters():
        p.requires_grad_(False)
    assert count_parameters(model) == 60_000 - 1_516


def test_layer_table_leaves_no_hooks_and_keeps_mode():
    model = lenet5("paper").train()
    layer_table(model)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_format_layer_table():
    text = format_layer_table(layer_table(lenet5("paper")))
    lines = text.splitlines()
    for name in paper.LAYER_NAMES:
        assert any(line.startswith(name) and "differs" not in line and line.count("ok") == 2
                   for line in lines), name
    total = next(line for line in lines if line.startswith("total"))
    assert "60,000" in total and "340,908" in total and "differs" not in total
    assert "paper" in lines[0]
    modern = format_layer_table(layer_table(lenet5("modern")))
    assert "61,706" in modern and "differs" in modern


def test_format_layer_table_rejects_unknown_layer():
    with pytest.raises(ValueError, match="unknown layer 'X1'"):
        format_layer_table([{"layer": "X1", "output_shape": (1,), "params": 0, "connections": 0}])


# --------------------------------------------------------------------------------------------
# Structure, forward and initialisation
# --------------------------------------------------------------------------------------------

def test_paper_structure():
    model = lenet5("paper")
    assert isinstance(model.s2, Subsampling) and isinstance(model.s4, Subsampling)
    assert isinstance(model.c3, SparseConv2d) and isinstance(model.output, RBFOutput)
    assert not any(name.startswith("output") for name, _ in model.named_parameters())


def test_modern_structure():
    model = lenet5("modern")
    assert isinstance(model.s2, nn.AvgPool2d) and isinstance(model.c3, nn.Conv2d)
    assert isinstance(model.act, nn.ReLU) and isinstance(model.output, nn.Linear)


def test_output_shapes_per_layer():
    model = lenet5("paper")
    x = torch.randn(3, 1, 32, 32)
    for name, facts in zip(paper.LAYER_NAMES, paper.LAYERS):
        x = getattr(model, name.lower())(x.flatten(1) if name == "F6" else x)
        assert tuple(x.shape) == (3, *facts.output_shape), name


@pytest.mark.parametrize("bad", [(2, 1, 28, 28), (2, 3, 32, 32), (1, 32, 32)])
def test_forward_rejects_wrong_input(bad):
    with pytest.raises(ValueError, match=r"\(N, 1, 32, 32\)"):
        lenet5()(torch.zeros(bad))


def test_scores_are_higher_is_better():
    x = torch.randn(4, 1, 32, 32)
    rbf, linear = lenet5("paper"), lenet5("modern")
    torch.testing.assert_close(rbf.scores(x), -rbf(x))
    torch.testing.assert_close(linear.scores(x), linear(x))


def fan_ins() -> dict[str, torch.Tensor]:
    c3_links = torch.tensor([len(inputs) for inputs in paper.C3_TABLE], dtype=torch.float64)
    return {"c1": torch.full((6,), 25.0), "s2": torch.full((6,), 4.0), "c3": 25 * c3_links,
            "s4": torch.full((16,), 4.0), "c5": torch.full((120,), 400.0), "f6": torch.full((84,), 120.0)}


def test_paper_init_bounds():
    model = lenet5("paper")
    for name, fan_in in fan_ins().items():
        bound = paper.INIT_SCALE / fan_in
        for pname, p in getattr(model, name).named_parameters():
            per_unit = p.detach().double().abs().reshape(len(fan_in), -1).amax(dim=1)
            assert (per_unit <= bound).all(), f"{name}.{pname} exceeds +-2.4/F"
            if p[0].numel() >= 25:  # enough draws per unit to come close to the bound
                assert (per_unit >= 0.8 * bound).all(), f"{name}.{pname} is not spread over +-2.4/F"
    # C3: each map's bound uses only its connected inputs (75, 100 or 150)
    c3 = model.c3.weight.detach().abs().flatten(1).amax(dim=1)
    assert c3[0] > paper.INIT_SCALE / 100 and c3[15] <= paper.INIT_SCALE / 150
    assert (model.c3.weight[torch.from_numpy(model.c3.mask.numpy() == 0)] == 0).all()


def test_paper_init_of_linear_head():
    model = lenet5(LeNetConfig(head="linear"))
    assert model.output.weight.abs().max() <= paper.INIT_SCALE / 84


def test_init_paper_redraws_in_place():
    model = lenet5("modern")
    before = model.c1.weight.detach().clone()
    init_paper_(model)
    assert not torch.equal(before, model.c1.weight)
    assert model.c1.weight.abs().max() <= paper.INIT_SCALE / 25


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["paper", "modern"])
def test_predict_shape_dtype_and_rule(variant):
    model = lenet5(variant).train()
    images = digits(7)
    labels = predict(model, images, batch_size=3)
    assert labels.shape == (7,) and labels.dtype == np.int64
    assert ((labels >= 0) & (labels <= 9)).all()
    assert model.training, "predict must restore the model's mode"
    with torch.no_grad():
        out = model.eval()(to_tensor(images))
    rule = out.argmin(dim=1) if variant == "paper" else out.argmax(dim=1)
    np.testing.assert_array_equal(labels, rule.numpy())
    np.testing.assert_array_equal(predict(model, images), labels)


def test_predict_picks_the_nearest_prototype():
    model = lenet5("paper")
    # make F6's output (through the squashing) equal to the prototype of class 7
    target = model.output.prototypes[7]
    with torch.no_grad():
        model.f6.weight.zero_()
        model.f6.bias.copy_(torch.atanh(target / paper.A) / paper.S)
    assert (predict(model, digits(3)) == 7).all()


def test_predict_accepts_other_integer_dtypes_and_empty_batches():
    model = lenet5("modern")
    images = digits(4)
    np.testing.assert_array_equal(predict(model, images.astype(np.int64)), predict(model, images))
    empty = predict(model, np.zeros((0, 28, 28), np.uint8))
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_predict_runs_in_the_models_dtype():
    model = lenet5("paper").double()
    assert predict(model, digits(2)).shape == (2,)


@pytest.mark.parametrize("bad, error, message", [
    (digits(2).astype(np.float32), TypeError, "uint8.*float32"),
    (digits(2) / 255.0, TypeError, "uint8.*float64"),
    (torch.zeros(2, 28, 28, dtype=torch.uint8), TypeError, "numpy array.*Tensor"),
    ([[0] * 28] * 28, TypeError, "numpy array.*list"),
    (np.zeros((28, 28), np.uint8), ValueError, r"\(N, 28, 28\).*\(28, 28\).*images\[None\]"),
    (np.zeros((2, 32, 32), np.uint8), ValueError, r"\(N, 28, 28\).*\(2, 32, 32\)"),
    (np.zeros((2, 1, 28, 28), np.uint8), ValueError, r"\(N, 28, 28\)"),
    (np.full((2, 28, 28), 256, np.int64), ValueError, "0..255.*256"),
    (np.full((2, 28, 28), -1, np.int16), ValueError, "0..255.*-1"),
    (np.zeros((2, 28, 28), bool), TypeError, "uint8.*bool"),
])
def test_predict_rejects_bad_input(bad, error, message):
    with pytest.raises(error, match=message):
        predict(lenet5("modern"), bad)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_predict_rejects_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        predict(lenet5("modern"), digits(2), batch_size=batch_size)


# --------------------------------------------------------------------------------------------
# Importing the package changes nothing global
# --------------------------------------------------------------------------------------------

def test_import_has_no_side_effects():
    code = (
        "import torch\n"
        "state, dtype, threads = torch.get_rng_state(), torch.get_default_dtype(), torch.get_num_threads()\n"
        "import lenet_course.models, lenet_course.layers, lenet_course.paper\n"
        "assert torch.equal(state, torch.get_rng_state()), 'the RNG state changed'\n"
        "assert (dtype, threads) == (torch.get_default_dtype(), torch.get_num_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == ""
