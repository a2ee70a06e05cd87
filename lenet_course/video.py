"""From images to video: moving-digit clips, LeNet-5 frame by frame, and a small 3-D convolution network.

* :func:`moving_digits` makes Moving-MNIST-style clips: one MNIST digit, shrunk, moving in a
  straight line at a constant speed in one of 4 (or 8) directions, inside the frame for the whole
  clip (no bounce, so the direction is well defined). The result, :class:`Clips`, holds the
  frames ``(N, T, 1, 32, 32)`` in the paper's input range, so every frame is a LeNet-5 input,
  with the labels: the digit, the direction and the digit's position in every frame.
* :class:`FrameWise` is *late fusion*: a :class:`~lenet_course.models.LeNet5` applied to each
  frame, its per-frame scores pooled over time by :func:`temporal_pool` (mean, max, or a
  majority vote). Such pooling ignores the order of the frames, so it cannot see motion.
* :class:`LeNet3D` is LeNet-5 with 3-D convolutions (``nn.Conv3d``) whose kernels span 3 frames:
  it sees how the picture changes from frame to frame, so it can learn the direction of motion.
  :func:`lenet_course.training.fit` and :func:`~lenet_course.training.evaluate` train and
  measure it like any module that returns logits; :func:`layer_shapes` lists each layer's output shape.
* :func:`clip_animation` shows clips as a small animation (HTML for a notebook) and
  :func:`clip_strip` as a static strip of frames side by side, for viewers that do not run
  JavaScript.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.data import paper_scale
from lenet_course.models import LeNet5

__all__ = [
    "DIRECTIONS", "direction_names", "opposite", "Clips", "shrink_digits", "moving_digits",
    "POOLINGS", "temporal_pool", "FrameWise", "LeNet3D", "layer_shapes",
    "clip_animation", "clip_strip",
]

# (row step, column step) of each direction, in image coordinates (rows grow downwards). Each
# direction is followed by its opposite, so the opposite of direction i is i ^ 1. The first four
# are the 4-direction task; all eight the 8-direction one (a diagonal moves `speed` pixels along
# both axes per frame).
DIRECTIONS: dict[str, tuple[int, int]] = {
    "right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0),
    "down-right": (1, 1), "up-left": (-1, -1), "down-left": (1, -1), "up-right": (-1, 1),
}


def direction_names(n_directions: int = 4) -> tuple[str, ...]:
    """The names of the directions of the ``n_directions`` task (4 or 8), in label order."""
    if n_directions not in (4, 8):
        raise ValueError(f"n_directions must be 4 (right, left, down, up) or 8 (with the diagonals), "
                         f"got {n_directions!r}")
    return tuple(DIRECTIONS)[:n_directions]


def opposite(directions: torch.Tensor) -> torch.Tensor:
    """The label of the opposite direction (right <-> left, down <-> up, ...): ``directions ^ 1``."""
    return torch.bitwise_xor(torch.as_tensor(directions), 1)


# --------------------------------------------------------------------------------------------
# The clips
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class Clips:
    """Moving-digit clips and their labels, as :func:`moving_digits` makes them.

    ``clips``: float32 ``(N, T, 1, H, W)`` in the paper's range (background -0.1, ink up to
    1.175); ``digits``: int64 ``(N,)``; ``directions``: int64 ``(N,)``, indices into
    ``names``; ``positions``: int64 ``(N, T, 2)``, the (row, column) of the top-left corner of
    the digit's ``digit_size`` x ``digit_size`` box in every frame; ``speed``: pixels per frame
    along each moving axis.
    """
    clips: torch.Tensor
    digits: torch.Tensor
    directions: torch.Tensor
    positions: torch.Tensor
    names: tuple[str, ...]
    speed: int
    digit_size: int

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        n, t, _, h, w = self.clips.shape
        return (f"Clips({n:,} clips of {t} frames {h}x{w}, digit {self.digit_size}x{self.digit_size}, "
                f"{self.speed} px/frame, directions: {', '.join(self.names)})")

    def reversed(self) -> "Clips":
        """The same clips played backwards: frames and positions in reverse order, each
        direction replaced by its opposite, the digits unchanged."""
        return Clips(self.clips.flip(1), self.digits, opposite(self.directions), self.positions.flip(1),
                     self.names, self.speed, self.digit_size)


def _check_images(images) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        got = type(images).__name__ + (f" of {images.dtype}" if hasattr(images, "dtype") else "")
        raise TypeError(f"images must be a numpy uint8 array of digits (N, 28, 28) as load_mnist gives them, "
                        f"got {got}")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}"
                         + ("; for one digit pass images[None]" if images.shape == (28, 28) else ""))
    return images


def _check_labels(labels, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({n},), one per image, "
                         f"got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"labels must be digits 0..9, got values from {labels.min()} to {labels.max()}")
    return labels


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def shrink_digits(images: np.ndarray, digit_size: int) -> np.ndarray:
    """uint8 digits ``(N, 28, 28)`` -> uint8 ``(N, digit_size, digit_size)``, resized with
    antialiasing (the blank margin shrinks with the digit: a 20-pixel box holds ~14 pixels of ink)."""
    images = _check_images(images)
    digit_size = _positive_int("digit_size", digit_size, 4)
    if digit_size == 28:
        return images.copy()
    if len(images) == 0:
        return np.zeros((0, digit_size, digit_size), np.uint8)
    x = torch.from_numpy(images).float()[:, None]                        # (N, 1, 28, 28)
    x = F.interpolate(x, size=(digit_size, digit_size), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()       # (N, d, d)


def _rng(generator) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):  # draws one seed from it, so it advances like any use
        return np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be a numpy Generator (np.random.default_rng(seed)), a torch.Generator "
                    f"or an int seed, got {type(generator).__name__}")


def moving_digits(images: np.ndarray, labels, *, generator, frames: int = 8, size: int = 32,
                  digit_size: int = 20, speed: int = 1, n_directions: int = 4) -> Clips:
    """One clip per digit: the digit, shrunk to ``digit_size``, moving ``speed`` pixels per frame.

    ``images``: uint8 ``(N, 28, 28)`` as :func:`~lenet_course.data.load_mnist` gives them;
    ``labels``: their digits ``(N,)``. Each clip draws, from ``generator`` (a numpy Generator, a
    torch.Generator or an int seed: the same generator state gives the same clips), a direction
    among ``n_directions`` (4: right, left, down, up; 8: also the diagonals) and a start position
    such that the digit's box stays inside the ``size`` x ``size`` frame in all ``frames`` frames.
    Along a moving axis the start is uniform over the positions that allow the whole trip, so a
    clip played backwards is as likely as the clip itself.

    The defaults make 8 frames of 32x32 (LeNet-5's input), a 20x20 digit box, 1 pixel per frame:
    7 pixels of travel out of the 12 the frame leaves free. Why 20: a smaller digit has more room
    to move but loses detail; centred, the shipped modern LeNet-5 reads 20-pixel digits about as
    well as MNIST's 28-pixel ones (~96% on the offline sample) and 16-pixel ones far worse (~75%).
    """
    images = _check_images(images)
    labels = _check_labels(labels, len(images))
    frames = _positive_int("frames", frames, 2)
    size = _positive_int("size", size, 4)
    digit_size = _positive_int("digit_size", digit_size, 4)
    speed = _positive_int("speed", speed, 1)
    names = direction_names(n_directions)
    if digit_size > size:
        raise ValueError(f"digit_size ({digit_size}) must not exceed size ({size})")
    room, travel = size - digit_size, (frames - 1) * speed
    if travel > room:
        raise ValueError(f"the digit would leave the frame: {frames} frames at speed {speed} travel {travel} pixels, "
                         f"but a {digit_size}-pixel digit in a {size}-pixel frame has room for {room}; "
                         "lower speed or frames, or shrink digit_size")
    rng = _rng(generator)
    n = len(images)
    steps = np.array([DIRECTIONS[name] for name in names]) * speed       # (D, 2) pixels per frame
    directions = rng.integers(0, len(names), n)                          # (N,)
    velocity = steps[directions]                                         # (N, 2)
    low = np.maximum(0, -velocity * (frames - 1))                        # (N, 2) the first allowed start
    high = room - np.maximum(0, velocity * (frames - 1))                 # (N, 2) the last allowed start
    start = rng.integers(low, high + 1)                                  # (N, 2) uniform in [low, high]
    positions = start[:, None, :] + np.arange(frames)[None, :, None] * velocity[:, None, :]  # (N, T, 2)

    tiles = shrink_digits(images, digit_size)                            # (N, d, d)
    canvas = np.zeros((n, frames, size, size), dtype=np.uint8)           # (N, T, H, W) background
    offsets, clip = np.arange(digit_size), np.arange(n)[:, None, None]
    for t in range(frames):                                              # paste each digit at its place
        rows = positions[:, t, 0, None, None] + offsets[:, None]         # (N, d, 1)
        cols = positions[:, t, 1, None, None] + offsets[None, :]         # (N, 1, d)
        canvas[clip, t, rows, cols] = tiles                              # (N, d, d)
    return Clips(clips=torch.from_numpy(paper_scale(canvas)).unsqueeze(2),  # (N, T, 1, H, W)
                 digits=torch.as_tensor(labels, dtype=torch.int64),
                 directions=torch.as_tensor(directions, dtype=torch.int64),
                 positions=torch.as_tensor(positions, dtype=torch.int64),
                 names=names, speed=speed, digit_size=digit_size)


def _check_clips(clips, who: str, *, size: int | None = None) -> torch.Tensor:
    if not isinstance(clips, torch.Tensor):
        hint = "; pass Clips.clips" if isinstance(clips, Clips) else ""
        raise TypeError(f"{who} expects a tensor of clips (N, T, 1, H, W), got {type(clips).__name__}{hint}")
    if clips.dim() != 5 or clips.shape[2] != 1 or (size is not None and tuple(clips.shape[3:]) != (size, size)):
        want = f"(N, T, 1, {size}, {size})" if size else "(N, T, 1, H, W)"
        hint = "; for one clip pass clips[None]" if clips.dim() == 4 else ""
        raise ValueError(f"{who} expects clips {want}, got shape {tuple(clips.shape)}{hint}")
    return clips


# --------------------------------------------------------------------------------------------
# Late fusion: LeNet-5 on every frame, then pooling over time
# --------------------------------------------------------------------------------------------

POOLINGS = ("mean", "max", "vote")


def temporal_pool(scores: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Per-frame scores ``(N, T, C)`` (larger = more likely) -> one score per clip and class ``(N, C)``.

    ``"mean"``: the average score over the frames; ``"max"``: the best score any frame gave;
    ``"vote"``: the fraction of frames whose top class is that class (a majority vote; ties go
    to the lower class index under ``argmax``). None of them depends on the order of the frames.
    """
    if how not in POOLINGS:
        raise ValueError(f"how must be one of {', '.join(map(repr, POOLINGS))}, got {how!r}")
    if not isinstance(scores, torch.Tensor) or scores.dim() != 3:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"temporal_pool expects scores (N, T, C), got {got}")
    if how == "mean":
        return scores.mean(dim=1)
    if how == "max":
        return scores.amax(dim=1)
    votes = F.one_hot(scores.argmax(dim=2), scores.shape[2])            # (N, T, C)
    return votes.to(scores.dtype).mean(dim=1)


class FrameWise(nn.Module):
    """Late fusion: ``net`` (a LeNet-5) reads every frame on its own; the scores are pooled over time.

    ``clips (N, T, 1, 32, 32)`` -> ``(N, 10)`` clip scores (larger = more likely). The frames go
    through ``net`` as one batch of ``N * T`` images, exactly as if each were classified alone.
    """

    def __init__(self, net: LeNet5, pooling: str = "mean"):
        super().__init__()
        if not isinstance(net, LeNet5):
            raise TypeError(f"net must be a LeNet5 (models.lenet5 or models.load_pretrained), "
                            f"got {type(net).__name__}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(map(repr, POOLINGS))}, got {pooling!r}")
        self.net = net
        self.pooling = pooling

    def _per_frame(self, clips: torch.Tensor, fn) -> torch.Tensor:
        clips = _check_clips(clips, "FrameWise", size=32)
        n, t = clips.shape[:2]
        out = fn(clips.reshape(n * t, *clips.shape[2:]))                 # (N*T, K)
        return out.reshape(n, t, -1)                                     # (N, T, K)

    def frame_scores(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, T, 1, 32, 32)`` -> ``(N, T, 10)``: :meth:`LeNet5.scores` of every frame."""
        return self._per_frame(clips, self.net.scores)

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, T, 1, 32, 32)`` -> ``(N, T, 84)``: F6's state for every frame."""
        return self._per_frame(clips, self.net.features)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, T, 1, 32, 32)`` -> ``(N, 10)``: the frame scores pooled with ``self.pooling``."""
        return temporal_pool(self.frame_scores(clips), self.pooling)


# --------------------------------------------------------------------------------------------
# A small 3-D convolution network
# --------------------------------------------------------------------------------------------

class LeNet3D(nn.Module):
    """LeNet-5 with a time axis: clips ``(N, T, 1, 32, 32)`` -> ``(N, n_classes)`` logits.

    The layers are LeNet-5's (the modern variant: full C3, average pooling, ReLU, a linear
    output), with C1's and C3's kernels made 3-D: each spans 3 consecutive frames as well as 5x5
    pixels, so together they compare 5 frames. S2 and S4 pool space only; C5 is still a 5x5
    convolution, applied to each remaining time step; its maps are averaged over time before F6.
    Shapes for the default 8 frames (T frames give T-2 and T-4 time steps; T >= 5)::

        input    (N, 1, 8, 32, 32)    the clip, channels first: (N, C, T, H, W) is what Conv3d takes
        c1       (N, 6, 6, 28, 28)    6 kernels 3x5x5 (frames x rows x columns), ReLU: 456 parameters
        s2       (N, 6, 6, 14, 14)    2x2 average pooling in space, every frame kept
        c3       (N, 16, 4, 10, 10)   16 kernels 3x5x5 over the 6 maps, ReLU: 7,216 parameters
        s4       (N, 16, 4, 5, 5)     2x2 average pooling in space
        c5       (N, 120, 4, 1, 1)    120 kernels 1x5x5 over the 16 maps, ReLU: 48,120 parameters
        pool     (N, 120)             the average of each C5 map over time
        f6       (N, 84)              linear + ReLU: 10,164 parameters
        output   (N, n_classes)       linear: 85 parameters per class

    66,296 parameters for 4 classes. Averaging over time at the end does not make it blind to
    motion the way frame-wise pooling is: C1 and C3 have already compared neighbouring frames.
    """

    LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6", "output")  # in forward order, for layer_shapes

    def __init__(self, n_classes: int = 4):
        super().__init__()
        n_classes = _positive_int("n_classes", n_classes, 2)
        self.c1 = nn.Conv3d(1, 6, kernel_size=(3, 5, 5))
        self.s2 = nn.AvgPool3d((1, 2, 2))
        self.c3 = nn.Conv3d(6, 16, kernel_size=(3, 5, 5))
        self.s4 = nn.AvgPool3d((1, 2, 2))
        self.c5 = nn.Conv3d(16, 120, kernel_size=(1, 5, 5))
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, n_classes)
        self.act = nn.ReLU()

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips ``(N, T, 1, 32, 32)`` -> F6's state ``(N, 84)``."""
        clips = _check_clips(clips, "LeNet3D", size=32)
        if clips.shape[1] < 5:
            raise ValueError(f"LeNet3D needs clips of at least 5 frames (C1 and C3 each span 3), "
                             f"got {clips.shape[1]}")
        x = clips.transpose(1, 2)                  # (N, 1, T, 32, 32)
        x = self.s2(self.act(self.c1(x)))          # (N, 6, T-2, 14, 14)
        x = self.s4(self.act(self.c3(x)))          # (N, 16, T-4, 5, 5)
        x = self.act(self.c5(x))                   # (N, 120, T-4, 1, 1)
        x = x.mean(dim=(2, 3, 4))                  # (N, 120)
        return self.act(self.f6(x))                # (N, 84)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips ``(N, T, 1, 32, 32)`` -> logits ``(N, n_classes)``."""
        return self.output(self.features(clips))   # (N, n_classes)


def layer_shapes(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> list[tuple[str, tuple[int, ...], int]]:
    """``(name, output shape, trainable parameters)`` of the child modules ``names`` of ``model``, in
    the order given, measured with forward hooks on one pass of ``x`` without gradients (a module
    called more than once keeps its last output)."""
    children = dict(model.named_children())
    unknown = [name for name in names if name not in children]
    if unknown:
        raise ValueError(f"{type(model).__name__} has no layer(s) {', '.join(map(repr, unknown))}; "
                         f"its layers: {', '.join(children)}")
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [children[name].register_forward_hook(
        lambda module, inputs, output, name=name: shapes.__setitem__(name, tuple(output.shape)))
        for name in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return [(name, shapes[name], sum(p.numel() for p in children[name].parameters() if p.requires_grad))
            for name in names]


# --------------------------------------------------------------------------------------------
# Showing clips
# --------------------------------------------------------------------------------------------

def _as_frames(clips) -> np.ndarray:
    """A clip ``(T, 1, H, W)`` or clips ``(K, T, 1, H, W)`` (tensor or array) -> ``(K, T, H, W)``."""
    array = np.asarray(clips.detach().cpu() if hasattr(clips, "detach") else clips, dtype=np.float32)
    if array.ndim == 4:
        array = array[None]
    if array.ndim != 5 or array.shape[2] != 1:
        raise ValueError(f"expected a clip (T, 1, H, W) or clips (K, T, 1, H, W), got shape {array.shape}")
    return array[:, :, 0]


def _titles(titles: Sequence[str] | None, k: int) -> list[str]:
    if titles is None:
        return [""] * k
    if len(titles) != k:
        raise ValueError(f"titles must name each of the {k} clips, got {len(titles)} titles")
    return [str(t) for t in titles]


def clip_animation(clips, titles: Sequence[str] | None = None, *, interval: int = 200, scale: float = 1.1,
                   dpi: int = 50) -> str:
    """Clips side by side as a looping animation: an HTML string (matplotlib's ``to_jshtml``) to show
    with ``IPython.display.HTML``. ``clips``: one clip ``(T, 1, H, W)`` or several ``(K, T, 1, H, W)``;
    ``interval``: milliseconds per frame. Keep K, T, ``scale`` and ``dpi`` small: every frame is
    stored as an image in the HTML."""
    import matplotlib.pyplot as plt
    from matplotlib import animation

    frames = _as_frames(clips)                                           # (K, T, H, W)
    k, t = frames.shape[:2]
    names = _titles(titles, k)
    fig, axes = plt.subplots(1, k, figsize=(scale * k, scale * 1.15), dpi=dpi, squeeze=False)
    vmin, vmax = float(frames.min()), float(frames.max())
    images = []
    for ax, clip, name in zip(axes.flat, frames, names):
        ax.axis("off")
        images.append(ax.imshow(clip[0], cmap="gray_r", vmin=vmin, vmax=vmax, interpolation="nearest"))
        if name:
            ax.set_title(name, fontsize=8, pad=2)
    fig.tight_layout()

    def draw(step: int):
        for image, clip in zip(images, frames):
            image.set_data(clip[step])
        return images

    anim = animation.FuncAnimation(fig, draw, frames=t, interval=interval, blit=False)
    try:
        return anim.to_jshtml(default_mode="loop")
    finally:
        plt.close(fig)


def clip_strip(clips, titles: Sequence[str] | None = None, *, scale: float = 0.6):
    """The static view: each clip's frames side by side, one row per clip, ``t=0 ...`` above the
    first row and each clip's title at the start of its row; returns the Figure."""
    import matplotlib.pyplot as plt

    frames = _as_frames(clips)                                           # (K, T, H, W)
    k, t = frames.shape[:2]
    names = _titles(titles, k)
    fig, axes = plt.subplots(k, t, figsize=(scale * t + (1.2 if any(names) else 0.2), scale * k * 1.1 + 0.2),
                             squeeze=False)
    vmin, vmax = float(frames.min()), float(frames.max())
    for r in range(k):
        for c in range(t):
            ax = axes[r, c]
            ax.imshow(frames[r, c], cmap="gray_r", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={c}", fontsize=7, pad=2)
        if names[r]:
            axes[r, 0].set_ylabel(names[r], fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.3)
    return fig
