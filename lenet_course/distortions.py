"""The paper's distortions of training digits: random affine maps, and Simard's elastic distortions.

LeNet-5's 0.8% test error (against 0.95% without) comes from training on distorted copies of the
digits: combinations of planar affine transformations, namely horizontal and vertical translations,
scaling, squeezing (compressing horizontally while stretching vertically, or the reverse) and
horizontal shearing. Simard, Steinkraus and Platt (2003) added *elastic* distortions: a random
displacement field, smoothed by a Gaussian of width ``sigma`` and scaled by ``alpha``.

Everything works on batches of prepared inputs ``(N, 1, 32, 32)`` (any ``(N, C, H, W)``), in the
paper's range (background -0.1, ink 1.175), with torch: each output pixel is read, by bilinear
interpolation (:func:`torch.nn.functional.grid_sample`), at a displaced position of the input;
what comes from outside the image is background, not 0. The randomness comes only from the
:class:`torch.Generator` passed in, so a run is reproducible and can resume exactly.

* :func:`random_affine` and :func:`elastic` apply one kind of distortion;
* :class:`Distort` combines both in a single resampling (``Distort()(x, generator)``), the
  callable that :func:`lenet_course.training.fit` takes as ``augment``.

The paper gives no ranges for its distortions; the defaults below are this course's choice, mild
enough that every digit stays readable. A strength of 0 turns a distortion off: with every strength
0, :class:`Distort` returns its input unchanged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from lenet_course.data import BACKGROUND

__all__ = ["MAX_SHIFT", "SCALE", "SQUEEZE", "SHEAR", "ALPHA", "SIGMA", "Distort", "random_affine", "elastic"]

MAX_SHIFT = 2.0  # pixels: horizontal and vertical shifts drawn uniformly in [-2, 2] (digits are ~20 px tall)
SCALE = 0.1      # the size is multiplied by a factor drawn uniformly in [0.9, 1.1]
SQUEEZE = 0.1    # width x q and height / q, q drawn uniformly in [0.9, 1.1] (the paper's "squeezing")
SHEAR = 0.2      # horizontal shear x -> x + k y, k drawn uniformly in [-0.2, 0.2] (about +-11 degrees)
ALPHA = 34.0     # elastic: the smoothed field is multiplied by alpha pixels (Simard et al.'s MNIST value)
SIGMA = 4.0      # elastic: the Gaussian's standard deviation in pixels (Simard et al.: 4; smaller is wilder)


def _uniform(n: int, half_width: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` values uniform in ``[-half_width, half_width]`` (float32, on the CPU)."""
    return (2 * torch.rand(n, generator=generator) - 1) * half_width


def _gaussian_matrix(size: int, sigma: float) -> torch.Tensor:
    """``(size, size)``, symmetric: multiplying a column of ``size`` values by it convolves them with a
    normalised Gaussian of width ``sigma``, zero beyond the ends. (A 1-D convolution as one small
    matmul: far faster on a CPU than a ``conv2d`` with one channel.)"""
    offsets = torch.arange(size, dtype=torch.float32)
    offsets = offsets[:, None] - offsets[None, :]                  # (size, size): i - j
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    every_offset = torch.arange(1 - size, size, dtype=torch.float32)
    return weights / torch.exp(-0.5 * (every_offset / sigma) ** 2).sum()


@dataclass(frozen=True)
class Distort:
    """A random affine map followed by an elastic displacement, as one resampling of each image.

    ``Distort()(x, generator)``: inputs ``(N, C, H, W)`` -> distorted inputs of the same shape and
    dtype, each image with its own random distortion. Set a strength to 0 to turn that part off:
    ``Distort(alpha=0)`` is the paper's affine distortions alone.
    """
    max_shift: float = MAX_SHIFT     # pixels, both directions
    scale: float = SCALE             # relative change of size
    squeeze: float = SQUEEZE         # relative change of the aspect ratio
    shear: float = SHEAR             # horizontal shear coefficient
    alpha: float = ALPHA             # elastic strength in pixels (0: no elastic distortion)
    sigma: float = SIGMA             # elastic smoothness in pixels
    background: float = BACKGROUND   # the value of pixels that come from outside the image

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"Distort.{name} must be a finite number, got {value!r}")
        for name in ("max_shift", "shear", "alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"Distort.{name} must be >= 0 (0 turns it off), got {getattr(self, name)!r}")
        for name in ("scale", "squeeze"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"Distort.{name} must be in [0, 1): the factor is drawn in [1 - {name}, "
                                 f"1 + {name}] and must stay positive; got {getattr(self, name)!r}")
        if not self.sigma > 0:
            raise ValueError(f"Distort.sigma must be > 0 pixels, got {self.sigma!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = _check(x, generator)
        n, _, h, w = x.shape
        grid = self._affine_grid(n, h, w, generator)          # (N, H, W, 2)
        if self.alpha > 0:
            grid = grid + self._elastic_offsets(n, h, w, generator)
        out = F.grid_sample(x - self.background, grid.to(device=x.device, dtype=x.dtype), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # outside the image: 0 = background
        return out + self.background                         # (N, C, H, W)

    def _affine_grid(self, n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
        """Where each output pixel reads the input, in grid_sample's coordinates (-1..1): ``(N, H, W, 2)``.

        The content is mapped by ``p -> M p + t`` (about the image's centre), ``M = shear @ squeeze @
        scale``, so each output pixel ``p`` reads the input at ``M^-1 (p - t)``.
        """
        s = 1 + _uniform(n, self.scale, generator)
        q = 1 + _uniform(n, self.squeeze, generator)
        k = _uniform(n, self.shear, generator)
        shift = torch.stack([_uniform(n, self.max_shift, generator) * 2 / w,   # pixels -> grid units
                             _uniform(n, self.max_shift, generator) * 2 / h], dim=1)  # (N, 2)
        # M = shear @ diag(q, 1/q) @ diag(s, s) = [[s q, k s / q], [0, s / q]]; its inverse, written out:
        inverse = torch.zeros(n, 2, 2)
        inverse[:, 0, 0], inverse[:, 0, 1], inverse[:, 1, 1] = 1 / (s * q), -k / (s * q), q / s
        theta = torch.cat([inverse, -(inverse @ shift[:, :, None])], dim=2)  # (N, 2, 3)
        return F.affine_grid(theta, [n, 1, h, w], align_corners=False)

    def _elastic_offsets(self, n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
        """Simard's displacement field in grid units ``(N, H, W, 2)``: uniform(-1, 1) noise per pixel
        and direction, smoothed by a Gaussian of width ``sigma`` (zero beyond the edges), times ``alpha`` pixels."""
        field = 2 * torch.rand(n, 2, h, w, generator=generator) - 1                # (N, 2, H, W): dx, dy
        field = _gaussian_matrix(h, self.sigma) @ field @ _gaussian_matrix(w, self.sigma)  # columns, then rows
        field = self.alpha * field.permute(0, 2, 3, 1)                              # (N, H, W, 2) pixels
        return field * torch.tensor([2 / w, 2 / h])


def _check(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch tensor of images (N, C, H, W), got {type(x).__name__}; "
                        "lenet_course.data.to_tensor makes one from uint8 digits")
    if x.dim() != 4 or min(x.shape[2:], default=0) < 2:
        raise ValueError(f"x must be a batch of images (N, C, H, W), e.g. (N, 1, 32, 32), got shape "
                         f"{tuple(x.shape)}; for one image pass x[None]")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must hold floats in the paper's range (-0.1 .. 1.175), got {x.dtype}; "
                        "lenet_course.data.to_tensor scales uint8 digits")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (torch.Generator().manual_seed(0)), got "
                        f"{type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU generator (the draws are small), got one on {generator.device}")
    return x


def random_affine(x: torch.Tensor, generator: torch.Generator, *, max_shift: float = MAX_SHIFT,
                  scale: float = SCALE, squeeze: float = SQUEEZE, shear: float = SHEAR,
                  background: float = BACKGROUND) -> torch.Tensor:
    """The paper's distortions: a random translation, scaling, squeezing and horizontal shear of each
    image. ``(N, C, H, W)`` -> ``(N, C, H, W)``; see the module's constants for the defaults."""
    return Distort(max_shift, scale, squeeze, shear, alpha=0.0, background=background)(x, generator)


def elastic(x: torch.Tensor, generator: torch.Generator, *, alpha: float = ALPHA, sigma: float = SIGMA,
            background: float = BACKGROUND) -> torch.Tensor:
    """Simard et al.'s elastic distortion of each image: ``(N, C, H, W)`` -> ``(N, C, H, W)``."""
    return Distort(0.0, 0.0, 0.0, 0.0, alpha=alpha, sigma=sigma, background=background)(x, generator)
