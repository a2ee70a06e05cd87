"""lenet_course.transfer: the UCI digits made to look like MNIST, n examples per class, a new head,
freezing, parameter groups and the trunk's smaller rate, the three strategies, compare() and its
table and plot."""
from __future__ import annotations

import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lenet_course.models import LeNet5, count_parameters, lenet5, load_pretrained  # noqa: E402
from lenet_course.paper import PARAMS_TOTAL  # noqa: E402
from lenet_course.training import TrainConfig, fit, prepare  # noqa: E402
from lenet_course.transfer import (  # noqa: E402
    STRATEGIES, TEST_PER_CLASS, TRUNK, compare, error_vs_size, format_summary, freeze,
    load_uci_digits, new_head, param_groups, per_class, run_config, summarize, to_mnist_frame,
    train_strategy, trainable_by_layer, transfer_model,
)

UCI_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # sklearn's load_digits, per class


@pytest.fixture(scope="module")
def task():
    return load_uci_digits()


@pytest.fixture(scope="module")
def tiny(task):
    """The UCI task with only 60 test digits, for quick training runs."""
    return dataclasses.replace(task, test_images=task.test_images[:60], test_labels=task.test_labels[:60])


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ink = image.astype(float)
    rows, cols = np.indices(ink.shape)
    return float((rows * ink).sum() / ink.sum()), float((cols * ink).sum() / ink.sum())


def _box(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


# --------------------------------------------------------------------------------------------
# The UCI digits in MNIST's format
# --------------------------------------------------------------------------------------------

def test_the_uci_digits_have_mnist_shapes_and_range(task):
    assert task.source == "uci"
    assert task.train_images.shape == (1797 - 10 * TEST_PER_CLASS, 28, 28) and task.test_images.shape == (500, 28, 28)
    assert task.train_images.dtype == task.test_images.dtype == np.uint8
    assert task.train_labels.shape == (1297,) and task.test_labels.shape == (500,)
    assert task.train_images.min() == 0 and task.train_images.max() == 255
    assert set(np.unique(task.train_labels)) == set(range(10))


def test_every_digit_fits_the_20x20_box_and_is_centred(task):
    images = np.concatenate([task.train_images, task.test_images])
    boxes = np.array([_box(image) for image in images])
    assert boxes.max() <= 20 and (boxes.max(axis=1) >= 19).all()  # the longer side is scaled to 20
    centres = np.array([_centre_of_mass(image) for image in images])
    assert np.abs(centres - 13.5).max() < 1.0


def test_the_split_is_stratified_complete_and_seeded(task):
    assert np.bincount(task.test_labels).tolist() == [TEST_PER_CLASS] * 10
    assert (np.bincount(task.train_labels) + np.bincount(task.test_labels)).tolist() == UCI_COUNTS
    again = load_uci_digits()
    assert np.array_equal(again.train_images, task.train_images) and np.array_equal(again.test_labels, task.test_labels)
    other = load_uci_digits(seed=1, test_per_class=20)
    assert np.bincount(other.test_labels).tolist() == [20] * 10 and len(other.train_labels) == 1597
    assert not np.array_equal(load_uci_digits(seed=1).test_images, task.test_images)


def test_the_digits_are_copies():
    mine = load_uci_digits()
    mine.train_images[0, 0, 0] = 7
    assert load_uci_digits().train_images[0, 0, 0] == 0


@pytest.mark.parametrize("value", [0, 174, -3, 2.5, True])
def test_a_bad_test_split_is_refused(value):
    with pytest.raises(ValueError, match="test_per_class must be an int from 1 to 173"):
        load_uci_digits(test_per_class=value)


def test_to_mnist_frame_scales_a_bar_and_centres_it():
    bar = np.zeros((1, 8, 8), dtype=int)
    bar[0, :, 1:3] = 16  # a full-height stroke, 2 pixels wide, off-centre
    frame = to_mnist_frame(bar)
    assert frame.dtype == np.uint8 and frame.shape == (1, 28, 28)
    assert _box(frame[0]) == (20, 5)   # 8x2 scaled by 20/8, aspect ratio kept
    assert frame.max() == 255
    assert np.allclose(_centre_of_mass(frame[0]), (13.5, 13.5), atol=0.5)
    assert to_mnist_frame(np.zeros((2, 8, 8), dtype=int)).max() == 0  # no ink: an empty frame
    assert to_mnist_frame(np.full((1, 4, 4), 255), levels=255).shape == (1, 28, 28)


@pytest.mark.parametrize("images, levels, match", [
    (np.zeros((8, 8)), 16, r"a batch of digits \(N, h, w\), got shape \(8, 8\)"),
    (np.full((1, 8, 8), 17), 16, r"grey levels 0..16, got values from 17 to 17; pass levels="),
    (np.full((1, 8, 8), -1), 16, "grey levels 0..16"),
    (np.zeros((1, 8, 8)), 0, "levels must be a positive int"),
])
def test_to_mnist_frame_refuses_bad_input(images, levels, match):
    with pytest.raises(ValueError, match=match):
        to_mnist_frame(images, levels=levels)


# --------------------------------------------------------------------------------------------
# n examples per class
# --------------------------------------------------------------------------------------------

def test_per_class_takes_n_of_each_class_nested_and_seeded(task):
    images, labels = per_class(task.train_images, task.train_labels, 5, seed=3)
    assert images.shape == (50, 28, 28) and np.bincount(labels).tolist() == [5] * 10
    index = {image.tobytes(): i for i, image in enumerate(task.train_images)}
    picked = [index[image.tobytes()] for image in images]
    assert (task.train_labels[picked] == labels).all()           # each image keeps its label
    bigger, _ = per_class(task.train_images, task.train_labels, 20, seed=3)
    assert {image.tobytes() for image in images} <= {image.tobytes() for image in bigger}  # nested sizes
    assert np.array_equal(per_class(task.train_images, task.train_labels, 5, seed=3)[0], images)
    assert not np.array_equal(per_class(task.train_images, task.train_labels, 5, seed=4)[0], images)
    everything = per_class(task.train_images, task.train_labels, None)
    assert np.array_equal(everything[1], task.train_labels)


@pytest.mark.parametrize("n, match", [
    (0, "n must be a positive int"), (True, "n must be a positive int"), (2.0, "n must be a positive int"),
    (125, "n=125 examples per class, but class 8 has only 124; ask for at most 124"),
])
def test_per_class_refuses_bad_sizes(task, n, match):
    with pytest.raises(ValueError, match=match):
        per_class(task.train_images, task.train_labels, n)


def test_per_class_refuses_unmatched_labels(task):
    with pytest.raises(ValueError, match="1297 images but 10 labels"):
        per_class(task.train_images, task.train_labels[:10], 1)


# --------------------------------------------------------------------------------------------
# Heads, freezing, counts
# --------------------------------------------------------------------------------------------

def test_a_new_head_for_10_classes_has_850_parameters():
    torch.manual_seed(0)
    model = lenet5("paper")
    assert new_head(model, 10) is model
    assert isinstance(model.output, nn.Linear) and (model.output.in_features, model.output.out_features) == (84, 10)
    assert count_parameters(model.output) == 850
    assert model.config.head == "linear"
    assert count_parameters(model) == PARAMS_TOTAL + 850  # the RBF output had no trainable parameters
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    new_head(model, 26)
    assert count_parameters(model.output) == 84 * 26 + 26 and model(torch.zeros(3, 1, 32, 32)).shape == (3, 26)


@pytest.mark.parametrize("bad", [1, 0, 2.0, True, "10"])
def test_new_head_refuses_a_bad_class_count(bad):
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        new_head(lenet5("paper"), bad)


def test_the_helpers_refuse_other_models():
    with pytest.raises(TypeError, match="model must be a LeNet5"):
        new_head(nn.Linear(84, 10), 10)
    with pytest.raises(TypeError, match="model must be a LeNet5"):
        freeze(nn.Sequential(), "f6")


def test_trainable_counts_of_the_strategies_are_the_papers_numbers():
    assert trainable_by_layer(transfer_model("frozen")) == {
        "C1": 0, "S2": 0, "C3": 0, "S4": 0, "C5": 0, "F6": 0, "OUTPUT": 850}
    assert trainable_by_layer(transfer_model("finetune")) == {
        "C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164, "OUTPUT": 850}
    assert count_parameters(transfer_model("scratch")) == 60_850
    assert count_parameters(transfer_model("frozen", num_classes=3, variant="modern")) == 84 * 3 + 3
    assert count_parameters(transfer_model("finetune", variant="modern")) == 61_706


def test_freeze_up_to_each_layer():
    model = transfer_model("finetune")
    assert count_parameters(freeze(model, "c5")) == 10_164 + 850
    assert not model.c1.weight.requires_grad and model.f6.weight.requires_grad
    assert count_parameters(freeze(model, "C1")) == 60_850 - 156           # upper case, and unfreezes C2-C5 again
    assert count_parameters(freeze(model, None)) == 60_850
    assert count_parameters(freeze(model, "f6")) == 850
    assert all(not p.requires_grad for name in TRUNK for p in getattr(model, name).parameters())


@pytest.mark.parametrize("bad", ["output", "c7", 3, ""])
def test_freeze_refuses_unknown_layers(bad):
    with pytest.raises(ValueError, match=r"upto must be a layer name, one of 'c1', 's2'"):
        freeze(transfer_model("finetune"), bad)


@pytest.mark.parametrize("variant", ["paper", "modern"])
def test_lenet5_computes_the_same_in_training_and_evaluation_mode(variant):
    """Why frozen layers need no eval(): no LeNet-5 layer behaves differently in the two modes."""
    model = transfer_model("frozen", variant=variant)
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.train()(x), model.eval()(x))


def test_transfer_model_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = transfer_model("scratch", seed=1)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(first.c1.weight, transfer_model("scratch", seed=1).c1.weight)
    assert not torch.equal(first.output.weight, transfer_model("scratch", seed=2).output.weight)
    pretrained = load_pretrained("paper")
    assert torch.equal(transfer_model("frozen").c5.weight, pretrained.c5.weight)
    assert not torch.equal(first.c5.weight, pretrained.c5.weight)


@pytest.mark.parametrize("bad", ["linear", "Frozen", None])
def test_unknown_strategies_are_refused(bad):
    with pytest.raises(ValueError, match="strategy must be one of 'frozen', 'finetune', 'scratch'"):
        transfer_model(bad)


# --------------------------------------------------------------------------------------------
# Training: frozen layers stay, the trunk's rate
# --------------------------------------------------------------------------------------------

def _step_data(task, n: int = 20):
    return prepare(task.train_images[:n], task.train_labels[:n])


def test_a_training_step_changes_the_head_and_nothing_frozen(task):
    model = transfer_model("frozen")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    fit(model, _step_data(task), TrainConfig(epochs=1, batch_size=20), progress=False)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"output.weight", "output.bias"}


def _adamw_with_groups(model, lr: float, scale: float, steps: int, x, y) -> None:
    optimizer = torch.optim.AdamW(param_groups(model, lr, lr * scale), weight_decay=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_fit_with_param_groups_takes_adamws_steps_with_the_same_groups(task):
    """Three full-batch passes of fit at a constant rate = three AdamW steps with two rates."""
    x, y = _step_data(task)
    reference, model = transfer_model("finetune"), transfer_model("finetune")
    _adamw_with_groups(reference, 1e-2, 0.1, 3, x, y)
    config = TrainConfig(epochs=3, batch_size=len(x), lr=1e-2, schedule="constant")
    fit(model, (x, y), config, param_groups=param_groups(model, 1e-2, 1e-3), progress=False)
    start = load_pretrained("paper")
    for name, p in model.named_parameters():
        assert torch.allclose(p, dict(reference.named_parameters())[name], rtol=0, atol=1e-6), name
        if not name.startswith("output."):
            moved = (p - dict(start.named_parameters())[name]).abs().max()
            # about three steps at the trunk's rate (Adam's step can exceed its rate a little),
            # far below the 3e-2 that three steps at the head's rate could move
            assert 1e-5 < moved < 3.5e-3, name


def test_fit_refuses_param_groups_for_sdlm(task):
    config = TrainConfig(epochs=1, batch_size=1, optimizer="sdlm", schedule="constant", lr=1e-4)
    model = transfer_model("finetune")
    with pytest.raises(ValueError, match="SDLM .* takes no param_groups"):
        fit(model, _step_data(task), config, param_groups=param_groups(model, 1e-2, 1e-3), progress=False)


def test_param_groups_leave_out_frozen_parameters_and_check_rates():
    model = freeze(transfer_model("finetune"), "c3")
    trunk, head = param_groups(model, 0.01, 0.001)
    assert (trunk["lr"], head["lr"]) == (0.001, 0.01)
    assert sum(p.numel() for p in trunk["params"]) == 32 + 48_120 + 10_164
    assert sum(p.numel() for p in head["params"]) == 850
    with pytest.raises(ValueError, match="lr and trunk_lr must be > 0"):
        param_groups(model, 0.01, 0.0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_trains_the_right_layers(strategy, task):
    model, history = train_strategy(strategy, _step_data(task), TrainConfig(epochs=2, batch_size=10, device="cpu"),
                                    progress=False)
    assert isinstance(model, LeNet5) and len(history.epoch) == 2
    pretrained = load_pretrained("paper")
    same = torch.equal(model.f6.weight.detach().cpu(), pretrained.f6.weight)
    assert same == (strategy == "frozen")
    assert model.output.weight.requires_grad


def test_train_strategy_refuses_a_bad_trunk_scale(task):
    with pytest.raises(ValueError, match=r"trunk_lr_scale must be in \(0, 1\]"):
        train_strategy("finetune", _step_data(task), TrainConfig(epochs=1), trunk_lr_scale=2.0)


# --------------------------------------------------------------------------------------------
# compare(), its budget, table and plot
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, updates, batch, passes", [
    (10, 100, 10, 100), (50, 100, 50, 100), (200, 100, 64, 25), (1297, 100, 64, 5), (1297, 80, 64, 4), (3, 5, 3, 5),
])
def test_run_config_gives_every_size_the_same_number_of_updates(n, updates, batch, passes):
    config = run_config(TrainConfig(batch_size=64), n, updates, seed=4)
    assert (config.batch_size, config.epochs, config.seed) == (batch, passes, 4)
    assert config.epochs * math.ceil(n / batch) >= updates


def test_run_config_refuses_bad_counts():
    with pytest.raises(ValueError, match="updates must be a positive int, got 0"):
        run_config(TrainConfig(), 10, 0, seed=0)


def test_compare_runs_every_strategy_size_and_seed(tiny):
    threads = torch.get_num_threads()
    result = compare(tiny, sizes=(1, 2), seeds=(0, 1), updates=2, progress=False)
    assert len(result.rows) == 3 * 2 * 2
    assert set(result.rows[0]) == {"strategy", "size", "train_examples", "seed", "test_error", "epochs", "seconds"}
    assert {(r["strategy"], r["size"], r["seed"]) for r in result.rows} == set(result.histories)
    for row in result.rows:
        assert row["train_examples"] == 10 * row["size"] and 0.0 <= row["test_error"] <= 1.0
        assert row["epochs"] == 2 and row["seconds"] > 0
        assert not result.histories[row["strategy"], row["size"], row["seed"]].test_error  # no curves asked for
    assert torch.get_num_threads() == threads  # compare's one thread is undone


def test_compare_with_curves_records_the_test_error_of_every_pass(tiny):
    plain = compare(tiny, strategies=("frozen",), sizes=(1,), seeds=(3,), updates=3, progress=False)
    curves = compare(tiny, strategies=("frozen",), sizes=(1,), seeds=(3,), updates=3, curves=True, progress=False)
    history = curves.histories["frozen", 1, 3]
    assert len(history.test_error) == 3
    assert curves.rows[0]["test_error"] == history.test_error[-1] == plain.rows[0]["test_error"]


def test_compare_labels_the_whole_set_all(tiny):
    threads = torch.get_num_threads()
    result = compare(tiny, strategies=("frozen",), sizes=(None,), seeds=(0,), updates=1, progress=False)
    assert result.rows[0]["size"] == "all" and result.rows[0]["train_examples"] == 1297
    assert ("frozen", "all", 0) in result.histories
    assert torch.get_num_threads() == threads  # restored after the runs


@pytest.mark.parametrize("kwargs, match", [
    ({"strategies": ("frozen", "linear")}, "strategy must be one of"),
    ({"sizes": ()}, "must each hold at least one value"),
    ({"seeds": []}, "must each hold at least one value"),
    ({"sizes": (0,)}, "n must be a positive int"),
])
def test_compare_refuses_bad_grids(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare(tiny, updates=1, progress=False, **kwargs)


ROWS = [{"strategy": s, "size": size, "train_examples": 10 * (130 if size == "all" else size), "seed": seed,
         "test_error": error, "epochs": 5, "seconds": 1.0}
        for s, size, seed, error in [("frozen", 1, 0, 0.10), ("frozen", 1, 1, 0.20), ("frozen", "all", 0, 0.05),
                                     ("scratch", 1, 0, 0.50), ("scratch", "all", 0, 0.04)]]


def test_summarize_gives_mean_spread_and_runs():
    summary = {(r["strategy"], r["size"]): r for r in summarize(ROWS)}
    frozen = summary["frozen", 1]
    assert frozen["runs"] == 2 and math.isclose(frozen["mean"], 0.15) and (frozen["min"], frozen["max"]) == (0.1, 0.2)
    assert math.isclose(frozen["std"], math.sqrt(0.005))
    assert summary["scratch", "all"]["std"] == 0.0 and summary["scratch", "all"]["train_examples"] == 1300
    text = format_summary(ROWS).splitlines()
    assert text[0].split() == ["per", "class", "examples", "frozen", "scratch"]
    assert text[2].split() == ["1", "10", "15.00%", "+-", "7.07%", "50.00%", "+-", "0.00%"]
    assert text[3].split()[:2] == ["all", "1,300"]


def test_error_vs_size_draws_one_line_per_strategy_on_log_axes():
    fig = error_vs_size(ROWS, title="t")
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["frozen", "scratch"]
        means = [line for line in ax.lines if line.get_label() == "frozen"][0]
        assert np.allclose(means.get_ydata(), [15.0, 5.0]) and np.allclose(means.get_xdata(), [1, 130])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "130"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="at least one row"):
        error_vs_size([])
