"""The paper's training criteria for the RBF output, and cross-entropy for the linear one.

The RBF output gives *penalties* ``y`` ``(N, 10)``: squared distances between F6's state and each
class's fixed bitmap; the smallest wins. The paper trains them with

* the MSE criterion  ``E = mean_n y_D(n)``  (pull F6 towards the correct bitmap), which alone can
  collapse (all prototypes equal, or F6 ignoring its input), and
* the MAP criterion  ``E = mean_n [ y_D + log(exp(-j) + sum_i exp(-y_i)) ]``, which also pushes
  the wrong classes' penalties up, like a softmax over ``-y`` with one extra "rubbish" class of
  constant penalty ``j``; ``j`` keeps penalties that are already large from being pushed further.

A linear head gives logits and is trained with cross-entropy (:func:`torch.nn.functional.cross_entropy`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MAP_J", "mse_criterion", "map_criterion", "criterion"]

# The MAP criterion's constant j. The paper gives none. When F6 matches one bitmap, the other
# classes' penalties are the distances between codes: 4 x the number of differing pixels, 40-156
# for these bitmaps. With j = 10, once every wrong penalty is above ~25 the rubbish term dominates
# and MAP's gradient is the MSE criterion's: classes compete only near the boundary between codes.
MAP_J = 10.0


def _check(penalties: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``targets`` as int64 class indices, after checking both shapes."""
    if penalties.dim() != 2:
        raise ValueError(f"penalties must be (N, classes), got shape {tuple(penalties.shape)}")
    if targets.shape != penalties.shape[:1]:
        raise ValueError(f"targets must be (N,) class indices for {penalties.shape[0]} penalties, "
                         f"got shape {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices, got {targets.dtype}")
    return targets.long()  # load_mnist's labels are uint8; gather wants int64


def mse_criterion(penalties: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The paper's MSE criterion: the mean penalty of the correct class. ``(N, 10), (N,) -> ()``."""
    targets = _check(penalties, targets)
    return penalties.gather(1, targets[:, None]).mean()


def map_criterion(penalties: torch.Tensor, targets: torch.Tensor, j: float = MAP_J) -> torch.Tensor:
    """The paper's MAP criterion: ``mean[y_D + log(exp(-j) + sum_i exp(-y_i))]``. ``(N, 10), (N,) -> ()``."""
    targets = _check(penalties, targets)
    if not j >= 0:
        raise ValueError(f"j must be a constant >= 0 (the paper's is positive), got {j}")
    rubbish = torch.full_like(penalties[:, :1], -float(j))
    return (penalties.gather(1, targets[:, None]).squeeze(1)
            + torch.logsumexp(torch.cat([rubbish, -penalties], dim=1), dim=1)).mean()


def criterion(name: str):
    """The loss function called ``name``: ``"cross_entropy"`` (on logits), ``"mse"`` or ``"map"`` (on penalties)."""
    losses = {"cross_entropy": F.cross_entropy, "mse": mse_criterion, "map": map_criterion}
    if name not in losses:
        raise ValueError(f"loss must be one of {', '.join(losses)}, got {name!r}")
    return losses[name]
