"""The 1998 paper's facts as data: one source for the lessons and the tests.

LeCun, Bottou, Bengio, Haffner, "Gradient-Based Learning Applied to Document Recognition",
Proc. IEEE 86(11), 2278-2324 (1998). Everything here is a number the paper states (or plain
arithmetic on them); nothing is computed from a model. The lessons print the model's own
numbers next to these, and the tests pin both.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from lenet_course.data import BACKGROUND as INPUT_BACKGROUND
from lenet_course.data import FOREGROUND as INPUT_FOREGROUND

__all__ = [
    "LayerFacts", "INPUT_SHAPE", "LAYERS", "LAYER_NAMES", "PARAMS_TOTAL", "CONNECTIONS_TOTAL",
    "MODERN_PARAMS_TOTAL", "C3_TABLE", "PROTOTYPE_SHAPE", "A", "S", "INPUT_BACKGROUND",
    "INPUT_FOREGROUND", "INIT_SCALE", "LR_SCHEDULE", "MU", "HESSIAN_SAMPLES", "EPOCHS",
    "learning_rate", "TEST_ERRORS",
]


# --------------------------------------------------------------------------------------------
# The architecture, layer by layer
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerFacts:
    """One row of the paper's description of LeNet-5."""
    layer: str                      # the paper's name: C1, S2, C3, S4, C5, F6, OUTPUT
    kind: str                       # what the layer computes
    maps: int                       # feature maps (or units, for F6 and OUTPUT)
    size: tuple[int, int] | None    # height x width of each map; None for the vector layers
    kernel: tuple[int, int] | None  # receptive field; None for the fully connected layers
    params: int                     # trainable parameters
    connections: int                # connections, each bias counted as one

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The layer's output without the batch axis: ``(6, 28, 28)`` for C1, ``(84,)`` for F6."""
        return (self.maps,) if self.size is None else (self.maps, *self.size)


INPUT_SHAPE = (1, 32, 32)  # 28x28 MNIST digits padded with background to 32x32

LAYERS: tuple[LayerFacts, ...] = (
    LayerFacts("C1", "convolution 5x5", 6, (28, 28), (5, 5), 156, 122_304),
    LayerFacts("S2", "subsampling 2x2", 6, (14, 14), (2, 2), 12, 5_880),
    LayerFacts("C3", "convolution 5x5, Table I", 16, (10, 10), (5, 5), 1_516, 151_600),
    LayerFacts("S4", "subsampling 2x2", 16, (5, 5), (2, 2), 32, 2_000),
    LayerFacts("C5", "convolution 5x5", 120, (1, 1), (5, 5), 48_120, 48_120),
    LayerFacts("F6", "full", 84, None, None, 10_164, 10_164),
    LayerFacts("OUTPUT", "Euclidean RBF", 10, None, None, 0, 840),
)
LAYER_NAMES: tuple[str, ...] = tuple(row.layer for row in LAYERS)

PARAMS_TOTAL = 60_000
CONNECTIONS_TOTAL = 340_908
# The common modern variant (full C3, plain average pooling, linear 10-way output):
# 156 + 2,416 + 48,120 + 10,164 + 850.
MODERN_PARAMS_TOTAL = 61_706

# Table I: which S2 maps (numbered from 0) feed each of the 16 C3 maps.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    # maps 0-5: three adjacent S2 maps
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    # maps 6-11: four adjacent S2 maps
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    # maps 12-14: four non-adjacent S2 maps
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    # map 15: all six
    (0, 1, 2, 3, 4, 5),
)

PROTOTYPE_SHAPE = (12, 7)  # the RBF units' fixed bitmaps: 7 wide, 12 tall (= F6's 84 units)


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

A = 1.7159     # squashing function f(a) = A tanh(S a); with these values f(+-1) = +-1
S = 2 / 3
INIT_SCALE = 2.4  # weights start uniform in +-INIT_SCALE / F, F the unit's fan-in
# INPUT_BACKGROUND (-0.1, white) and INPUT_FOREGROUND (1.175, black ink) come from
# lenet_course.data, which applies them. The paper says they give a mean about 0 and a variance
# about 1; on MNIST the mean is about 0.03 and the variance about 0.12 (see data.FOREGROUND).


# --------------------------------------------------------------------------------------------
# Training procedure: stochastic diagonal Levenberg-Marquardt, one update per example
# --------------------------------------------------------------------------------------------

EPOCHS = 20            # passes over the 60,000 training images
MU = 0.02              # added to the diagonal Hessian estimate
HESSIAN_SAMPLES = 500  # the Hessian is re-estimated on this many samples before each pass

# (passes, global learning rate eta); the last rate also holds for any pass after the 20th.
LR_SCHEDULE: tuple[tuple[int, float], ...] = (
    (2, 0.0005),
    (3, 0.0002),
    (3, 0.0001),
    (4, 0.00005),
    (8, 0.00001),
)


def learning_rate(epoch: int) -> float:
    """The paper's global learning rate for pass ``epoch``, counted from 0.

    ``learning_rate(0) == learning_rate(1) == 0.0005``, ``learning_rate(2) == 0.0002``, ...,
    ``learning_rate(19) == 0.00001``; passes after the 20th keep the last rate.
    """
    if isinstance(epoch, bool):
        raise TypeError(f"epoch must be an integer pass number counted from 0, got {epoch!r}")
    try:
        epoch = operator.index(epoch)
    except TypeError:
        raise TypeError(f"epoch must be an integer pass number counted from 0, got {epoch!r} "
                        f"({type(epoch).__name__})") from None
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 (passes are counted from 0), got {epoch}")
    end = 0
    for passes, eta in LR_SCHEDULE:
        end += passes
        if epoch < end:
            return eta
    return LR_SCHEDULE[-1][1]


# --------------------------------------------------------------------------------------------
# Results: test error on MNIST, in percent
# --------------------------------------------------------------------------------------------

TEST_ERRORS: Mapping[str, float] = MappingProxyType({
    "linear classifier": 12.0,
    "k-NN Euclidean": 5.0,
    "40 PCA + quadratic": 3.3,
    "SVM poly-4": 1.1,
    "LeNet-1": 1.7,
    "LeNet-4": 1.1,
    "LeNet-5": 0.95,
    "LeNet-5, distortions": 0.8,
    "boosted LeNet-4, distortions": 0.7,
})
