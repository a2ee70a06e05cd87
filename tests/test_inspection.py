"""lenet_course.inspection: forward hooks, the confusion matrix and margins, PCA and t-SNE with the
prototypes, occlusion, RBF distances, perturbed digits, and the plots of lesson 07."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lenet_course.data import BACKGROUND, to_tensor  # noqa: E402
from lenet_course.inspection import (  # noqa: E402
    HEADLESS, PCA, Embedding, confusion_matrix, embed, fit_pca, interactive_frontend, margins, occlusion_map, occlusion_scores, perturb,
    plot_confusion, plot_digits, plot_embedding, plot_layers, plot_occlusion, rbf_distances, record_activations,
    worst_digits,
)
from lenet_course.layers import rbf_prototypes  # noqa: E402
from lenet_course.models import lenet5  # noqa: E402
from lenet_course.paper import LAYER_NAMES, LAYERS  # noqa: E402

SHAPES = {row.layer: row.output_shape for row in LAYERS}  # the paper's shapes, without the batch axis


def _net(variant: str = "paper", seed: int = 0):
    torch.manual_seed(seed)
    return lenet5(variant)


def _digits(n: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` made-up raw digits: a bright blob in the centre of each, background elsewhere."""
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 28, 28), dtype=np.uint8)
    digits[:, 9:19, 10:18] = rng.integers(100, 256, size=(n, 10, 8))
    return digits


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------------
# record_activations
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["paper", "modern"])
def test_every_layer_is_recorded_with_the_papers_shape(variant):
    model = _net(variant)
    recorded = record_activations(model, _digits(4))
    assert list(recorded) == list(LAYER_NAMES)
    for name, tensor in recorded.items():
        assert tuple(tensor.shape) == (4, *SHAPES[name]), name
        assert not tensor.requires_grad
    assert _hooks(model) == 0


def test_the_recorded_outputs_are_the_forward_pass():
    model = _net("paper")
    x = to_tensor(_digits(5))
    raw = record_activations(model, x, batch_size=2)          # three batches, concatenated
    with torch.no_grad():
        c1 = model.c1(x)
        s2 = model.s2(model.act(c1))
        assert torch.allclose(raw["C1"], c1, atol=1e-6)
        assert torch.allclose(raw["S2"], s2, atol=1e-6)
        assert torch.allclose(raw["OUTPUT"], model(x), atol=1e-4)
    states = record_activations(model, x, activated=True)
    assert torch.allclose(states["C1"], model.act(c1), atol=1e-6)
    assert torch.allclose(states["S2"], model.pool_act(s2), atol=1e-6)
    assert torch.allclose(states["F6"], model.features(x).detach(), atol=1e-6)
    assert torch.allclose(states["OUTPUT"], raw["OUTPUT"], atol=1e-4)  # nothing follows the output layer
    assert not torch.allclose(states["C3"], raw["C3"])          # the squashing changed something


def test_activated_states_of_the_modern_network_are_relu_and_plain_pooling():
    model = _net("modern")
    states = record_activations(model, _digits(2), ["c1", "S2", "F6"], activated=True)
    assert list(states) == ["C1", "S2", "F6"]                   # names in the order asked, in the paper's case
    assert (states["C1"] >= 0).all() and (states["F6"] >= 0).all()
    raw = record_activations(model, _digits(2), "s2")
    assert torch.equal(states["S2"], raw["S2"])                # average pooling: no activation after it


def test_hooks_are_removed_and_the_mode_restored_even_when_the_forward_pass_fails(monkeypatch):
    model = _net("paper").train()

    def broken(x):
        raise RuntimeError("C5 broke")
    monkeypatch.setattr(model.c5, "forward", broken)
    with pytest.raises(RuntimeError, match="C5 broke"):
        record_activations(model, _digits(2))
    assert _hooks(model) == 0
    assert model.training


def test_an_empty_batch_gives_empty_tensors_of_the_right_shape():
    recorded = record_activations(_net("modern"), np.zeros((0, 28, 28), dtype=np.uint8))
    assert {name: tuple(t.shape) for name, t in recorded.items()} == {name: (0, *SHAPES[name]) for name in LAYER_NAMES}


@pytest.mark.parametrize("images, error, text", [
    (np.zeros((2, 28, 28), dtype=np.float32), TypeError, "raw digits must be uint8"),
    (np.zeros((2, 32, 32), dtype=np.uint8), ValueError, r"shape \(N, 28, 28\) or \(28, 28\), got \(2, 32, 32\)"),
    (torch.zeros(1, 32, 32), ValueError, r"for one input pass x\[None\]"),
    (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), TypeError, "must hold network inputs as floats"),
    ([[0] * 28] * 28, TypeError, "got list"),
])
def test_bad_inputs_are_refused_clearly(images, error, text):
    with pytest.raises(error, match=text):
        record_activations(_net(), images)


def test_bad_layers_and_models_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown layer 'C7'; LeNet-5's layers are C1, S2, C3, S4, C5, F6, OUTPUT"):
        record_activations(_net(), _digits(1), ["C1", "C7"])
    with pytest.raises(ValueError, match="layers is empty"):
        record_activations(_net(), _digits(1), [])
    with pytest.raises(TypeError, match="model must be a LeNet5"):
        record_activations(torch.nn.Linear(3, 3), _digits(1))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        record_activations(_net(), _digits(1), batch_size=0)


# --------------------------------------------------------------------------------------------
# Confusion matrix, margins, worst digits
# --------------------------------------------------------------------------------------------

def test_the_confusion_matrix_matches_a_hand_count():
    labels = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    predicted = [3, 7, 4, 1, 3, 9, 2, 6, 5, 5]
    want = np.zeros((10, 10), dtype=np.int64)
    for t, p in [(3, 3), (1, 7), (4, 4), (1, 1), (5, 3), (9, 9), (2, 2), (6, 6), (5, 5), (3, 5)]:
        want[t, p] += 1
    got = confusion_matrix(np.array(labels, dtype=np.uint8), torch.tensor(predicted))
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert got[1, 7] == 1 and got[7, 1] == 0                     # rows: the truth, columns: the prediction
    assert got.trace() == 7 and got.sum() == 10


def test_the_confusion_matrix_counts_past_255_and_keeps_absent_classes():
    sevens = np.full(300, 7, dtype=np.uint8)
    got = confusion_matrix(sevens, sevens)
    assert got[7, 7] == 300 and got.sum() == 300 and got.shape == (10, 10)


@pytest.mark.parametrize("labels, predicted, error, text", [
    ([1, 2], [1], ValueError, "predicted must hold one class per digit: expected 2, got 1"),
    ([1, 10], [1, 2], ValueError, "labels must hold classes 0..9, got values from 1 to 10"),
    ([1, 2], np.array([0.5, 1.0]), TypeError, r"predicted must hold integer class indices.*argmax\(1\)"),
    (np.zeros((2, 2), dtype=int), [1, 2], ValueError, "labels must be a 1-D array"),
])
def test_bad_class_arrays_are_refused_clearly(labels, predicted, error, text):
    with pytest.raises(error, match=text):
        confusion_matrix(labels, predicted)


def test_margins_and_worst_digits():
    scores = np.array([[5.0, 1.0, 0.0] + [-9.0] * 7,    # label 0, right by 4
                       [3.0, 2.0, 0.0] + [-9.0] * 7,    # label 1, wrong by 1
                       [0.0, 9.0, 1.0] + [-9.0] * 7,    # label 2, wrong by 8: the most confident mistake
                       [0.0, 0.0, 0.5] + [-9.0] * 7])   # label 2, right by 0.5
    labels = np.array([0, 1, 2, 2])
    assert np.allclose(margins(scores, labels), [4.0, -1.0, -8.0, 0.5])
    assert worst_digits(scores, labels, k=3).tolist() == [2, 1, 3]
    assert worst_digits(torch.tensor(scores), labels, k=10).tolist() == [2, 1, 3, 0]
    with pytest.raises(ValueError, match=r"scores must be \(N, 10\)"):
        margins(scores[:, :5], labels)
    with pytest.raises(ValueError, match="k must be a positive int"):
        worst_digits(scores, labels, k=0)


# --------------------------------------------------------------------------------------------
# PCA and t-SNE
# --------------------------------------------------------------------------------------------

def test_pca_agrees_with_an_eigendecomposition_of_the_covariance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 6)) * np.array([4.0, 2.0, 1.0, 0.5, 0.2, 0.1]) @ np.linalg.qr(rng.normal(size=(6, 6)))[0]
    x += 5.0
    pca = fit_pca(x, 3)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))     # ascending eigenvalues
    order = np.argsort(values)[::-1][:3]
    assert np.allclose(np.abs(pca.components @ vectors[:, order]), np.eye(3), atol=1e-8)
    assert np.allclose(pca.explained_variance_ratio, values[order] / values.sum())
    projected = pca.transform(x)
    assert np.allclose(projected.mean(axis=0), 0, atol=1e-9)
    assert np.allclose(projected.var(axis=0, ddof=1), values[order])
    # a reproducible sign: each component's largest entry is positive
    assert (pca.components[np.arange(3), np.abs(pca.components).argmax(axis=1)] > 0).all()


def test_the_prototypes_are_projected_with_the_digits_pca():
    rng = np.random.default_rng(4)
    codes = rbf_prototypes().reshape(10, 84)
    labels = rng.integers(0, 10, 300)
    features = codes[labels] + 0.3 * rng.normal(size=(300, 84))   # F6 states near their class's code
    result = embed(features)
    assert isinstance(result, Embedding) and result.method == "pca" and isinstance(result.pca, PCA)
    assert result.points.shape == (300, 2) and result.prototypes.shape == (10, 2)
    assert np.allclose(result.prototypes, (codes - features.mean(axis=0)) @ result.pca.components.T)
    for k in range(10):   # each class's cloud surrounds its own prototype
        centre = result.points[labels == k].mean(axis=0)
        assert np.argmin(np.linalg.norm(result.prototypes - centre, axis=1)) == k


def test_tsne_places_the_prototypes_in_the_fit():
    rng = np.random.default_rng(5)
    codes = rbf_prototypes().reshape(10, 84)
    labels = np.repeat(np.arange(10), 8)
    features = codes[labels] + 0.2 * rng.normal(size=(80, 84))
    result = embed(features, method="tsne", seed=0, perplexity=10.0)
    assert result.method == "tsne" and result.pca is None
    assert result.points.shape == (80, 2) and result.prototypes.shape == (10, 2)
    assert np.isfinite(result.points).all() and np.isfinite(result.prototypes).all()
    for k in range(10):   # t-SNE keeps neighbours: each prototype lies among its own class's digits
        nearest = np.argsort(np.linalg.norm(result.points - result.prototypes[k], axis=1))[:4]
        assert (labels[nearest] == k).sum() >= 3


@pytest.mark.parametrize("call, error, text", [
    (lambda: fit_pca(np.zeros((1, 4))), ValueError, "at least 2 rows"),
    (lambda: fit_pca(np.zeros((5, 4)), 5), ValueError, r"n_components must be at most min\(N, D\) = 4, got 5"),
    (lambda: fit_pca(np.zeros(5)), ValueError, r"x must be a matrix \(N, D\)"),
    (lambda: fit_pca(np.array([[1.0, np.nan], [0.0, 1.0]])), ValueError, "NaN or infinite"),
    (lambda: embed(np.zeros((5, 84)), method="umap"), ValueError, "method must be 'pca' or 'tsne', got 'umap'"),
    (lambda: embed(np.zeros((5, 83))), ValueError, r"prototypes must have as many columns as features \(83\)"),
    (lambda: embed(np.random.default_rng(0).normal(size=(5, 84)), method="tsne"), ValueError,
     r"perplexity must be between 0 and the number of points \(15\)"),
    (lambda: fit_pca(np.eye(3)).transform(np.zeros((2, 4))), ValueError, "x must have 3 columns"),
])
def test_bad_embedding_inputs_are_refused_clearly(call, error, text):
    with pytest.raises(error, match=text):
        call()


# --------------------------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------------------------

def test_occluding_a_blank_patch_leaves_the_scores_unchanged():
    model = _net("paper")
    digits = _digits(2)                # ink only in rows 11..20, columns 12..19 of the padded 32x32 input
    drops = occlusion_scores(model, digits, patch=8, stride=4)
    assert drops.shape == (2, 7, 7) and drops.dtype == np.float32
    # patch row 0 covers rows 0..7, patch column 0 columns 0..7, patch row 6 rows 24..31: only background
    blank = np.concatenate([drops[:, 0, :], drops[:, :, 0], drops[:, 6, :]], axis=1)
    assert np.abs(blank).max() <= 1e-4                 # scores are about 84: equal up to float rounding
    assert np.abs(drops[:, 3, 3]).min() > 1e-3         # a patch on the ink changes them


def test_occlusion_scores_match_one_forward_pass_per_patch():
    model = _net("modern", 1).train()
    x = to_tensor(_digits(2, seed=1))
    drops = occlusion_scores(model, x, targets=[3, 8], patch=6, stride=5, batch_size=7)
    assert drops.shape == (2, 6, 6)
    model.eval()
    with torch.no_grad():
        for n, target in enumerate([3, 8]):
            base = model.scores(x[n:n + 1])[0, target]
            for r, top in enumerate(range(0, 27, 5)):
                for c, left in enumerate(range(0, 27, 5)):
                    occluded = x[n].clone()
                    occluded[:, top:top + 6, left:left + 6] = BACKGROUND
                    want = (base - model.scores(occluded[None])[0, target]).item()
                    assert drops[n, r, c] == pytest.approx(want, abs=1e-5)


def test_occlusion_defaults_to_the_predicted_class_and_restores_the_mode():
    model = _net("paper", 2).train()
    x = to_tensor(_digits(3, seed=2))
    with torch.no_grad():
        predicted = model.eval().scores(x).argmax(1).numpy()
    model.train()
    assert np.array_equal(occlusion_scores(model, x), occlusion_scores(model, x, predicted))
    assert model.training


def test_the_occlusion_map_spreads_each_drop_over_its_patch():
    model = _net("paper", 3)
    x = to_tensor(_digits(1, seed=3))
    drops = occlusion_scores(model, x, patch=16, stride=16)           # four patches, one per quadrant
    maps = occlusion_map(model, x, patch=16, stride=16)
    assert maps.shape == (1, 32, 32)
    assert np.allclose(maps[0, :16, :16], drops[0, 0, 0]) and np.allclose(maps[0, 16:, 16:], drops[0, 1, 1])
    overlapping = occlusion_map(model, x, patch=8, stride=2)
    assert overlapping.shape == (1, 32, 32) and np.isfinite(overlapping).all()


@pytest.mark.parametrize("kwargs, error, text", [
    ({"patch": 40}, ValueError, "patch must be at most the input size 32, got 40"),
    ({"stride": 0}, ValueError, "stride must be a positive int, got 0"),
    ({"targets": [1, 2, 3]}, ValueError, "targets must hold one class per digit: expected 2, got 3"),
    ({"fill": "white"}, TypeError, "fill must be a number"),
    ({"batch_size": -1}, ValueError, "batch_size must be a positive int, got -1"),
])
def test_bad_occlusion_arguments_are_refused_clearly(kwargs, error, text):
    with pytest.raises(error, match=text):
        occlusion_scores(_net(), _digits(2), **kwargs)


# --------------------------------------------------------------------------------------------
# RBF distances and perturbed digits
# --------------------------------------------------------------------------------------------

def test_rbf_distances_are_the_paper_networks_output():
    model = _net("paper", 4)
    digits = _digits(3, seed=4)
    with torch.no_grad():
        want = model(to_tensor(digits)).numpy()
        f6 = model.features(to_tensor(digits)).numpy()
    got = rbf_distances(model, digits)
    assert got.shape == (3, 10) and np.allclose(got, want, atol=1e-4)
    assert np.allclose(got, ((f6[:, None] - rbf_prototypes().reshape(1, 10, 84)) ** 2).sum(-1), atol=1e-3)
    assert rbf_distances(model, digits[0]).shape == (1, 10)
    with pytest.raises(ValueError, match="needs a model with the RBF output.*model.scores"):
        rbf_distances(_net("modern"), digits)


def test_perturb_moves_rotates_and_erases():
    bar = np.zeros((28, 28), dtype=np.uint8)
    bar[14, 14:24] = 255                                            # a bar right of the centre
    assert np.array_equal(perturb(bar), bar)                        # nothing asked: nothing changes
    moved = perturb(bar, shift=(3, -2))
    assert np.array_equal(moved, np.roll(np.roll(bar, 3, axis=0), -2, axis=1))
    rows, cols = np.nonzero(perturb(bar, angle=90) > 128)           # counterclockwise: the bar now points up
    assert rows.max() <= 14 and rows.min() < 8 and set(cols) <= {13, 14}
    erased = perturb(np.full((2, 28, 28), 200, dtype=np.uint8), erase=(0, 0, 5))
    assert erased.shape == (2, 28, 28) and (erased[:, :5, :5] == 0).all() and erased[:, 5:, 5:].min() == 200
    with pytest.raises(TypeError, match="perturb expects raw digits"):
        perturb(bar.astype(float))
    with pytest.raises(ValueError, match=r"erase must be \(row, col, size\)"):
        perturb(bar, erase=(1, 2))


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["paper", "modern"])
def test_plot_layers_draws_every_layer(variant):
    model = _net(variant, 5)
    fig = plot_layers(model, _digits(1)[0], title="t")
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    for name in LAYER_NAMES:
        assert any(t.startswith(name) for t in titles), name
    maps = 1 + 6 + 6 + 16 + 16 + 1 + 1                  # input, C1, S2, C3, S4, C5, F6
    assert len(fig.axes) == maps + (2 if variant == "paper" else 1)   # the code panel (paper), the bars
    assert ("RBF distances" in titles[-1]) == (variant == "paper")
    with pytest.raises(ValueError, match="digit must be one digit"):
        plot_layers(model, _digits(2))


def test_plot_digits_marks_mistakes_in_red():
    fig = plot_digits(_digits(3), [1, 2, 3], [1, 5, 3], title="t")
    titles = [ax.title for ax in fig.axes[:3]]
    assert [t.get_text() for t in titles] == ["1\u21921", "2\u21925", "3\u21923"]
    assert [matplotlib.colors.to_hex(t.get_color()) for t in titles] == ["#000000", "#d62728", "#000000"]


def test_plot_confusion_embedding_and_occlusion():
    fig = plot_confusion(confusion_matrix([1, 2, 2], [1, 2, 3]), title="t")
    assert fig.axes[0].get_xlabel() == "predicted digit" and fig.axes[0].get_ylabel() == "true digit"
    with pytest.raises(ValueError, match=r"the \(10, 10\) confusion matrix"):
        plot_confusion(np.zeros((3, 3)))
    rng = np.random.default_rng(6)
    result = embed(rng.normal(size=(40, 84)))
    fig = plot_embedding(result, rng.integers(0, 10, 40))
    assert "variance" in fig.axes[0].get_xlabel()
    assert [t.get_text() for t in fig.axes[0].texts] == [str(k) for k in range(10)]   # the prototypes, numbered
    with pytest.raises(ValueError, match="labels must hold one class per digit"):
        plot_embedding(result, [1, 2])
    x = to_tensor(_digits(2))
    fig = plot_occlusion(x[:, 0], occlusion_map(_net(), x, patch=16, stride=16), ["a", "b"], title="t")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    with pytest.raises(ValueError, match="images and maps must both be"):
        plot_occlusion(x[:, 0], np.zeros((2, 28, 28)))


# --------------------------------------------------------------------------------------------
# Widgets only where someone can move them
# --------------------------------------------------------------------------------------------

class _Shell:
    kernel = object()  # what an IPython kernel's shell has and a terminal's does not


def test_widgets_are_offered_in_a_kernel_unless_the_run_is_unattended(monkeypatch):
    import IPython
    monkeypatch.setattr(IPython, "get_ipython", lambda: _Shell())
    monkeypatch.delenv(HEADLESS, raising=False)
    assert interactive_frontend()
    monkeypatch.setenv(HEADLESS, "1")   # lenet-course run, store and the tests set it
    assert not interactive_frontend()
    monkeypatch.delenv(HEADLESS)
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # plain Python, no kernel
    assert not interactive_frontend()

