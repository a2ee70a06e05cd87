"""The ablation runner (lenet_course.ablations): the grid, tidy rows, summaries, results files, gradient norms."""
from __future__ import annotations

import dataclasses
import json
import math
import statistics

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lenet_course import ablations  # noqa: E402
from lenet_course.ablations import (ROW_FIELDS, Ablation, AblationError, compare_to_references,  # noqa: E402
                                    format_summary, gradient_norms, paper_grid, plot_gradient_norms, plot_summary,
                                    run_ablations, summarize)
from lenet_course.data import MNIST  # noqa: E402
from lenet_course.distortions import Distort  # noqa: E402
from lenet_course.models import MODERN, PAPER, lenet5  # noqa: E402
from lenet_course.paper import LAYER_NAMES  # noqa: E402
from lenet_course.training import RECIPES, TrainConfig, prepare  # noqa: E402

TINY = TrainConfig(epochs=1, batch_size=32, lr=3e-3, schedule="constant", device="cpu")


@pytest.fixture(scope="module")
def data() -> MNIST:
    """Tiny made-up digits: 64 to train on, 32 to test."""
    rng = np.random.default_rng(0)
    return MNIST(rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64, dtype=np.uint8),
                 rng.integers(0, 256, (32, 28, 28), dtype=np.uint8), rng.integers(0, 10, 32, dtype=np.uint8), "sample")


def two_configs() -> list[Ablation]:
    return [Ablation("baseline", "baseline", MODERN, TINY),
            Ablation("max pooling", "pooling", dataclasses.replace(MODERN, pooling="max"), TINY, reference="baseline")]


@pytest.fixture
def count_training(monkeypatch):
    """Counts the runs that really train (calls of training.train through the runner)."""
    calls = []
    real = ablations.train

    def counting(variant, data, config, **kwargs):
        calls.append((variant, config.seed))
        return real(variant, data, config, **kwargs)
    monkeypatch.setattr(ablations, "train", counting)
    return calls


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------

def _differences(a: Ablation, b: Ablation) -> list[str]:
    fields = [f.name for f in dataclasses.fields(a.model) if getattr(a.model, f.name) != getattr(b.model, f.name)]
    return fields + (["distort"] if a.distort != b.distort else [])


def test_the_paper_grid_changes_one_factor_at_a_time():
    recipe = RECIPES["fast"](epochs=2)
    grid = paper_grid(recipe)
    by_name = {a.name: a for a in grid}
    assert len(by_name) == len(grid) == 10
    baseline = grid[0]
    assert (baseline.name, baseline.model, baseline.distort, baseline.reference) == ("baseline", PAPER, None, None)
    assert all(a.train == recipe for a in grid)
    for a in grid[1:]:
        assert len(_differences(a, by_name[a.reference])) == 1, a.name
    changed = {a.name: _differences(a, baseline) for a in grid[1:] if a.reference == "baseline"}
    assert changed == {"avg pooling": ["pooling"], "max pooling": ["pooling"], "sigmoid": ["activation"],
                       "ReLU": ["activation"], "full C3": ["c3"], "softmax + CE": ["head"], "distortions": ["distort"]}
    assert by_name["distortions"].distort == Distort(alpha=0.0)  # the paper's affine distortions
    assert {a.name for a in grid if a.reference == "softmax + CE"} == {"sigmoid, softmax", "ReLU, softmax"}
    assert paper_grid(recipe, Distort())[-1].distort == Distort()
    assert paper_grid()[0].train == RECIPES["fast"]()


def test_paper_grid_refuses_bad_recipes():
    with pytest.raises(TypeError, match="recipe must be a TrainConfig"):
        paper_grid("fast")
    with pytest.raises(ValueError, match="recipe.loss must be 'auto'"):
        paper_grid(TrainConfig(loss="map"))
    with pytest.raises(TypeError, match="distort must be a Distort"):
        paper_grid(None, distort=True)


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(name=""), ValueError, "Ablation.name must be a non-empty string"),
    (dict(model="paper"), TypeError, "model must be a LeNetConfig"),
    (dict(train=None), TypeError, "train must be a TrainConfig"),
    (dict(distort=0.5), TypeError, "distort must be a Distort or None"),
    (dict(reference="a"), ValueError, "reference must name another configuration"),
])
def test_an_ablation_checks_its_fields(kwargs, error, text):
    with pytest.raises(error, match=text):
        Ablation(**{"name": "a", "factor": "f", **kwargs})


@pytest.mark.parametrize("grid, seeds, error, text", [
    ([], [0], TypeError, "grid must be a non-empty list of Ablation"),
    (Ablation("a", "f"), [0], TypeError, "grid must be a non-empty list"),
    (["baseline"], [0], TypeError, "grid must hold Ablation objects only, got str"),
    ([Ablation("a", "f"), Ablation("a", "g")], [0], ValueError, "repeated: a"),
    ([Ablation("a", "f", reference="b")], [0], ValueError, "unknown: 'a' -> 'b'"),
    ([Ablation("a", "f")], 3, TypeError, r"seeds must be a non-empty list of ints, e.g. \[0, 1, 2\]"),
    ([Ablation("a", "f")], [0, 0], ValueError, "seeds must be distinct ints >= 0"),
    ([Ablation("a", "f")], [1.5], ValueError, "seeds must be distinct ints"),
])
def test_bad_grids_and_seeds_are_refused_before_training(grid, seeds, error, text, data, count_training):
    with pytest.raises(error, match=text):
        run_ablations(grid, data, seeds, progress=False)
    assert count_training == []


def test_data_must_be_mnist(count_training):
    with pytest.raises(TypeError, match="data must be an MNIST"):
        run_ablations(two_configs(), (np.zeros((2, 28, 28)), np.zeros(2)), [0], progress=False)


# --------------------------------------------------------------------------------------------
# Running: tidy rows, reproducible, results files, failures
# --------------------------------------------------------------------------------------------

def test_the_runner_returns_one_tidy_row_per_run(data, count_training):
    rows = run_ablations(two_configs(), data, [0, 1], progress=False)
    assert [tuple(r) for r in rows] == [ROW_FIELDS] * 4
    assert [(r["name"], r["factor"], r["seed"]) for r in rows] == [
        ("baseline", "baseline", 0), ("baseline", "baseline", 1), ("max pooling", "pooling", 0), ("max pooling", "pooling", 1)]
    assert all(r["epochs"] == 1 and 0 <= r["test_error"] <= 1 and r["train_seconds"] > 0 for r in rows)
    assert all(r["test_error"] * 32 == pytest.approx(round(r["test_error"] * 32)) for r in rows)  # k wrong of 32
    assert count_training == [(MODERN, 0), (MODERN, 1), (dataclasses.replace(MODERN, pooling="max"), 0),
                              (dataclasses.replace(MODERN, pooling="max"), 1)]
    again = run_ablations(two_configs()[:1], data, [1], progress=False)
    assert again[0]["test_error"] == rows[1]["test_error"]  # a run depends on its seed only


def test_distortions_reach_the_training(data, monkeypatch):
    seen = []
    real = ablations.train
    monkeypatch.setattr(ablations, "train", lambda *a, **k: seen.append(k["augment"]) or real(*a, **k))
    grid = [Ablation("plain", "f", MODERN, TINY), Ablation("distorted", "f", MODERN, TINY, Distort())]
    run_ablations(grid, data, [0], progress=False)
    assert seen == [None, Distort()]


def test_a_results_file_keeps_every_run_and_is_reused(data, tmp_path, count_training):
    path = tmp_path / "runs.json"
    rows = run_ablations(two_configs(), data, [0, 1], results=path, progress=False)
    saved = json.loads(path.read_text())
    assert saved["format"] == "lenet-course ablations 1" and len(saved["runs"]) == 4
    assert not list(tmp_path.glob("*.part"))  # written atomically: no temp files left
    del count_training[:]
    assert run_ablations(two_configs(), data, [0, 1], results=path, progress=False) == rows
    assert count_training == []  # nothing trained again
    bigger = two_configs() + [Ablation("slower", "lr", MODERN, dataclasses.replace(TINY, lr=1e-3), reference="baseline")]
    more = run_ablations(bigger, data, [0, 1, 2], results=path, progress=False)
    assert more[:2] + more[3:5] == rows
    assert [(r["name"], r["seed"]) for r in more if (r["name"], r["seed"]) not in {(x["name"], x["seed"]) for x in rows}] \
        == [("baseline", 2), ("max pooling", 2), ("slower", 0), ("slower", 1), ("slower", 2)]
    assert len(count_training) == 5  # only the new runs trained; a changed TrainConfig is a new run
    other = MNIST(data.train_images[:48], data.train_labels[:48], data.test_images, data.test_labels, "sample")
    run_ablations(two_configs()[:1], other, [0], results=path, progress=False)
    assert len(count_training) == 6  # other data: trained again
    assert len(json.loads(path.read_text())["runs"]) == 10  # and the earlier runs are still there
    same_size = MNIST(data.train_images[16:64], data.train_labels[16:64], data.test_images, data.test_labels, "sample")
    run_ablations(two_configs()[:1], same_size, [0], results=path, progress=False)
    assert len(count_training) == 7  # other digits of the same size and source: trained again


def test_a_failing_run_loses_nothing(data, tmp_path, monkeypatch):
    real = ablations.train
    calls = []

    def fails_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)
    monkeypatch.setattr(ablations, "train", fails_third)
    path = tmp_path / "runs.json"
    with pytest.raises(AblationError, match=r"run 'max pooling' \(seed 0\) failed after 2 finished run\(s\): "
                                            r"RuntimeError: out of memory") as info:
        run_ablations(two_configs(), data, [0, 1], results=path, progress=False)
    assert [(r["name"], r["seed"]) for r in info.value.rows] == [("baseline", 0), ("baseline", 1)]
    assert isinstance(info.value.__cause__, RuntimeError)
    assert len(json.loads(path.read_text())["runs"]) == 2
    rows = run_ablations(two_configs(), data, [0, 1], results=path, progress=False)  # the re-run completes the grid
    assert len(calls) == 5 and rows[:2] == info.value.rows


@pytest.mark.parametrize("content, text", [
    ("{not json", "not a readable results file"),
    ('{"runs": []}', "not a lenet-course ablation results file"),
])
def test_a_broken_results_file_is_a_clear_error(data, tmp_path, content, text, count_training):
    path = tmp_path / "runs.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=text):
        run_ablations(two_configs(), data, [0], results=path, progress=False)
    assert count_training == []


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------

def _row(name, seed, error, factor="f", epochs=3, seconds=10.0):
    return {"name": name, "factor": factor, "seed": seed, "epochs": epochs, "test_error": error,
            "train_seconds": seconds}


def test_summarize_computes_mean_sample_std_min_max_and_seconds():
    rows = [_row("b", 0, 0.012, "pooling", seconds=4.0), _row("a", 0, 0.010, seconds=2.0), _row("b", 1, 0.016, "pooling"),
            _row("a", 1, 0.014, seconds=4.0), _row("a", 2, 0.015, seconds=6.0), _row("c", 0, 0.9, epochs=1)]
    summary = {s["name"]: s for s in summarize(rows)}
    assert list(summary) == ["b", "a", "c"]  # order of first appearance
    a = summary["a"]
    assert (a["n"], a["epochs"], a["factor"]) == (3, 3, "f")
    assert a["mean"] == pytest.approx(0.013)
    assert a["std"] == pytest.approx(statistics.stdev([0.010, 0.014, 0.015]))  # n - 1, not n
    assert a["std"] != pytest.approx(statistics.pstdev([0.010, 0.014, 0.015]))
    assert (a["min"], a["max"], a["seconds"]) == (0.010, 0.015, pytest.approx(4.0))
    assert summary["b"]["std"] == pytest.approx(math.sqrt(2) * 0.002) and summary["b"]["factor"] == "pooling"
    assert summary["c"]["n"] == 1 and math.isnan(summary["c"]["std"])
    mixed = summarize([_row("a", 0, 0.1, epochs=2), _row("a", 1, 0.2, epochs=3)])
    assert mixed[0]["epochs"] == [2, 3]


@pytest.mark.parametrize("rows, text", [
    ([], "rows must be a non-empty list"),
    ({"name": "a"}, "rows must be a non-empty list"),
    ([_row("a", 0, 0.1), {"name": "a", "seed": 1}], r"rows\[1\] lacks factor, epochs, test_error, train_seconds"),
])
def test_summarize_refuses_rows_it_cannot_read(rows, text):
    with pytest.raises(ValueError, match=text):
        summarize(rows)


def test_compare_to_references_gives_differences_and_verdicts():
    rows = ([_row("baseline", s, e) for s, e in enumerate([0.0120, 0.0124, 0.0122])]
            + [_row("worse", s, e) for s, e in enumerate([0.0200, 0.0210, 0.0190])]
            + [_row("same", s, e) for s, e in enumerate([0.0119, 0.0127, 0.0121])]
            + [_row("single", 0, 0.0100)])
    grid = [Ablation("baseline", "b"), Ablation("worse", "f", reference="baseline"),
            Ablation("same", "f", reference="baseline"), Ablation("single", "f", reference="baseline"),
            Ablation("not run", "f", reference="baseline")]
    result = {c["name"]: c for c in compare_to_references(summarize(rows), grid)}
    assert list(result) == ["worse", "same", "single"]
    assert result["worse"]["difference"] == pytest.approx(0.0078)
    assert result["worse"]["se"] == pytest.approx(math.sqrt(0.001 ** 2 / 3 + 0.0002 ** 2 / 3))
    assert [result[n]["verdict"] for n in result] == ["worse", "within the noise", "one run: no spread"]
    better = compare_to_references(summarize(rows), [Ablation("worse", "b"), Ablation("baseline", "f", reference="worse")])
    assert better[0]["verdict"] == "better"


def test_format_summary_prints_percentages():
    text = format_summary(summarize([_row("max pooling", 0, 0.0125, "pooling"), _row("max pooling", 1, 0.0135, "pooling"),
                                     _row("single", 0, 0.02)]))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["configuration", "factor", "runs"]
    assert lines[2].split() == ["max", "pooling", "pooling", "2", "3", "1.30%", "0.07", "1.25", "1.35", "10.0"]
    assert lines[3].split()[4:6] == ["2.00%", "-"]


# --------------------------------------------------------------------------------------------
# Gradient norms
# --------------------------------------------------------------------------------------------

def _probe(n: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    digits = (torch.rand(n, 28, 28, generator=g) > 0.8).to(torch.uint8).numpy() * 255
    return prepare(digits, torch.randint(0, 10, (n,), generator=g).numpy())


def _net(config, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return lenet5(config)


def test_gradient_norms_has_one_positive_value_per_layer_and_leaves_grads_alone():
    x, y = _probe()
    net = _net(PAPER)
    norms = gradient_norms(net, x, y)
    assert list(norms) == list(LAYER_NAMES)
    assert all(isinstance(v, float) and v > 0 for v in norms.values())
    assert all(p.grad is None for p in net.parameters())


def test_gradient_norms_at_the_output_are_the_softmax_error():
    x, y = _probe()
    net = _net(MODERN)
    with torch.no_grad():
        expected = (F.softmax(net(x), 1) - F.one_hot(y, 10)).norm(dim=1).mean().item()  # d(sum of CE)/d logits
    assert gradient_norms(net, x, y)["OUTPUT"] == pytest.approx(expected, rel=1e-5)


def test_gradient_norms_do_not_depend_on_the_batch_size():
    x, y = _probe(16)
    net = _net(PAPER)
    once = gradient_norms(net, x, y)
    twice = gradient_norms(net, torch.cat([x, x]), torch.cat([y, y]))
    assert all(twice[k] == pytest.approx(once[k], rel=1e-4) for k in once)


def test_the_sigmoid_makes_the_gradient_vanish():
    x, y = _probe(64)
    ratio = {}
    for activation in ("sigmoid", "scaled_tanh"):
        norms = gradient_norms(_net(dataclasses.replace(PAPER, activation=activation)), x, y)
        ratio[activation] = norms["C1"] / norms["F6"]
    assert ratio["sigmoid"] < ratio["scaled_tanh"] / 100


def test_gradient_norms_refuses_bad_inputs():
    x, y = _probe(4)
    with pytest.raises(TypeError, match="model must be a LeNet5"):
        gradient_norms(torch.nn.Linear(3, 3), x, y)
    with pytest.raises(ValueError, match="x must be images"):
        gradient_norms(_net(PAPER), x, y[:3])
    with pytest.raises(ValueError, match="loss 'mse' is for the RBF head"):
        gradient_norms(_net(MODERN), x, y, loss="mse")


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def test_plot_summary_draws_each_configuration_with_its_spread():
    rows = ([_row("baseline", s, e, "baseline") for s, e in enumerate([0.012, 0.013])]
            + [_row("sigmoid", s, 0.9, "activation") for s in range(2)]
            + [_row("relu", 0, 0.02, "activation")])
    fig = plot_summary(summarize(rows), rows, title="t")
    try:
        ax = fig.axes[0]
        assert len(ax.containers) == 3  # one error bar per configuration
        assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "sigmoid", "relu"]
        assert ax.get_yscale() == "log"  # 1.2% to 90%
        assert ax.lines[-1].get_linestyle() == "--"  # the baseline's mean
        assert ax.get_title() == "t"
    finally:
        plt.close(fig)
    fig = plot_summary(summarize(rows[:2]))
    try:
        assert fig.axes[0].get_yscale() == "linear"
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="at least one configuration"):
        plot_summary([])


def test_plot_gradient_norms_draws_one_line_per_series_on_a_log_scale():
    norms = {"a": dict.fromkeys(LAYER_NAMES, 1.0), "b": dict.fromkeys(LAYER_NAMES, 1e-3)}
    fig = plot_gradient_norms(norms)
    try:
        ax = fig.axes[0]
        assert len(ax.lines) == 2 and ax.get_yscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == list(LAYER_NAMES)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="at least one series"):
        plot_gradient_norms({})
    with pytest.raises(ValueError, match="series 'b' has layers"):
        plot_gradient_norms({"a": dict.fromkeys(LAYER_NAMES, 1.0), "b": {"C1": 1.0}})
