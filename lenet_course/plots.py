"""Pictures for the lessons: image grids, feature maps, receptive fields, connection tables,
activation curves, heatmaps, bar charts, learning curves, class balance and histograms.

Every function draws into a new, modestly sized figure and returns it, so notebooks stay small;
nothing here touches matplotlib's global settings.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["image_grid", "class_balance", "pixel_histograms", "connection_table", "activation_curves",
           "feature_maps", "receptive_field", "heatmap", "grouped_bars", "learning_curves", "log_ticks"]


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


def connection_table(mask, *, groups: Sequence[tuple[int, int, str]] = (), title: str | None = None,
                     row_label: str = "S2 map", col_label: str = "C3 map"):
    """A connection table as the paper draws Table I: one column per output map, one row per input map.

    ``mask`` ``(K, C)`` (output maps x input maps, e.g. ``lenet_course.layers.c3_mask()``) holds 1
    where input map c feeds output map k; those cells are filled and marked X. ``groups`` lists
    ``(first, stop, label)`` column ranges to separate and label above the grid.
    """
    mask = np.asarray(mask, dtype=float)
    if mask.ndim != 2:
        raise ValueError(f"connection_table expects a (K, C) mask, got shape {mask.shape}")
    n_out, n_in = mask.shape
    fig, ax = plt.subplots(figsize=(min(0.36 * n_out + 0.9, 9), 0.36 * n_in + 1.05))
    ax.imshow(mask.T, cmap="Blues", vmin=0, vmax=1.6, aspect="equal")
    for c, k in zip(*np.nonzero(mask.T)):
        ax.text(k, c, "X", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n_out))
    ax.set_yticks(range(n_in))
    ax.set_xticks(np.arange(-0.5, n_out), minor=True)
    ax.set_yticks(np.arange(-0.5, n_in), minor=True)
    ax.grid(which="minor", color="0.6", lw=0.5)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_xlabel(col_label, fontsize=8)
    ax.set_ylabel(row_label, fontsize=8)
    for first, stop, label in groups:
        if first > 0:
            ax.axvline(first - 0.5, color="k", lw=1.2)
        ax.text((first + stop - 1) / 2, -0.7, label, ha="center", va="bottom", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9, pad=16 if groups else 6)
    fig.tight_layout()
    return fig


def activation_curves(a, curves, *, panel_titles: Sequence[str] = ("f(a)", "f'(a)"), xlabel: str = "a"):
    """Activation functions side by side with their derivatives, one panel per entry of ``panel_titles``.

    ``curves`` maps a label to a tuple of arrays over the inputs ``a``, one array per panel
    (``{"scaled tanh": (f, f_prime)}``); ``None`` leaves a panel without that curve. Returns the
    figure; its axes are ``fig.axes`` for marks of your own.
    """
    a = np.asarray(a)
    n = len(panel_titles)
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n + 0.4, 2.5), squeeze=False)
    for k, (label, values) in enumerate(curves.items()):
        for ax, v in zip(axes.flat, values):
            if v is not None:
                ax.plot(a, np.asarray(v), lw=1.4, color=f"C{k}", label=label)
    for ax, panel_title in zip(axes.flat, panel_titles):
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        ax.grid(alpha=0.3)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig



def _as_2d_list(maps) -> list[np.ndarray]:
    """Feature maps as a list of 2-D numpy arrays (from a (K, H, W) array/tensor or a list of maps)."""
    maps = [np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=float) for m in maps]
    bad = [m.shape for m in maps if m.ndim != 2]
    if not maps or bad:
        raise ValueError(f"expected 2-D feature maps (a (K, H, W) array or a list of (H, W) maps), got shapes {bad}")
    return maps


def feature_maps(image, maps, labels: Sequence | None = None, *, title: str | None = None,
                 image_label: str = "input", cmap: str = "RdBu_r", scale: float = 0.9):
    """An input (grey, ink dark) followed by feature maps computed from it, in one row.

    ``maps`` is a ``(K, H, W)`` array or tensor, or a list of 2-D maps of any sizes (a C1 map next
    to its 14x14 subsampled versions). All maps share one colour scale centred on 0 (with the
    default diverging ``cmap``, red is positive and blue negative), so they can be compared;
    ``labels`` titles them.
    """
    image = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=float)
    maps = _as_2d_list(maps)
    if image.ndim != 2:
        raise ValueError(f"feature_maps expects one image (H, W), got shape {image.shape}")
    lines = max([1] + [str(label).count("\n") + 1 for label in ([] if labels is None else labels)])  # title room
    height = round(scale * 1.05 + 0.17 * lines + (0.3 if title else 0.0), 1)
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=((len(maps) + 1) * scale, height), squeeze=False)
    vmax = max(float(np.abs(m).max()) for m in maps) or 1.0
    axes[0, 0].imshow(image, cmap="gray_r", interpolation="nearest")
    axes[0, 0].set_title(image_label, fontsize=8, pad=2)
    for k, (ax, m) in enumerate(zip(axes[0, 1:], maps)):
        ax.imshow(m, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        if labels is not None:
            ax.set_title(str(labels[k]), fontsize=8, pad=2)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def receptive_field(image, feature_map, units: Sequence[tuple[int, int]], size: int, *, stride: int = 1,
                    titles: tuple[str, str] = ("input", "feature map"), cmap: str = "RdBu_r",
                    image_cmap: str = "gray_r"):
    """Where units of a feature map look: the input with each unit's ``size x size`` field outlined,
    next to the map with the units marked in the same colours.

    Unit ``(i, j)`` reads the input rows ``stride*i ... stride*i + size - 1`` and the same columns
    (1 and 5 for a C1 unit, 2 and 2 for an S2 unit on its C1 map). The units are drawn in green,
    purple, orange, cyan, in the order given; axes keep their pixel indices. The input is drawn
    with ``image_cmap`` (ink dark); any other colour map than ``"gray_r"`` gets a scale centred on
    0, for an input that is itself a feature map.
    """
    image = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=float)
    [feature_map] = _as_2d_list([feature_map])
    fig, (left, right) = plt.subplots(1, 2, figsize=(5.6, 2.7))
    limit = float(np.abs(image).max()) or 1.0
    centred = {} if image_cmap == "gray_r" else {"vmin": -limit, "vmax": limit}
    left.imshow(image, cmap=image_cmap, interpolation="nearest", **centred)
    vmax = float(np.abs(feature_map).max()) or 1.0
    right.imshow(feature_map, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    for k, (i, j) in enumerate(units):  # colours that show on ink, paper, red and blue alike
        color = ("tab:green", "tab:purple", "tab:orange", "tab:cyan")[k % 4]
        left.add_patch(plt.Rectangle((stride * j - 0.5, stride * i - 0.5), size, size, fill=False, ec=color,
                                     lw=1.8, clip_on=False))
        right.add_patch(plt.Rectangle((j - 0.9, i - 0.9), 1.8, 1.8, fill=False, ec=color, lw=1.8, clip_on=False))
    for ax, text in zip((left, right), titles):
        ax.set_title(text, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig



def heatmap(matrix, labels: Sequence | None = None, *, title: str | None = None, fmt: str = "{:g}",
            cmap: str = "viridis", xlabel: str = "", ylabel: str = "", colorbar: str | None = None):
    """A small matrix (distances between codes, a confusion matrix) as coloured cells, each value written in it.

    ``labels`` names the rows and the columns of a square matrix (0, 1, ... by default); ``fmt``
    formats each value; ``colorbar`` labels a colour bar (none when None). The text is white on
    dark cells and black on light ones. Accepts numpy arrays or torch tensors; returns the figure.
    """
    matrix = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"heatmap expects a 2-D matrix, got shape {matrix.shape}")
    rows, cols = matrix.shape
    if labels is not None and not (rows == cols == len(labels)):
        raise ValueError(f"labels name the rows and columns of a square matrix: got {len(labels)} labels "
                         f"for shape {matrix.shape}")
    fig, ax = plt.subplots(figsize=(0.34 * cols + (2.0 if colorbar else 1.2), 0.3 * rows + 0.9))
    image = ax.imshow(matrix, cmap=cmap)
    for (r, c), value in np.ndenumerate(matrix):
        red, green, blue, _ = image.cmap(image.norm(value))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(c, r, fmt.format(value), ha="center", va="center", fontsize=6.5,
                color="white" if dark else "black")
    names = [str(label) for label in labels] if labels is not None else None
    ax.set_xticks(range(cols), names if names else range(cols))
    ax.set_yticks(range(rows), names if names else range(rows))
    ax.tick_params(length=0, labelsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if colorbar:
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(colorbar, fontsize=7)
        bar.ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def grouped_bars(values, labels: Sequence | None = None, *, ax=None, title: str | None = None,
                 xlabel: str = "", ylabel: str = ""):
    """Bars side by side: one group per position (a class), one bar per entry of ``values``.

    ``values`` maps a series name to its numbers, all of one length (``{"MSE": grads, ...}``);
    ``labels`` names the groups (0, 1, ... by default). Draws into ``ax`` when given (for figures
    of several panels), else into a new 6 x 2.5 figure; returns the figure.
    """
    series = {name: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float).ravel()
              for name, v in values.items()}
    lengths = {len(v) for v in series.values()}
    if len(lengths) != 1:
        raise ValueError(f"grouped_bars expects series of one length, got lengths {sorted(lengths)}")
    (n,) = lengths
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 2.5))
    else:
        fig = ax.figure
    width = 0.8 / len(series)
    for k, (name, v) in enumerate(series.items()):
        ax.bar(np.arange(n) + (k - (len(series) - 1) / 2) * width, v, width, label=name, color=f"C{k}")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(n), [str(label) for label in labels] if labels is not None else range(n))
    ax.tick_params(labelsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def log_ticks(ax, suffix: str = "") -> None:
    """Label a logarithmic y axis at 1-2-5 steps inside its range (``suffix`` after each number)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    low, high = ax.get_ylim()
    candidates = [(m, m * 10.0 ** e) for e in range(-6, 7) for m in (1, 2, 5) if low <= m * 10.0 ** e <= high]
    for mantissas in ((1, 2, 5), (1, 5), (1,)):  # fewer labels on a taller range
        ticks = [t for m, t in candidates if m in mantissas]
        if len(ticks) <= 6:
            break
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def learning_curves(history, *, title: str | None = None):
    """Training curves, one point per pass: the training loss (left) and the error rates (right).

    ``history`` is a :class:`lenet_course.training.History` or a mapping of run names to
    Histories (``{"modern": h1, "paper": h2}``), one colour per run. The training loss and the
    training error (dashed) are averages over each pass, taken while the weights were still
    changing; the test error (solid, when the run was evaluated) is measured after each pass.
    Both axes are logarithmic, so losses of different criteria and errors from 90% down to 1%
    share a panel. Returns the figure.
    """
    from matplotlib.ticker import MaxNLocator

    runs = dict(history) if isinstance(history, dict) else {"": history}
    if not runs:
        raise ValueError("learning_curves needs at least one History")
    for name, h in runs.items():
        label = f"history {name!r}" if name else "the history"
        if not h.epoch:
            raise ValueError(f"{label} has no completed pass to plot")
        lengths = {len(h.epoch), len(h.train_loss), len(h.train_error)} | ({len(h.test_error)} if h.test_error else set())
        if len(lengths) != 1:
            raise ValueError(f"{label} has lists of different lengths: {sorted(lengths)}")
    fig, (loss_ax, error_ax) = plt.subplots(1, 2, figsize=(6.4, 2.5))
    for k, (name, h) in enumerate(runs.items()):
        color = f"C{k}"
        loss_ax.plot(h.epoch, h.train_loss, "o-", ms=3, lw=1.4, color=color, label=name or None)
        error_ax.plot(h.epoch, 100 * np.asarray(h.train_error), "o--", ms=3, lw=1.0, color=color, alpha=0.7)
        if h.test_error:
            error_ax.plot(h.epoch, 100 * np.asarray(h.test_error), "o-", ms=3, lw=1.4, color=color)
    for ax, panel_title, ylabel, suffix in ((loss_ax, "training loss", "loss (each run's criterion)", ""),
                                            (error_ax, "error rate", "error", "%")):
        ax.set_yscale("log")
        log_ticks(ax, suffix)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("pass over the training set", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7, which="both")
    styles = [plt.Line2D([], [], color="0.3", ls="-", lw=1.4, label="test"),
              plt.Line2D([], [], color="0.3", ls="--", lw=1.0, label="train (during the pass)")]
    error_ax.legend(handles=styles, fontsize=7, frameon=False)
    if any(runs):
        loss_ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
