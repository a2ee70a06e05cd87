"""Pictures for the lessons: image grids (digits, kernels, feature maps), class balance, histograms.

Every function draws into a new, modestly sized figure and returns it, so notebooks stay small;
nothing here touches matplotlib's global settings.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["image_grid", "class_balance", "pixel_histograms"]


def image_grid(images, labels: Sequence | None = None, *, cols: int = 10, title: str | None = None,
               cmap: str = "gray_r", symmetric: bool = False, scale: float = 0.6):
    """Show ``images`` ``(N, H, W)`` (digits, kernels, feature maps) in a grid, one colour scale for all.

    ``labels`` titles each image; ``symmetric=True`` centres the colour scale on 0 (use it with a
    diverging ``cmap`` such as ``"RdBu_r"`` for weights, where the sign matters). Accepts numpy
    arrays or torch tensors.
    """
    images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if images.ndim != 3:
        raise ValueError(f"image_grid expects images of shape (N, H, W), got {images.shape}")
    n = len(images)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * scale, rows * scale * 1.15), squeeze=False)
    vmin, vmax = float(images.min()), float(images.max())
    if symmetric:
        vmax = max(abs(vmin), abs(vmax)) or 1.0
        vmin = -vmax
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8, pad=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def class_balance(**label_sets: np.ndarray):
    """Bar chart of how many digits of each class each labelled set holds (``train=..., test=...``)."""
    fig, ax = plt.subplots(figsize=(6, 2.6))
    width = 0.8 / max(1, len(label_sets))
    for k, (name, labels) in enumerate(label_sets.items()):
        counts = np.bincount(np.asarray(labels), minlength=10)
        share = counts / max(1, counts.sum())
        ax.bar(np.arange(10) + (k - (len(label_sets) - 1) / 2) * width, share, width, label=f"{name} ({counts.sum():,})")
    ax.axhline(0.1, color="k", lw=0.8, ls=":", label="perfect balance")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("share of the set")
    ax.set_ylim(0, 0.14)
    ax.legend(fontsize=7, loc="upper center", ncol=len(label_sets) + 1, frameon=False)
    fig.tight_layout()
    return fig


def pixel_histograms(**arrays: np.ndarray):
    """One histogram per array of pixel values (log counts), side by side, titled by name."""
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.2 * len(arrays), 2.4), squeeze=False)
    for ax, (name, values) in zip(axes.flat, arrays.items()):
        values = np.asarray(values, dtype=np.float64).ravel()
        ax.hist(values, bins=50, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"{name}\nmean {values.mean():.3f}, var {values.var():.3f}", fontsize=8)
        ax.set_xlabel("pixel value", fontsize=8)
    fig.tight_layout()
    return fig
