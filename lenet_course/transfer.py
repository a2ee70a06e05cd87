"""Transfer learning: the pretrained LeNet-5 adapted to a new small task, three ways.

The new task is the UCI handwritten digits shipped inside scikit-learn
(``sklearn.datasets.load_digits``, so always available offline): 1,797 digits written by 13
people (the test part of the UCI set), scanned as 32x32 bitmaps and reduced to 8x8 by counting
the ink in each 4x4 block (16 grey levels). The writers are not recorded, so a random split puts
every writer in both the training and the test set: test errors are a little optimistic.
:func:`load_uci_digits` brings them to LeNet-5's input the way MNIST was made (:func:`to_mnist_frame`:
upscaled to fit a 20x20 box, centred by the centre of mass in 28x28; then
:func:`lenet_course.data.to_tensor` pads and scales them like MNIST digits), with a stratified,
seeded train/test split; :func:`per_class` takes n examples of each class.

The transfer helpers: :func:`new_head` gives a network a new linear output for K classes on F6's
84 features, :func:`freeze` freezes the layers up to a given one, :func:`trainable_by_layer`
counts what is left to train, :func:`param_groups` gives an optimizer a smaller rate for the
trunk. :func:`train_strategy` trains one of the three :data:`STRATEGIES` with
:func:`lenet_course.training.fit`, and :func:`compare` runs strategies x training-set sizes x
seeds into a tidy table (:func:`summarize`, :func:`format_summary`, :func:`error_vs_size`) and the
learning curves.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.data import MNIST
from lenet_course.models import LeNet5, count_parameters, lenet5, load_pretrained
from lenet_course.paper import LAYER_NAMES
from lenet_course.progress import progress_bar
from lenet_course.training import History, TrainConfig, evaluate, fit, prepare, resolve_device

__all__ = [
    "UCI_SOURCE", "UCI_LEVELS", "TEST_PER_CLASS", "BOX", "TRUNK", "STRATEGIES", "TRUNK_LR_SCALE",
    "to_mnist_frame", "load_uci_digits", "per_class", "new_head", "freeze", "trainable_by_layer",
    "param_groups", "transfer_model", "train_strategy", "run_config", "Comparison", "compare",
    "summarize", "format_summary", "error_vs_size",
]

UCI_SOURCE = "uci"     # MNIST.source of the UCI digits
UCI_LEVELS = 16        # the UCI digits' grey levels: 0 (no ink) .. 16 (a 4x4 block full of ink)
TEST_PER_CLASS = 50    # load_uci_digits: 500 test digits, the other 1,297 for training
BOX = 20               # MNIST: each digit is scaled to fit a 20x20 box, then centred in 28x28
TRUNK: tuple[str, ...] = tuple(name.lower() for name in LAYER_NAMES[:-1])  # c1, s2, c3, s4, c5, f6
STRATEGIES: tuple[str, ...] = ("frozen", "finetune", "scratch")
TRUNK_LR_SCALE = 0.1   # "finetune": the pretrained trunk learns at this fraction of the head's rate


# --------------------------------------------------------------------------------------------
# The new task: the UCI digits, made to look like MNIST
# --------------------------------------------------------------------------------------------

def _frame(ink: np.ndarray) -> np.ndarray:
    """One digit, ink in 0..1 ``(h, w)`` -> float ``(28, 28)`` in 0..1, placed the MNIST way."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    frame = np.zeros((28, 28), dtype=np.float32)
    if rows.size == 0:  # no ink at all
        return frame
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)                                   # the longer side becomes 20 pixels
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    big = F.interpolate(torch.from_numpy(crop).float()[None, None], size=size, mode="bilinear",
                        align_corners=False)[0, 0].numpy()    # (<= 20, <= 20), grey edges (anti-aliased)
    mass = big.sum()
    centre = (big.sum(axis=1) @ np.arange(size[0]) / mass, big.sum(axis=0) @ np.arange(size[1]) / mass)
    # Shift so that the centre of mass lands on the frame's centre (13.5, 13.5), staying inside.
    top, left = (int(np.clip(round(13.5 - c), 0, 28 - s)) for c, s in zip(centre, size))
    frame[top:top + size[0], left:left + size[1]] = big
    return frame


def to_mnist_frame(images: np.ndarray, levels: int = UCI_LEVELS) -> np.ndarray:
    """Small digits ``(N, h, w)``, ink = ``levels`` -> uint8 ``(N, 28, 28)``, ink = 255, as MNIST was made.

    Each digit's ink is cropped to its bounding box, scaled (bilinear) so that its longer side is
    20 pixels, keeping the aspect ratio, and placed in a 28x28 frame with its centre of mass at
    the centre. The result goes on to :func:`lenet_course.data.to_tensor` like any MNIST digit.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"to_mnist_frame expects a batch of digits (N, h, w), got shape {images.shape}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive int (the value of full ink), got {levels!r}")
    if images.size and (images.min() < 0 or images.max() > levels):
        raise ValueError(f"to_mnist_frame expects grey levels 0..{levels}, got values from {images.min()} "
                         f"to {images.max()}; pass levels= the value of full ink (255 for uint8 images)")
    ink = images.astype(np.float32) / levels
    frames = np.stack([_frame(digit) for digit in ink]) if len(ink) else np.zeros((0, 28, 28), np.float32)
    return np.round(frames * 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 UCI digits as uint8 ``(1797, 28, 28)`` and their labels ``(1797,)``, converted once."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to import

    digits = load_digits()
    images = to_mnist_frame(digits.images.astype(np.int64))
    images.flags.writeable = False  # shared by every call: callers get copies (fancy indexing)
    labels = digits.target.astype(np.uint8)
    labels.flags.writeable = False
    return images, labels


def load_uci_digits(*, test_per_class: int = TEST_PER_CLASS, seed: int = 0) -> MNIST:
    """The UCI digits as an :class:`~lenet_course.data.MNIST` (source ``"uci"``), ready for ``prepare``.

    uint8 ``(N, 28, 28)`` digits with ink = 255, labels 0..9. The split is stratified:
    ``test_per_class`` digits of each class for testing (500 by default), the others (1,297) for
    training; which ones depends only on ``seed``, not on any global random state.
    """
    images, labels = _uci_digits()
    smallest = int(np.bincount(labels).min())
    if isinstance(test_per_class, bool) or not isinstance(test_per_class, int) or not 1 <= test_per_class < smallest:
        raise ValueError(f"test_per_class must be an int from 1 to {smallest - 1} (the smallest class has "
                         f"{smallest} digits and needs some for training), got {test_per_class!r}")
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:test_per_class] for c in range(10)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    train, test = rng.permutation(train), rng.permutation(test)
    return MNIST(images[train], labels[train], images[test], labels[test], source=UCI_SOURCE)


def per_class(images: np.ndarray, labels: np.ndarray, n: int | None, *, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples of each class drawn from ``(images, labels)``, or all of them when ``n`` is None.

    The draw depends only on ``seed``; for one seed a smaller ``n`` takes a subset of a larger
    one's examples (the first ``n`` of each class's shuffled order), so the sizes of a learning
    curve are nested. The examples keep their order in ``images``.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if n is None:
        return images.copy(), labels.copy()
    classes, counts = np.unique(labels, return_counts=True)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int (examples per class) or None (all), got {n!r}")
    if n > counts.min():
        raise ValueError(f"n={n} examples per class, but class {classes[counts.argmin()]} has only "
                         f"{counts.min()}; ask for at most {counts.min()}, or n=None for all")
    rng = np.random.default_rng(seed)
    chosen = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:n] for c in classes]))
    return images[chosen], labels[chosen]


# --------------------------------------------------------------------------------------------
# Heads, freezing, parameter groups
# --------------------------------------------------------------------------------------------

def _check_model(model) -> None:
    if not isinstance(model, LeNet5):
        raise TypeError(f"model must be a LeNet5 (lenet_course.models), got {type(model).__name__}")


def new_head(model: LeNet5, num_classes: int = 10) -> LeNet5:
    """Replace ``model``'s output layer, in place, by a new linear layer: F6's 84 features -> ``num_classes``.

    The new layer has 84 * K + K parameters (850 for 10 classes), initialised by PyTorch's
    default from torch's global generator, on the model's device; ``model.config.head`` becomes
    ``"linear"``, so training uses cross-entropy on its logits. Returns ``model``.
    """
    _check_model(model)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    reference = next(model.f6.parameters())
    model.output = nn.Linear(model.f6.out_features, num_classes).to(reference.device, reference.dtype)
    model.config = dataclasses.replace(model.config, head="linear")
    return model


def _layer_index(upto: str | None) -> int:
    """How many trunk layers ``freeze(..., upto)`` freezes: 0 for None, 6 for "f6"."""
    if upto is None:
        return 0
    if isinstance(upto, str) and upto.lower() in TRUNK:
        return TRUNK.index(upto.lower()) + 1
    raise ValueError(f"upto must be a layer name, one of {', '.join(map(repr, TRUNK))} (or upper case), or None "
                     f"(freeze nothing); got {upto!r}")


def freeze(model: LeNet5, upto: str | None = "f6") -> LeNet5:
    """Freeze the layers of ``model`` from C1 up to and including ``upto``; every later layer trains.

    A frozen layer's parameters get ``requires_grad = False``: backpropagation computes no
    gradient for them and :func:`lenet_course.training.fit` gives the optimizer only the others.
    ``upto="f6"`` leaves only the output layer to train; ``None`` unfreezes everything. In place;
    returns ``model``.

    Training or evaluation mode does not matter here: LeNet-5 has no layer that behaves
    differently in the two (no dropout, no batch normalisation). In a network with batch
    normalisation the frozen layers would also have to stay in ``eval()`` mode, or their running
    statistics would keep moving.
    """
    _check_model(model)
    frozen = _layer_index(upto)
    for k, name in enumerate(TRUNK):
        getattr(model, name).requires_grad_(k >= frozen)
    model.output.requires_grad_(True)
    return model


def trainable_by_layer(model: LeNet5) -> dict[str, int]:
    """Trainable parameters of each layer, ``{"C1": 156, ..., "OUTPUT": 850}``; frozen layers count 0.

    Counted as :func:`lenet_course.models.count_parameters` counts them (C3's unconnected weight
    slots excluded); the sum is ``count_parameters(model)``.
    """
    _check_model(model)
    return {name: count_parameters(getattr(model, name.lower())) for name in LAYER_NAMES}


def param_groups(model: LeNet5, lr: float, trunk_lr: float) -> list[dict]:
    """Two optimizer parameter groups: the trainable trunk (C1-F6) at ``trunk_lr``, the output at ``lr``.

    ``torch.optim.AdamW(param_groups(model, 1e-2, 1e-3))`` fine-tunes the pretrained layers ten
    times more gently than the new head. Frozen parameters are left out.
    """
    _check_model(model)
    if not (lr > 0 and trunk_lr > 0):
        raise ValueError(f"lr and trunk_lr must be > 0, got lr={lr!r}, trunk_lr={trunk_lr!r}")
    trunk = [p for name in TRUNK for p in getattr(model, name).parameters() if p.requires_grad]
    head = [p for p in model.output.parameters() if p.requires_grad]
    return [{"params": trunk, "lr": trunk_lr}, {"params": head, "lr": lr}]


# --------------------------------------------------------------------------------------------
# The three strategies
# --------------------------------------------------------------------------------------------

def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r}")


def transfer_model(strategy: str, num_classes: int = 10, *, variant: str = "paper", seed: int = 0) -> LeNet5:
    """A LeNet-5 ready for ``strategy``, with a new linear head for ``num_classes`` on F6, on the CPU.

    ``"frozen"``: the pretrained network (:func:`lenet_course.models.load_pretrained`) frozen up
    to F6, only the new head trains (84 * K + K parameters). ``"finetune"``: the pretrained
    network, every layer trains. ``"scratch"``: the same architecture from a random initialisation.
    ``seed`` draws the head (and the scratch network) inside :func:`torch.random.fork_rng`, so
    torch's global random state is left as it was.
    """
    _check_strategy(strategy)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = lenet5(variant) if strategy == "scratch" else load_pretrained(variant)
        new_head(model, num_classes)
    return freeze(model, "f6" if strategy == "frozen" else None)


def train_strategy(strategy: str, train_data: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, *,
                   test_data: tuple[torch.Tensor, torch.Tensor] | None = None, num_classes: int = 10,
                   variant: str = "paper", trunk_lr_scale: float = TRUNK_LR_SCALE, progress: bool = True
                   ) -> tuple[LeNet5, History]:
    """Build :func:`transfer_model` (seeded with ``config.seed``) and train it with :func:`~lenet_course.training.fit`.

    ``train_data`` and ``test_data`` are prepared tensors (:func:`lenet_course.training.prepare`)
    on ``config.device``. With ``"finetune"`` the trunk learns at ``trunk_lr_scale`` times
    ``config.lr`` and the head at ``config.lr`` (:func:`param_groups`). Returns the model and its
    :class:`History`.
    """
    _check_strategy(strategy)
    if not 0 < trunk_lr_scale <= 1:
        raise ValueError(f"trunk_lr_scale must be in (0, 1], a fraction of the head's rate, got {trunk_lr_scale!r}")
    model = transfer_model(strategy, num_classes, variant=variant, seed=config.seed)
    model = model.to(resolve_device(config.device)).to(memory_format=torch.channels_last)
    groups = param_groups(model, config.lr, config.lr * trunk_lr_scale) if strategy == "finetune" else None
    history = fit(model, train_data, config, test_data=test_data, progress=progress, param_groups=groups)
    return model, history


def run_config(config: TrainConfig, n: int, updates: int, seed: int) -> TrainConfig:
    """``config`` for one run on ``n`` examples: about ``updates`` updates, whatever the size of the set.

    Batches of ``min(config.batch_size, n)`` (the whole set when it is small) and as many passes
    as it takes to make at least ``updates`` updates; for 100 updates: 10 examples -> 100 passes
    of one update, 1,297 examples in batches of 64 -> 5 passes of 21 updates. ``seed`` replaces
    ``config.seed``.
    """
    for name, value in (("n", n), ("updates", updates)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    batch_size = min(config.batch_size, int(n))
    return dataclasses.replace(config, batch_size=batch_size, epochs=math.ceil(updates / math.ceil(n / batch_size)),
                               seed=seed)


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """On a CPU, one thread within the block; the setting is restored afterwards."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Comparison:
    """What :func:`compare` measured: one row per run, and each run's :class:`History`.

    ``rows``: dicts with ``strategy``, ``size`` (examples per class, or ``"all"``),
    ``train_examples``, ``seed``, ``test_error`` (a fraction), ``epochs`` and ``seconds`` (time
    in the training loop). ``histories`` is keyed by ``(strategy, size, seed)``.
    """
    rows: list[dict] = field(default_factory=list)
    histories: dict[tuple[str, int | str, int], History] = field(default_factory=dict)


def compare(task: MNIST, *, strategies: Sequence[str] = STRATEGIES, sizes: Sequence[int | None] = (1, 5, 20, None),
            seeds: Sequence[int] = (0, 1, 2), updates: int = 100, config: TrainConfig = TrainConfig(batch_size=64),
            curves: bool = False, num_classes: int = 10, variant: str = "paper",
            trunk_lr_scale: float = TRUNK_LR_SCALE, progress: bool = True) -> Comparison:
    """Train every strategy on every training-set size with every seed; test each on ``task``'s test set.

    ``sizes`` are examples per class (:func:`per_class`; ``None``: the whole training set). For
    seed s the examples are drawn with seed s, and s seeds the run (the head, the scratch weights,
    the order of the examples). Every run makes about ``updates`` updates (:func:`run_config`:
    ``config`` gives the optimizer, the rate, the schedule, the largest batch and the device), so
    each strategy gets the same budget at every size. With ``curves`` the test error is also
    measured after every pass (the learning curves' test error; it costs an evaluation per pass),
    otherwise only at the end. On a CPU the runs use one thread: their batches are small, and two
    threads that wait for each other are many times slower when other processes keep the cores busy.
    """
    for strategy in strategies:
        _check_strategy(strategy)
    if not sizes or not seeds or not strategies:
        raise ValueError("strategies, sizes and seeds must each hold at least one value")
    device = resolve_device(config.device)
    test_data = prepare(task.test_images, task.test_labels, device)
    result = Comparison()
    runs = [(size, seed, strategy) for size in sizes for seed in seeds for strategy in strategies]
    with _one_thread(device), progress_bar(total=len(runs), desc="runs", unit="run", enabled=progress,
                                           leave=False) as bar:
        for size, seed, strategy in runs:
            images, labels = per_class(task.train_images, task.train_labels, size, seed=seed)
            model, history = train_strategy(strategy, prepare(images, labels, device),
                                            run_config(config, len(labels), updates, seed),
                                            test_data=test_data if curves else None, num_classes=num_classes,
                                            variant=variant, trunk_lr_scale=trunk_lr_scale, progress=False)
            error = history.test_error[-1] if curves else evaluate(model, *test_data)["error"]
            label = "all" if size is None else size
            result.rows.append({"strategy": strategy, "size": label, "train_examples": len(labels), "seed": seed,
                                "test_error": error, "epochs": len(history.epoch), "seconds": history.train_seconds})
            result.histories[strategy, label, seed] = history
            bar.update()
    return result


# --------------------------------------------------------------------------------------------
# The table and the plot
# --------------------------------------------------------------------------------------------

def summarize(rows: Sequence[dict]) -> list[dict]:
    """One row per (strategy, size) of :attr:`Comparison.rows`: ``runs``, ``train_examples`` (their
    mean), ``mean``, ``std`` (0 for one run), ``min`` and ``max`` of the test error, ``seconds`` (mean)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["size"]), []).append(row)
    summary = []
    for (strategy, size), group in groups.items():
        errors = [r["test_error"] for r in group]
        summary.append({"strategy": strategy, "size": size, "runs": len(group),
                        "train_examples": statistics.fmean(r["train_examples"] for r in group),
                        "mean": statistics.fmean(errors), "std": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                        "min": min(errors), "max": max(errors),
                        "seconds": statistics.fmean(r["seconds"] for r in group)})
    return summary


def format_summary(rows: Sequence[dict]) -> str:
    """:func:`summarize` as text: test error in percent per size (rows) and strategy (columns), mean +- std."""
    summary = summarize(rows)
    strategies = list(dict.fromkeys(r["strategy"] for r in summary))
    sizes = list(dict.fromkeys(r["size"] for r in summary))
    cells = {(r["strategy"], r["size"]): r for r in summary}
    header = f"{'per class':>9}{'examples':>10}" + "".join(f"{s:>18}" for s in strategies)
    lines = [header, "-" * len(header)]
    for size in sizes:
        present = [cells[s, size] for s in strategies if (s, size) in cells]
        text = "".join(f"{cells[s, size]['mean']:>9.2%} +-{cells[s, size]['std']:>6.2%}" if (s, size) in cells
                       else f"{'':>18}" for s in strategies)
        lines.append(f"{size!s:>9}{present[0]['train_examples']:>10,.0f}{text}")
    return "\n".join(lines)


def error_vs_size(rows: Sequence[dict], *, num_classes: int = 10, title: str | None = None, ax=None):
    """Test error against examples per class (log-log), one line per strategy: the mean over seeds,
    a band from the best to the worst seed, and each run as a dot. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from lenet_course.plots import log_ticks

    summary = summarize(rows)
    if not summary:
        raise ValueError("error_vs_size needs at least one row (Comparison.rows)")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.0))
    else:
        fig = ax.figure
    for k, strategy in enumerate(dict.fromkeys(r["strategy"] for r in summary)):
        points = sorted((r for r in summary if r["strategy"] == strategy), key=lambda r: r["train_examples"])
        x = [r["train_examples"] / num_classes for r in points]
        color = f"C{k}"
        ax.fill_between(x, [100 * r["min"] for r in points], [100 * r["max"] for r in points], color=color, alpha=0.15,
                        lw=0)
        ax.plot(x, [100 * r["mean"] for r in points], "o-", color=color, lw=1.6, ms=4, label=strategy)
        runs = [r for r in rows if r["strategy"] == strategy]
        ax.plot([r["train_examples"] / num_classes for r in runs], [100 * r["test_error"] for r in runs], ".",
                color=color, ms=3, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_ticks(ax, "%")
    sizes = sorted({r["train_examples"] / num_classes for r in summary})
    ax.set_xticks(sizes, [f"{v:.0f}" for v in sizes])  # the sizes that were run
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training examples per class", fontsize=8)
    ax.set_ylabel("test error", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7, which="both")
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
