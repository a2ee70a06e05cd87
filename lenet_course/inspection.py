"""Looking inside a trained LeNet-5: what every layer computes, where it errs, what F6 has learned.

* :func:`record_activations` - every layer's output for some inputs, recorded by forward hooks
  that are always removed afterwards (also when the forward pass fails);
* :func:`confusion_matrix`, :func:`margins`, :func:`worst_digits` - counting and ranking the
  network's mistakes;
* :func:`fit_pca` / :class:`PCA` and :func:`embed` - F6's 84-dimensional states in two
  dimensions (PCA by numpy's SVD, or t-SNE), with the ten 7x12 RBF prototypes in the same space;
* :func:`occlusion_scores`, :func:`occlusion_map` - how much the class score drops when a patch
  of the input is blanked out, every patch of every digit in a few batched forward passes;
* :func:`rbf_distances` - the paper network's ten RBF outputs for raw digits;
* :func:`perturb` - digits shifted, rotated or partly erased, to watch the network react;
* plots: :func:`plot_layers` (every layer for one digit), :func:`plot_confusion`,
  :func:`plot_digits`, :func:`plot_embedding`, :func:`plot_occlusion`.

Inputs are either raw MNIST digits (uint8 ``(N, 28, 28)`` or one ``(28, 28)``, padded and scaled
here as :func:`lenet_course.data.to_tensor` does) or network inputs (a float tensor
``(N, 1, 32, 32)``). Nothing here changes the model: hooks are removed and the train/eval mode
is restored. Matplotlib is imported only by the plot functions.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from lenet_course.data import BACKGROUND, to_tensor
from lenet_course.layers import rbf_prototypes
from lenet_course.models import LeNet5
from lenet_course.paper import INPUT_SHAPE, LAYER_NAMES

__all__ = [
    "record_activations", "confusion_matrix", "margins", "worst_digits", "PCA", "fit_pca", "Embedding", "embed",
    "occlusion_scores", "occlusion_map", "rbf_distances", "perturb", "HEADLESS", "interactive_frontend",
    "plot_layers", "plot_confusion", "plot_digits", "plot_embedding", "plot_occlusion",
]

N_CLASSES = 10
SIZE = INPUT_SHAPE[-1]  # the network's inputs are SIZE x SIZE (32 x 32)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def _check_model(model) -> LeNet5:
    if not isinstance(model, LeNet5):
        raise TypeError(f"model must be a LeNet5 (lenet5(...) or load_pretrained(...)), got {type(model).__name__}")
    return model


def _inputs(model: LeNet5, images, name: str = "images") -> torch.Tensor:
    """``images`` as network inputs ``(N, 1, 32, 32)`` on the model's device and dtype.

    Raw digits (uint8 numpy, ``(N, 28, 28)`` or one ``(28, 28)``) are padded and scaled; a float
    tensor ``(N, 1, 32, 32)`` is taken as it is.
    """
    reference = next(model.parameters())
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"{name}: raw digits must be uint8 pixels 0..255 (as load_mnist gives them), got "
                            f"dtype {images.dtype}; pass network inputs as a float tensor (N, 1, 32, 32)")
        if images.shape == (28, 28):
            images = images[None]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"{name}: raw digits must have shape (N, 28, 28) or (28, 28), got {images.shape}")
        return to_tensor(images).to(reference.device, reference.dtype)
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point():
            raise TypeError(f"{name}: a tensor must hold network inputs as floats (N, 1, 32, 32), got dtype "
                            f"{images.dtype}; for raw uint8 digits pass a numpy array")
        if images.dim() != 4 or tuple(images.shape[1:]) != INPUT_SHAPE:
            hint = "; for one input pass x[None]" if tuple(images.shape) == INPUT_SHAPE else ""
            raise ValueError(f"{name}: network inputs must have shape (N, 1, 32, 32), got "
                             f"{tuple(images.shape)}{hint}")
        return images.to(reference.device, reference.dtype)
    raise TypeError(f"{name} must be raw digits (a uint8 numpy array (N, 28, 28)) or network inputs (a float "
                    f"tensor (N, 1, 32, 32)), got {type(images).__name__}")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _class_indices(values, name: str, n: int | None = None, classes: int = N_CLASSES) -> np.ndarray:
    """``values`` (numpy, torch or a list) as int64 class indices ``(N,)`` in 0..classes-1."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {values.shape}")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices 0..{classes - 1}, got dtype {values.dtype}"
                        + ("; for scores take .argmax(1) first" if np.issubdtype(values.dtype, np.floating) else ""))
    if n is not None and len(values) != n:
        raise ValueError(f"{name} must hold one class per digit: expected {n}, got {len(values)}")
    if values.size and (values.min() < 0 or values.max() >= classes):
        raise ValueError(f"{name} must hold classes 0..{classes - 1}, got values from {values.min()} to {values.max()}")
    return values.astype(np.int64)


def _scores(scores, name: str = "scores") -> np.ndarray:
    """``scores`` as float64 ``(N, 10)``, larger = more likely (``model.scores(x)``)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != N_CLASSES:
        raise ValueError(f"{name} must be (N, 10), one score per class and digit (model.scores(x)), "
                         f"got shape {scores.shape}")
    return scores


# --------------------------------------------------------------------------------------------
# Forward hooks: every layer's output
# --------------------------------------------------------------------------------------------

def _layers(model: LeNet5, layers: Iterable[str] | str | None) -> dict[str, nn.Module]:
    """The layers to record, paper name -> module, in the order asked (all seven by default)."""
    if layers is None:
        layers = LAYER_NAMES
    elif isinstance(layers, str):
        layers = (layers,)
    chosen: dict[str, nn.Module] = {}
    for layer in layers:
        key = layer.upper() if isinstance(layer, str) else layer
        if key not in LAYER_NAMES:
            raise ValueError(f"unknown layer {layer!r}; LeNet-5's layers are {', '.join(LAYER_NAMES)}")
        chosen[key] = getattr(model, key.lower())
    if not chosen:
        raise ValueError(f"layers is empty; name at least one of {', '.join(LAYER_NAMES)}, or pass None for all")
    return chosen


def _activation_after(model: LeNet5, layer: str) -> nn.Module:
    """The nonlinearity ``LeNet5.features`` applies to ``layer``'s output (none after OUTPUT)."""
    return {"S2": model.pool_act, "S4": model.pool_act, "OUTPUT": nn.Identity()}.get(layer, model.act)


@torch.no_grad()
def record_activations(model: LeNet5, images, layers: Iterable[str] | str | None = None, *,
                       activated: bool = False, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """Each layer's output for ``images``, recorded by forward hooks: paper name -> tensor.

    ``layers`` names some of C1, S2, C3, S4, C5, F6, OUTPUT (any case); all seven by default.
    ``images`` are raw digits (uint8 ``(N, 28, 28)`` or ``(28, 28)``) or network inputs
    ``(N, 1, 32, 32)``. Shapes (both variants): C1 ``(N, 6, 28, 28)``, S2 ``(N, 6, 14, 14)``,
    C3 ``(N, 16, 10, 10)``, S4 ``(N, 16, 5, 5)``, C5 ``(N, 120, 1, 1)``, F6 ``(N, 84)``,
    OUTPUT ``(N, 10)`` (RBF distances or logits).

    With ``activated=False`` a tensor is the layer module's own output, what a forward hook on it
    sees: for C1, C3, C5 and F6 the weighted sums before the squashing. ``activated=True``
    applies the nonlinearity that follows in the forward pass, giving the states the next layer
    reads (the "feature maps"). The inputs go through in eval mode, without gradients,
    ``batch_size`` at a time; the tensors are detached, on the model's device. Every hook is
    removed and the train/eval mode restored, also when the forward pass raises.
    """
    model = _check_model(model)
    chosen = _layers(model, layers)
    batch_size = _positive_int(batch_size, "batch_size")
    x = _inputs(model, images)
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name in chosen}

    def hook_for(name: str):
        after = _activation_after(model, name) if activated else nn.Identity()

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            recorded[name].append(after(output).detach())
        return hook

    handles = [layer.register_forward_hook(hook_for(name)) for name, layer in chosen.items()]
    was_training = model.training
    try:
        model.eval()
        for start in range(0, max(len(x), 1), batch_size):  # no digits: one empty pass, for the shapes
            model(x[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: torch.cat(parts) for name, parts in recorded.items()}


# --------------------------------------------------------------------------------------------
# Mistakes: the confusion matrix and the worst digits
# --------------------------------------------------------------------------------------------

def confusion_matrix(labels, predicted, classes: int = N_CLASSES) -> np.ndarray:
    """int64 ``(classes, classes)``: entry ``[i, j]`` counts the examples of class i predicted as j.

    Rows are the true classes, columns the predictions, so the diagonal holds the correct
    answers and each row sums to the number of examples of that class. ``labels`` and
    ``predicted`` are integer class indices ``(N,)`` (numpy, torch or lists) below ``classes``
    (10 digits by default; 4 directions of motion in lesson 10).
    """
    labels = _class_indices(labels, "labels", classes=classes)
    predicted = _class_indices(predicted, "predicted", len(labels), classes=classes)
    return np.bincount(labels * classes + predicted, minlength=classes ** 2).reshape(classes, classes)


def margins(scores, labels) -> np.ndarray:
    """float64 ``(N,)``: each digit's score for its true class minus the best score of another class.

    ``scores`` ``(N, 10)`` are larger-is-better (:meth:`LeNet5.scores`: logits, or minus the RBF
    distances). A positive margin is a correct answer with that much to spare; a negative one is
    a mistake, and the more negative the more confident the network was in the wrong class.
    """
    scores = _scores(scores)
    labels = _class_indices(labels, "labels", len(scores))
    rows = np.arange(len(scores))
    own = scores[rows, labels]
    others = scores.copy()
    others[rows, labels] = -np.inf
    return own - others.max(axis=1)


def worst_digits(scores, labels, k: int = 16) -> np.ndarray:
    """The indices of the ``k`` digits with the smallest :func:`margins`, smallest first (int64).

    The most confidently misclassified digits come first; when there are fewer than ``k``
    mistakes, the correct answers that came closest to being wrong follow. Ties keep the order
    of the digits.
    """
    k = _positive_int(k, "k")
    return np.argsort(margins(scores, labels), kind="stable")[:k]


# --------------------------------------------------------------------------------------------
# F6 in two dimensions: PCA and t-SNE, with the prototypes
# --------------------------------------------------------------------------------------------

# The SVD and t-SNE below run on one thread (threadpool_limits, undone on exit). Their work is
# small, and on a two-core machine that is busy with anything else, threads that wait for each
# other make them many times slower: t-SNE of 1,010 points took 4 s on one thread and 38-46 s
# on two, measured side by side.


def _matrix(x, name: str) -> np.ndarray:
    """``x`` (numpy or torch) as a finite float64 matrix ``(N, D)``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a matrix (N, D), one row per digit, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


@dataclass(frozen=True)
class PCA:
    """A principal component analysis: ``transform(x) = (x - mean) @ components.T``."""
    mean: np.ndarray                      # (D,) the mean of the data it was fitted on
    components: np.ndarray                # (k, D) orthonormal directions, largest variance first
    explained_variance_ratio: np.ndarray  # (k,) the share of the total variance along each

    def transform(self, x) -> np.ndarray:
        """Points ``(N, D)`` -> their coordinates ``(N, k)`` along the components."""
        x = _matrix(x, "x")
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"x must have {self.mean.shape[0]} columns, like the data the PCA was fitted on, "
                             f"got shape {x.shape}")
        return (x - self.mean) @ self.components.T


def fit_pca(x, n_components: int = 2) -> PCA:
    """The first ``n_components`` principal components of the rows of ``x`` ``(N, D)``, by SVD.

    The data is centred, ``x - mean = U S Vt``, and the components are the first rows of ``Vt``.
    A component's sign is arbitrary; here each is flipped so that its largest entry (in absolute
    value) is positive, which makes the result reproducible.
    """
    x = _matrix(x, "x")
    n_components = _positive_int(n_components, "n_components")
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 rows to have a variance, got {len(x)}")
    if n_components > min(x.shape):
        raise ValueError(f"n_components must be at most min(N, D) = {min(x.shape)}, got {n_components}")
    mean = x.mean(axis=0)
    with threadpool_limits(1, user_api="blas"):  # one thread: see the note above _matrix
        _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[:n_components]
    peaks = components[np.arange(n_components), np.abs(components).argmax(axis=1)]
    components = components * np.where(peaks < 0, -1.0, 1.0)[:, None]
    variance = singular ** 2
    total = variance.sum()
    ratio = variance[:n_components] / total if total > 0 else np.zeros(n_components)
    return PCA(mean, components, ratio)


@dataclass(frozen=True)
class Embedding:
    """Digits and prototypes in one 2-D space, from :func:`embed`."""
    points: np.ndarray      # (N, 2) one point per digit
    prototypes: np.ndarray  # (10, 2) one point per RBF prototype, class 0 first
    method: str             # "pca" or "tsne"
    pca: PCA | None = None  # the fitted PCA (method "pca"), for its explained variance


def embed(features, *, method: str = "pca", prototypes=None, seed: int = 0, perplexity: float = 30.0,
          max_iter: int = 750) -> Embedding:
    """F6 states ``(N, 84)`` and the RBF prototypes in one 2-D space.

    ``method="pca"`` fits a PCA (:func:`fit_pca`) on the digits only and projects the prototypes
    with it. ``method="tsne"`` (scikit-learn's t-SNE, seeded with ``seed``) has no projection
    for new points, so the prototypes are part of the fit; t-SNE costs seconds per thousand
    points (it runs on one thread, faster than two on a busy two-core machine), so give it a
    sample of at most a few thousand digits. ``prototypes`` ``(10, 84)`` defaults to the paper's
    7x12 bitmaps (:func:`lenet_course.layers.rbf_prototypes`).
    """
    features = _matrix(features, "features")
    prototypes = _matrix(rbf_prototypes().reshape(N_CLASSES, -1) if prototypes is None else prototypes,
                         "prototypes")
    if prototypes.shape[1] != features.shape[1]:
        raise ValueError(f"prototypes must have as many columns as features ({features.shape[1]}), "
                         f"got shape {prototypes.shape}")
    if method == "pca":
        pca = fit_pca(features, 2)
        return Embedding(pca.transform(features), pca.transform(prototypes), "pca", pca)
    if method != "tsne":
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    n = len(features) + len(prototypes)
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must be between 0 and the number of points ({n}), got {perplexity!r}; "
                         "t-SNE needs more points than its perplexity")
    from sklearn.manifold import TSNE

    both = np.concatenate([features, prototypes]).astype(np.float32)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=_positive_int(max_iter, "max_iter"))
    with threadpool_limits(1):  # one thread: see the note above _matrix
        xy = tsne.fit_transform(both)
    return Embedding(xy[:len(features)].astype(np.float64), xy[len(features):].astype(np.float64), "tsne")


# --------------------------------------------------------------------------------------------
# Occlusion sensitivity
# --------------------------------------------------------------------------------------------

def _patch_masks(size: int, patch: int, stride: int) -> tuple[torch.Tensor, int, int]:
    """bool ``(R * C, size, size)``: one mask per patch position, rows first; and R, C."""
    starts = range(0, size - patch + 1, stride)
    masks = torch.zeros(len(starts), len(starts), size, size, dtype=torch.bool)
    for r, top in enumerate(starts):
        for c, left in enumerate(starts):
            masks[r, c, top:top + patch, left:left + patch] = True
    return masks.reshape(-1, size, size), len(starts), len(starts)


@torch.no_grad()
def occlusion_scores(model: LeNet5, images, targets=None, *, patch: int = 8, stride: int = 2,
                     fill: float = BACKGROUND, batch_size: int = 2048) -> np.ndarray:
    """How much each digit's target score drops when a ``patch x patch`` square is blanked out.

    float32 ``(N, R, C)``: entry ``[n, r, c]`` is ``scores[target]`` of input n minus the same
    score with the square whose top-left corner is ``(r * stride, c * stride)`` set to ``fill``
    (the paper's background, -0.1: the square is erased), on the 32x32 input; R = C =
    ``(32 - patch) // stride + 1``. Positive: that part of the input was evidence for the
    class. The scores are :meth:`LeNet5.scores` (larger = more likely); ``targets`` ``(N,)``
    defaults to each digit's predicted class. Every occluded copy of every digit goes through the
    network in batches of about ``batch_size`` inputs, in eval mode.
    """
    model = _check_model(model)
    x = _inputs(model, images)
    patch = _positive_int(patch, "patch")
    stride = _positive_int(stride, "stride")
    batch_size = _positive_int(batch_size, "batch_size")
    if patch > SIZE:
        raise ValueError(f"patch must be at most the input size {SIZE}, got {patch}")
    if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (int, float, np.integer, np.floating)):
        raise TypeError(f"fill must be a number, the input value of an erased pixel, got {fill!r}")
    masks, rows, cols = _patch_masks(SIZE, patch, stride)
    masks = masks.to(x.device)
    was_training = model.training
    try:
        model.eval()
        base = torch.cat([model.scores(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])  # (N, 10)
        if targets is None:
            targets = base.argmax(dim=1).cpu().numpy()
        targets = torch.as_tensor(_class_indices(targets, "targets", len(x)), device=x.device)
        per_batch = max(1, batch_size // len(masks))  # digits per forward pass
        drops = []
        for start in range(0, len(x), per_batch):
            chunk = x[start:start + per_batch]                                      # (B, 1, H, W)
            occluded = torch.where(masks[None, :, None], torch.as_tensor(fill, dtype=x.dtype, device=x.device),
                                   chunk[:, None])                                  # (B, P, 1, H, W)
            scores = model.scores(occluded.flatten(0, 1)).view(len(chunk), len(masks), N_CLASSES)
            own = targets[start:start + per_batch]
            drop = base[start:start + per_batch].gather(1, own[:, None]) - scores[torch.arange(len(chunk), device=x.device), :, own]
            drops.append(drop)                                                      # (B, P)
    finally:
        model.train(was_training)
    out = torch.cat(drops) if drops else torch.zeros(0, len(masks))
    return out.view(len(x), rows, cols).cpu().numpy().astype(np.float32)


def occlusion_map(model: LeNet5, images, targets=None, *, patch: int = 8, stride: int = 2,
                  fill: float = BACKGROUND, batch_size: int = 2048) -> np.ndarray:
    """:func:`occlusion_scores` spread back onto the input's pixels: float32 ``(N, 32, 32)``.

    Each pixel gets the mean score drop of the patches that cover it (0 where none does), so
    the map can be laid over the input it was computed from.
    """
    drops = occlusion_scores(model, images, targets, patch=patch, stride=stride, fill=fill, batch_size=batch_size)
    masks, _, _ = _patch_masks(SIZE, patch, stride)
    masks = masks.numpy().astype(np.float32)                              # (P, 32, 32)
    coverage = masks.sum(axis=0)                                          # (32, 32)
    total = np.einsum("np,phw->nhw", drops.reshape(len(drops), -1), masks)
    return np.divide(total, coverage, out=np.zeros_like(total), where=coverage > 0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The RBF outputs of digits, and digits perturbed
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def rbf_distances(model: LeNet5, images) -> np.ndarray:
    """float ``(N, 10)``: the squared distance of each digit's F6 state to each class's prototype.

    These are the paper network's outputs (smallest = the answer); a model with a linear
    output has none, and gets a ValueError. The train/eval mode is restored afterwards.
    """
    model = _check_model(model)
    if model.config.head != "rbf":
        raise ValueError(f"rbf_distances needs a model with the RBF output (lenet5('paper')), got head "
                         f"{model.config.head!r}; for a linear output use model.scores(x)")
    return record_activations(model, images, ["OUTPUT"])["OUTPUT"].cpu().numpy()


def perturb(digits: np.ndarray, *, shift: tuple[float, float] = (0.0, 0.0), angle: float = 0.0,
            erase: tuple[int, int, int] | None = None) -> np.ndarray:
    """Raw digits (uint8 ``(N, 28, 28)`` or one ``(28, 28)``) rotated, shifted and partly erased.

    ``angle`` rotates counterclockwise by that many degrees about the centre, then ``shift`` =
    ``(down, right)`` moves the digit by that many pixels (bilinear interpolation; what leaves
    the 28x28 frame is lost, what enters is background). ``erase = (row, col, size)`` then blanks
    the ``size x size`` square whose top-left pixel is ``(row, col)``. Returns uint8 of the
    input's shape.
    """
    if not isinstance(digits, np.ndarray) or digits.dtype != np.uint8 or digits.shape[-2:] != (28, 28) \
            or digits.ndim not in (2, 3):
        what = f"dtype {digits.dtype}, shape {digits.shape}" if isinstance(digits, np.ndarray) else type(digits).__name__
        raise TypeError(f"perturb expects raw digits, a uint8 numpy array (N, 28, 28) or (28, 28), got {what}")
    try:
        down, right = (float(v) for v in shift)
        angle = float(angle)
    except (TypeError, ValueError):
        raise TypeError(f"shift must be two numbers (down, right) and angle a number, got shift={shift!r}, "
                        f"angle={angle!r}") from None
    batch = digits.reshape(-1, 1, 28, 28)
    out = batch.copy()
    if down or right or angle:
        theta = math.radians(angle)
        cos, sin = math.cos(theta), math.sin(theta)
        # affine_grid maps each output position to the input position it reads, in coordinates
        # from -1 to 1 (x right, y down): input = R^-1 (output - t), R the rotation, t the shift.
        t = torch.tensor([right, down], dtype=torch.float64) * 2.0 / 28.0
        inverse = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
        matrix = torch.cat([inverse, -(inverse @ t)[:, None]], dim=1).float()
        images = torch.from_numpy(batch.astype(np.float32))
        grid = F.affine_grid(matrix.expand(len(images), 2, 3), list(images.shape), align_corners=False)
        moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = moved.round().clamp(0, 255).to(torch.uint8).numpy()
    if erase is not None:
        if len(erase) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in erase) \
                or erase[2] < 1:
            raise ValueError(f"erase must be (row, col, size), three ints with size >= 1, got {erase!r}")
        row, col, size = (int(v) for v in erase)
        out[:, :, max(row, 0):max(row + size, 0), max(col, 0):max(col + size, 0)] = 0
    return out.reshape(digits.shape)


# Set to "1" in the environment of notebooks executed unattended: lenet-course run and store (see
# lenet_course.runner) and the test suite's nbval run.
HEADLESS = "LENET_COURSE_HEADLESS"


def interactive_frontend() -> bool:
    """Whether a lesson may show ipywidgets controls: ipywidgets imports, an IPython kernel is
    running, and the notebook is not being executed unattended (``LENET_COURSE_HEADLESS=1``).

    Unattended runs draw the static version only: nobody moves the sliders there, and cells that
    display widgets can hang papermill and nbclient now and then (jupyter/nbclient#312).
    """
    if os.environ.get(HEADLESS) == "1":
        return False
    if importlib.util.find_spec("ipywidgets") is None or importlib.util.find_spec("IPython") is None:
        return False
    from IPython import get_ipython
    return getattr(get_ipython(), "kernel", None) is not None


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def _numpy(values) -> np.ndarray:
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)


def _show_maps(axes, maps: np.ndarray, cmap: str = "RdBu_r") -> None:
    """Maps ``(K, H, W)`` into ``axes``, one colour scale centred on 0 for all of them."""
    vmax = float(np.abs(maps).max()) or 1.0
    for ax, m in zip(axes, maps):
        ax.imshow(m, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.axis("off")


def plot_layers(model: LeNet5, digit, *, title: str | None = None):
    """Every layer of ``model`` for one digit: the input, C1 and S2 (6 maps), C3 and S4 (16), C5's
    120 values (as 8 x 15), F6's 84 (as 12 x 7, the prototypes' layout) and the output.

    ``digit`` is a raw digit ``(28, 28)`` or one network input ``(1, 1, 32, 32)``. Maps show the
    states after each layer's nonlinearity (red positive, blue negative, one scale per layer).
    With the RBF output, the nearest prototype is drawn next to F6 and the bars are the ten
    distances (the shortest, the answer, in orange); with a linear output, the bars are the
    logits (the largest wins). Returns the figure.
    """
    import matplotlib.pyplot as plt

    model = _check_model(model)
    x = _inputs(model, digit, "digit")
    if len(x) != 1:
        raise ValueError(f"digit must be one digit, (28, 28) or (1, 1, 32, 32), got {len(x)} inputs")
    states = {name: _numpy(t[0]) for name, t in record_activations(model, x, activated=True).items()}
    rbf = model.config.head == "rbf"
    outputs = states["OUTPUT"]
    answer = int(outputs.argmin() if rbf else outputs.argmax())

    fig = plt.figure(figsize=(6.4, 3.5))
    grid = fig.add_gridspec(4, 16, height_ratios=[1, 1, 1, 1.5], hspace=0.45, wspace=0.12)
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(_numpy(x[0, 0]), cmap="gray_r", interpolation="nearest")
    ax.set_title("input", fontsize=7, loc="left")
    ax.axis("off")
    rows = {"C1": (0, 1), "S2": (0, 9), "C3": (1, 0), "S4": (2, 0)}  # (grid row, first column)
    for name, (row, first) in rows.items():
        maps = states[name]
        axes = [fig.add_subplot(grid[row, first + k]) for k in range(len(maps))]
        _show_maps(axes, maps)
        size = "x".join(str(d) for d in maps.shape[1:])
        axes[0].set_title(f"{name}: {len(maps)} maps {size}", fontsize=7, loc="left")
    c5 = fig.add_subplot(grid[3, 0:4])
    _show_maps([c5], states["C5"].reshape(1, 8, 15))
    c5.set_title("C5: 120 values", fontsize=7, loc="left")
    f6 = states["F6"].reshape(1, 12, 7)
    f6_axes = [fig.add_subplot(grid[3, 5:7])]
    f6_axes[0].set_title("F6: 84", fontsize=7, loc="left")
    if rbf:  # the answer's prototype (+-1), on F6's colour scale
        f6_axes.append(fig.add_subplot(grid[3, 7:9]))
        f6_axes[1].set_title(f"code {answer}", fontsize=7, loc="left")
        f6 = np.concatenate([f6, rbf_prototypes()[answer][None]])
    _show_maps(f6_axes, f6)
    bars = fig.add_subplot(grid[3, 10:16])
    colors = ["tab:orange" if k == answer else "tab:blue" for k in range(N_CLASSES)]
    bars.bar(range(N_CLASSES), outputs, color=colors)
    bars.annotate(f"{outputs[answer]:.3g}", (answer, outputs[answer]), xytext=(0, 2), textcoords="offset points",
                  ha="center", va="bottom", fontsize=6, color="tab:orange")
    bars.set_xticks(range(N_CLASSES))
    bars.tick_params(labelsize=6, length=2)
    bars.set_title("OUTPUT: RBF distances (smallest wins)" if rbf else "OUTPUT: logits (largest wins)",
                   fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_confusion(matrix, *, title: str | None = None):
    """A confusion matrix (:func:`confusion_matrix`), true classes down, predictions across, each count written."""
    from lenet_course.plots import heatmap

    matrix = _numpy(matrix)
    if matrix.shape != (N_CLASSES, N_CLASSES):
        raise ValueError(f"matrix must be the (10, 10) confusion matrix, got shape {matrix.shape}")
    return heatmap(matrix, list(range(N_CLASSES)), title=title, fmt="{:.0f}", cmap="Blues",
                   xlabel="predicted digit", ylabel="true digit")


def plot_digits(images, labels, predicted, *, cols: int = 8, title: str | None = None):
    """Digits titled ``label->prediction``, the mistakes' titles in red (e.g. from :func:`worst_digits`).

    ``images`` ``(N, H, W)`` (raw digits or inputs' first channel); ``labels`` and ``predicted`` ``(N,)``;
    ``cols`` digits per row.
    """
    from lenet_course.plots import image_grid

    images = _numpy(images)
    labels = _class_indices(labels, "labels", len(images))
    predicted = _class_indices(predicted, "predicted", len(images))
    if len(images) == 0:
        raise ValueError("images is empty: there is nothing to draw")
    fig = image_grid(images, [f"{t}\u2192{p}" for t, p in zip(labels, predicted)], cols=cols, title=title,
                     scale=0.75 if title is None else 0.9)  # room for the title above a single row
    for ax, t, p in zip(fig.axes, labels, predicted):
        if t != p:
            ax.title.set_color("tab:red")
    return fig


def plot_embedding(embedding: Embedding, labels, *, title: str | None = None):
    """Digits as dots, the ten prototypes as large numbered circles, each class in its own colour, in one 2-D space."""
    import matplotlib.pyplot as plt

    if not isinstance(embedding, Embedding):
        raise TypeError(f"embedding must be an Embedding from embed(...), got {type(embedding).__name__}")
    labels = _class_indices(labels, "labels", len(embedding.points))
    fig, ax = plt.subplots(figsize=(3.6, 3.1))
    colors = plt.get_cmap("tab10")
    for digit in range(N_CLASSES):
        xy = embedding.points[labels == digit]
        ax.scatter(xy[:, 0], xy[:, 1], s=3, color=colors(digit), linewidths=0, label=str(digit))
    for digit, (px, py) in enumerate(embedding.prototypes):
        ax.scatter([px], [py], s=150, color="white", edgecolors=colors(digit), linewidths=2, zorder=3)
        ax.text(px, py, str(digit), ha="center", va="center", fontsize=8, fontweight="bold", color=colors(digit),
                zorder=4)
    names = {"pca": ("principal component 1", "principal component 2"), "tsne": ("t-SNE 1", "t-SNE 2")}
    xlabel, ylabel = names.get(embedding.method, ("", ""))
    if embedding.pca is not None:
        share = embedding.pca.explained_variance_ratio
        xlabel, ylabel = f"{xlabel} ({share[0]:.0%} of the variance)", f"{ylabel} ({share[1]:.0%})"
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_title(title or "circles: the RBF prototypes", fontsize=8)
    fig.tight_layout()
    return fig


def plot_occlusion(images, maps, labels: Sequence | None = None, *, title: str | None = None):
    """Occlusion maps ``(N, H, W)`` with the outline of their inputs ``(N, H, W)`` drawn over them.

    Red: blanking that region lowered the class score (it was evidence for the class); blue: it
    raised it. Each map has its own colour scale, centred on 0 (the drops of different digits
    differ by orders of magnitude); ``labels`` titles the digits.
    """
    import matplotlib.pyplot as plt

    images, maps = _numpy(images), _numpy(maps)
    if images.ndim != 3 or maps.shape != images.shape:
        raise ValueError(f"images and maps must both be (N, H, W) of one shape, got {images.shape} and {maps.shape}")
    n = len(images)
    if n == 0:
        raise ValueError("images is empty: there is nothing to draw")
    fig, axes = plt.subplots(1, n, figsize=(max(0.85 * n, 2.4), 1.3 if title else 1.1), squeeze=False)
    for k, ax in enumerate(axes.flat):
        _show_maps([ax], maps[k][None])
        low, high = images[k].min(), images[k].max()
        if high > low:  # the strokes' outline, halfway between paper and ink
            ax.contour(images[k], levels=[(low + high) / 2], colors="k", linewidths=0.6)
        if labels is not None:
            ax.set_title(str(labels[k]), fontsize=7, pad=2)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
