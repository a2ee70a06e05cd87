"""Checks for the exercises of lesson 07 (looking inside): solutions/07_inspection.ipynb.

07.1 a forward hook that records C3's output, 07.2 the confusion matrix, 07.3 an occlusion map
for one digit, 07.4 PCA by SVD with the prototypes projected. The references are the package's
:mod:`lenet_course.inspection` (``record_activations``, ``confusion_matrix``,
``occlusion_scores``, ``fit_pca``). Everything runs on small tensors and made-up digits on the
CPU; no data is loaded.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from lenet_course.checks import CheckFailed, call, describe, exercise, expect_array, expect_tensor, expect_tuple
from lenet_course.data import to_tensor
from lenet_course.inspection import confusion_matrix, fit_pca, occlusion_scores, record_activations
from lenet_course.layers import rbf_prototypes
from lenet_course.models import lenet5

__all__ = ["stroke_digits", "hook_cases", "confusion_cases", "occlusion_cases", "pca_cases"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _net(variant: str, seed: int):
    """A freshly initialised LeNet-5, seeded without touching torch's global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return lenet5(variant).eval()


def stroke_digits() -> np.ndarray:
    """Three made-up raw digits, uint8 ``(3, 28, 28)``: a "1" (a vertical bar), a "7" and a "0" (a ring)."""
    digits = np.zeros((3, 28, 28), dtype=np.uint8)
    digits[0, 5:23, 12:16] = 255
    digits[1, 5:9, 7:21] = 255
    for row in range(9, 23):
        col = 20 - (row - 9) // 2
        digits[1, row, col - 2:col + 2] = 255
    yy, xx = np.mgrid[:28, :28]
    radius = np.hypot(yy - 13.5, (xx - 13.5) * 1.4)
    digits[2][(radius > 6) & (radius < 10)] = 255
    return digits


# --------------------------------------------------------------------------------------------
# 07.1 a forward hook on C3
# --------------------------------------------------------------------------------------------

def hook_cases() -> list[tuple[str, tuple]]:
    """(description, (model, x)) for 07.1."""
    noise = -0.1 + 1.275 * torch.rand(4, 1, 32, 32, generator=_generator(71))
    return [
        ("the paper's LeNet-5 (seeded), 3 made-up digits", (_net("paper", 0), to_tensor(stroke_digits()))),
        ("the modern LeNet-5 (seeded), 4 random inputs", (_net("modern", 1), noise)),
        ("the paper's LeNet-5 (another seed), 1 digit", (_net("paper", 2), to_tensor(stroke_digits()[2:]))),
    ]


def _with_model(fn: Callable) -> Callable:
    """``(model, x) -> (fn(model, x), the model after the call)``: to look for hooks left behind."""
    def run(model, x):
        return fn(model, x), model
    return run


@exercise("07.1", "A forward hook that records C3", names=("record_c3",),
          hint="Register a hook on model.c3 with register_forward_hook; the hook receives (module, inputs, "
               "output) and keeps output (detached) somewhere the function can reach, e.g. a dict or list. Run "
               "model(x) under torch.no_grad(), then call the remove() method of the handle that "
               "register_forward_hook returned (in a finally block, so it happens even if the forward pass fails) "
               "and return what the hook kept.")
def _record_c3(record_c3: Any) -> None:
    for description, (model, x) in hook_cases():
        expr = f"record_c3({description})"
        got, after = call(_with_model(record_c3), "record_c3", (model, x), description)
        want = record_activations(model, x, ["C3"])["C3"]
        if isinstance(got, torch.Tensor) and tuple(got.shape[1:]) == (6, 14, 14):
            raise CheckFailed(f"{expr} returned a tensor of shape {tuple(got.shape)}, S2's maps: that is C3's "
                              "input; return the output, the hook's third argument")
        if isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got, after.act(want), atol=1e-5) \
                and not torch.allclose(got, want, atol=1e-5):
            raise CheckFailed(f"{expr} returned C3's maps after the squashing; record what the hook sees, C3's own "
                              "output (the squashing is a separate module, applied afterwards)")
        expect_tensor(got, want, expr, atol=1e-5)
        hooks = sum(len(module._forward_hooks) for module in after.modules())
        if hooks:
            raise CheckFailed(f"after {expr} returned, the model still has {hooks} forward hook(s): every later "
                              "forward pass would run them; keep the handle register_forward_hook returns and "
                              "call its remove() method")


# --------------------------------------------------------------------------------------------
# 07.2 the confusion matrix
# --------------------------------------------------------------------------------------------

def confusion_cases() -> list[tuple[str, tuple]]:
    """(description, (labels, predicted)) for 07.2: int64 numpy arrays unless the description says otherwise."""
    rng = np.random.default_rng(72)
    labels = rng.integers(0, 10, 1000)
    predicted = np.where(rng.random(1000) < 0.8, labels, rng.integers(0, 10, 1000))
    sevens = np.full(300, 7, dtype=np.uint8)
    return [
        ("8 digits: labels [3, 1, 4, 1, 5, 9, 2, 6], predicted [3, 7, 4, 1, 3, 9, 2, 0]",
         (np.array([3, 1, 4, 1, 5, 9, 2, 6]), np.array([3, 7, 4, 1, 3, 9, 2, 0]))),
        ("1,000 random digits, 80% of them right", (labels, predicted)),
        ("6 digits of classes 0-2 only (the rows and columns of 3-9 stay 0)",
         (np.array([0, 1, 2, 2, 1, 0]), np.array([0, 2, 2, 2, 1, 1]))),
        ("300 sevens, all right, labels and predictions as uint8 (as MNIST stores labels)", (sevens, sevens.copy())),
    ]


@exercise("07.2", "The confusion matrix", names=("confusion",),
          hint="Start from np.zeros((10, 10), dtype=np.int64) and add 1 at [label, prediction] for every digit "
               "(a loop, or np.add.at); rows are the true classes, columns the predictions. Always 10 x 10, "
               "whatever classes occur; count in int64, not in the labels' dtype.")
def _confusion(confusion: Any) -> None:
    for description, (labels, predicted) in confusion_cases():
        expr = f"confusion({description})"
        got = call(confusion, "confusion", (labels, predicted), description)
        if isinstance(got, torch.Tensor):
            got = got.detach().cpu().numpy()
        want = confusion_matrix(labels, predicted)
        if isinstance(got, np.ndarray) and got.shape == want.shape and not np.array_equal(got, want) \
                and np.array_equal(got, want.T):
            raise CheckFailed(f"{expr} is the transpose of the expected matrix: put the true class on the rows "
                              "(first index) and the prediction on the columns")
        expect_array(got, want, expr, same_kind=True)


# --------------------------------------------------------------------------------------------
# 07.3 occlusion for one digit
# --------------------------------------------------------------------------------------------

def occlusion_cases() -> list[tuple[str, tuple]]:
    """(description, (model, x, target, patch, stride)) for 07.3; x is one input ``(1, 32, 32)``."""
    x = to_tensor(stroke_digits())
    return [
        ("the paper's LeNet-5 (seeded), the made-up 1, target 1, patch 8, stride 4", (_net("paper", 3), x[0], 1, 8, 4)),
        ("the modern LeNet-5 (seeded), the made-up 7, target 7, patch 6, stride 2", (_net("modern", 4), x[1], 7, 6, 2)),
        ("the paper's LeNet-5 (seeded), the made-up 0, target 3, patch 5, stride 3", (_net("paper", 5), x[2], 3, 5, 3)),
    ]


def _as_numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


@exercise("07.3", "An occlusion map for one digit", names=("occlusion_grid",),
          hint="Top-left corners run over 0, stride, 2*stride, ... up to and including 32 - patch, for the rows "
               "and for the columns. For each corner, clone x, set the patch x patch square to the background "
               "value BACKGROUND (-0.1), and store score(x) - score(occluded copy), the score being "
               "model.scores(...)[0, target] (larger = more likely). Return a (rows, columns) array or tensor.")
def _occlusion_grid(occlusion_grid: Any) -> None:
    for description, (model, x, target, patch, stride) in occlusion_cases():
        expr = f"occlusion_grid({description})"
        got = _as_numpy(call(occlusion_grid, "occlusion_grid", (model, x, target, patch, stride), description))
        want = occlusion_scores(model, x[None], [target], patch=patch, stride=stride)[0]
        if isinstance(got, np.ndarray) and got.shape == want.shape and np.allclose(got, -want, atol=1e-4) \
                and not np.allclose(got, want, atol=1e-4):
            raise CheckFailed(f"{expr} has every value with the wrong sign: a drop is the original score minus "
                              "the occluded one")
        expect_array(got, want.astype(np.float64), expr, same_kind=True, atol=1e-4)


# --------------------------------------------------------------------------------------------
# 07.4 PCA by SVD
# --------------------------------------------------------------------------------------------

def pca_cases() -> list[tuple[str, tuple]]:
    """(description, (features, prototypes)) for 07.4, float64 numpy arrays."""
    rng = np.random.default_rng(74)
    spread = np.geomspace(3.0, 0.1, 84)
    f6 = 1.2 * np.tanh(rng.normal(size=(300, 84)) * spread) + 0.4   # F6-like states, away from 0 on average
    small = rng.normal(size=(50, 5)) * np.array([5.0, 2.0, 1.0, 0.5, 0.1]) + np.array([10.0, -4.0, 0, 0, 3.0])
    return [
        ("300 F6-like states (300, 84) and the 10 RBF prototypes (10, 84)",
         (f6, rbf_prototypes().reshape(10, -1).astype(np.float64))),
        ("50 points in 5 dimensions whose mean is far from 0, and 3 other points", (small, rng.normal(size=(3, 5)))),
    ]


def _reference_pca(features: np.ndarray, prototypes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pca = fit_pca(features, 2)
    return pca.transform(features), pca.transform(prototypes)


@exercise("07.4", "PCA by SVD, with the prototypes projected", names=("pca_2d",),
          hint="Centre the features with their own mean; np.linalg.svd(centred, full_matrices=False) gives U, S, "
               "Vt, and the first two rows of Vt are the directions of largest variance. Project a point by "
               "subtracting the features' mean (also for the prototypes) and multiplying by those two rows "
               "(transposed). Return (points (N, 2), prototype points (K, 2)).")
def _pca_2d(pca_2d: Any) -> None:
    for description, (features, prototypes) in pca_cases():
        expr = f"pca_2d({description})"
        got = call(pca_2d, "pca_2d", (features, prototypes), description)
        expect_tuple(got, ("points", "prototype points"), expr, lists=True)
        points, protos = (_as_numpy(v) for v in got)
        want_points, want_protos = _reference_pca(features, prototypes)
        for value, want, what in ((points, want_points, "points"), (protos, want_protos, "prototype points")):
            if not isinstance(value, np.ndarray) or value.shape != want.shape:
                raise CheckFailed(f"the {what} of {expr} should be an array of shape {want.shape}, got "
                                  f"{describe(value)}")
        # A component's sign is arbitrary: turn each of the learner's to match the reference's.
        signs = np.where((points * want_points).sum(axis=0) < 0, -1.0, 1.0)
        expect_array(points * signs, want_points, f"the points of {expr} (each component's sign aside)",
                     same_kind=True, atol=1e-4)
        expect_array(protos * signs, want_protos, f"the prototype points of {expr} (each component's sign aside)",
                     same_kind=True, atol=1e-4)
