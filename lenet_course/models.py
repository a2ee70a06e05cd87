"""LeNet-5 assembled: the paper's network, the common modern variant, and everything between.

``lenet5("paper")`` is the 1998 network (60,000 trainable parameters): Table I between S2 and C3,
trainable subsampling, the scaled tanh, Euclidean RBF outputs, uniform +-2.4/F initialisation.
``lenet5("modern")`` is the variant most tutorials call LeNet-5 (61,706 parameters): full C3,
plain average pooling, ReLU, a linear 10-way output, PyTorch's default initialisation. A
:class:`LeNetConfig` picks each choice separately, for the ablations.

:func:`layer_table` measures a model layer by layer (shapes, parameters, connections) and
:func:`format_layer_table` prints it next to the paper's numbers; :func:`predict` classifies raw
MNIST digits; :func:`load_pretrained` gives the trained networks shipped in ``weights/``.
Training lives elsewhere.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from lenet_course.data import to_tensor
from lenet_course.layers import RBFOutput, ScaledTanh, SparseConv2d, Subsampling, rbf_prototypes
from lenet_course.paper import (C3_TABLE, CONNECTIONS_TOTAL, INIT_SCALE, INPUT_SHAPE, LAYER_NAMES, LAYERS,
                                PARAMS_TOTAL)

__all__ = [
    "LeNetConfig", "PAPER", "MODERN", "LeNet5", "lenet5", "init_paper_", "count_parameters",
    "layer_table", "format_layer_table", "predict", "WeightsError", "pretrained_info", "load_pretrained",
]

Activation = Literal["scaled_tanh", "tanh", "sigmoid", "relu"]
Pooling = Literal["trainable", "avg", "max"]
C3Connections = Literal["table", "full"]
Head = Literal["rbf", "linear"]
Init = Literal["paper", "default"]


@dataclass(frozen=True)
class LeNetConfig:
    """The design choices of a LeNet-5; the defaults are the paper's."""
    # Hidden units' nonlinearity: "scaled_tanh" is the paper's f(a) = 1.7159 tanh(2a/3);
    # "tanh", "sigmoid" (the logistic) and "relu" are for comparison.
    activation: Activation = "scaled_tanh"
    # S2 and S4: "trainable" is the paper's 2x2 sum * coefficient + bias, followed by the
    # activation; "avg" and "max" are parameter-free 2x2 pooling, not followed by the activation.
    pooling: Pooling = "trainable"
    # C3: "table" connects the maps as in Table I (1,516 parameters); "full" connects every S2
    # map to every C3 map (2,416 parameters).
    c3: C3Connections = "table"
    # Output: "rbf" gives the paper's Euclidean distances to 10 fixed bitmaps (smaller is better,
    # no parameters); "linear" gives 10 logits (larger is better, 850 parameters).
    head: Head = "rbf"
    # "paper": weights and biases uniform in +-2.4/F, F a unit's fan-in (its connected inputs);
    # "default": PyTorch's initialisation of each layer.
    init: Init = "paper"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            allowed = typing.get_args(hints[f.name])
            value = getattr(self, f.name)
            if value not in allowed:
                raise ValueError(f"LeNetConfig.{f.name} must be one of "
                                 f"{', '.join(repr(a) for a in allowed)}, got {value!r}")


PAPER = LeNetConfig()
MODERN = LeNetConfig(activation="relu", pooling="avg", c3="full", head="linear", init="default")

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "scaled_tanh": ScaledTanh, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU,
}


def _pooling(kind: str, channels: int) -> nn.Module:
    if kind == "trainable":
        return Subsampling(channels)
    return nn.AvgPool2d(2) if kind == "avg" else nn.MaxPool2d(2)


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != INPUT_SHAPE:
        raise ValueError(f"LeNet5 expects images (N, 1, 32, 32), got {tuple(x.shape)}; "
                         "lenet_course.data.to_tensor pads and scales 28x28 digits")


class LeNet5(nn.Module):
    """LeNet-5: input ``(N, 1, 32, 32)`` -> ``(N, 10)``, built as ``config`` says.

    The layers are attributes named after the paper's layers: ``c1, s2, c3, s4, c5, f6, output``.
    ``forward`` returns what the output layer computes (RBF distances or logits); :meth:`scores`
    returns values where larger always means more likely, for either head.
    """

    def __init__(self, config: LeNetConfig = PAPER):
        super().__init__()
        if not isinstance(config, LeNetConfig):
            raise TypeError(f"config must be a LeNetConfig, got {type(config).__name__}")
        self.config = config
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = _pooling(config.pooling, 6)
        self.c3 = SparseConv2d(6, 16, 5, C3_TABLE) if config.c3 == "table" else nn.Conv2d(6, 16, 5)
        self.s4 = _pooling(config.pooling, 16)
        self.c5 = nn.Conv2d(16, 120, 5)  # a convolution: on 5x5 inputs its maps are 1x1
        self.f6 = nn.Linear(120, 84)
        self.output = (RBFOutput(rbf_prototypes().reshape(10, -1)) if config.head == "rbf"
                       else nn.Linear(84, 10))
        self.act = _ACTIVATIONS[config.activation]()
        # Trainable subsampling units compute a weighted sum plus bias, so they are squashed like
        # every other such unit; plain pooling is not.
        self.pool_act = self.act if config.pooling == "trainable" else nn.Identity()
        if config.init == "paper":
            init_paper_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 1, 32, 32)`` -> F6's state ``(N, 84)``, the input of the output layer."""
        _check_images(x)
        x = self.act(self.c1(x))             # (N, 6, 28, 28)
        x = self.pool_act(self.s2(x))        # (N, 6, 14, 14)
        x = self.act(self.c3(x))             # (N, 16, 10, 10)
        x = self.pool_act(self.s4(x))        # (N, 16, 5, 5)
        x = self.act(self.c5(x))             # (N, 120, 1, 1)
        return self.act(self.f6(x.flatten(1)))  # (N, 84)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 1, 32, 32)`` -> ``(N, 10)``: RBF distances (smaller = better) or logits."""
        return self.output(self.features(x))  # (N, 10)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 32, 32)`` -> ``(N, 10)``, larger = more likely: logits, or minus the RBF distances."""
        y = self(x)
        return -y if self.config.head == "rbf" else y


def lenet5(variant: str | LeNetConfig = "paper") -> LeNet5:
    """A new LeNet-5: ``"paper"`` (60,000 parameters), ``"modern"`` (61,706) or any :class:`LeNetConfig`.

    Random initialisation draws from torch's global generator: call ``torch.manual_seed`` first
    for a reproducible network.
    """
    if isinstance(variant, LeNetConfig):
        return LeNet5(variant)
    presets = {"paper": PAPER, "modern": MODERN}
    if variant not in presets:
        raise ValueError(f"variant must be 'paper', 'modern' or a LeNetConfig, got {variant!r}")
    return LeNet5(presets[variant])


# --------------------------------------------------------------------------------------------
# The paper's initialisation
# --------------------------------------------------------------------------------------------

def _fan_in(layer: nn.Module) -> torch.Tensor | None:
    """Each output unit's number of inputs, one value per map or unit; None without weights."""
    if isinstance(layer, SparseConv2d):
        return layer.mask.sum(dim=1) * layer.weight[0, 0].numel()
    if isinstance(layer, nn.Conv2d):
        return torch.full((layer.out_channels,), float(layer.weight[0].numel()))
    if isinstance(layer, nn.Linear):
        return torch.full((layer.out_features,), float(layer.in_features))
    if isinstance(layer, Subsampling):
        return torch.full((layer.channels,), float(layer.kernel_size ** 2))
    return None


@torch.no_grad()
def init_paper_(model: LeNet5) -> None:
    """Re-initialise ``model`` in place as the paper does: weights and biases uniform in +-2.4/F.

    F is the fan-in of the unit the parameter belongs to: 25 for C1, 4 for S2 and S4, 400 for C5,
    120 for F6; in C3 only connected inputs count (75, 100 or 150 depending on the map).
    """
    for name in LAYER_NAMES:
        layer = getattr(model, name.lower())
        fan_in = _fan_in(layer)
        if fan_in is None:
            continue
        bound = INIT_SCALE / fan_in
        for p in layer.parameters(recurse=False):
            p.uniform_(-1.0, 1.0).mul_(bound.to(p).view(-1, *[1] * (p.dim() - 1)))
        if isinstance(layer, SparseConv2d):
            layer.weight.mul_(layer.mask[:, :, None, None])


# --------------------------------------------------------------------------------------------
# Measuring a model against the paper
# --------------------------------------------------------------------------------------------

def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module``, counting only the connected weights of a SparseConv2d.

    ``sum(p.numel() for p in model.parameters())`` would also count the 900 weight slots that
    Table I leaves unconnected in C3: 60,900 instead of the paper's 60,000.
    """
    total = 0
    for m in module.modules():
        if isinstance(m, SparseConv2d):
            total += m.n_trainable()
        else:
            total += sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad)
    return total


def _connections(layer: nn.Module, output_shape: tuple[int, ...]) -> int:
    """The paper's connection count: for each output unit, its inputs plus one for a bias."""
    units = math.prod(output_shape)
    biases = 0 if getattr(layer, "bias", None) is None else layer.bias.numel()
    if isinstance(layer, nn.Conv2d):  # each weight (and bias) is used at every position
        weights = layer.connected_weights if isinstance(layer, SparseConv2d) else layer.weight.numel()
        return math.prod(output_shape[1:]) * (weights + biases)
    if isinstance(layer, nn.Linear):
        return layer.weight.numel() + biases
    if isinstance(layer, Subsampling):
        return units * (layer.kernel_size ** 2 + 1)
    if isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d)):
        k = layer.kernel_size
        return units * (k * k if isinstance(k, int) else math.prod(k))
    if isinstance(layer, RBFOutput):
        return units * layer.prototypes.shape[1]
    raise TypeError(f"cannot count the connections of a {type(layer).__name__}")


def layer_table(model: LeNet5) -> list[dict]:
    """One row per layer (C1 ... OUTPUT), measured on a dummy forward pass through hooks.

    Each row: ``layer`` (the paper's name), ``output_shape`` (without the batch axis),
    ``params`` (trainable; connected weights only in a sparse C3) and ``connections`` (inputs
    of every output unit, a bias counting as one input, as the paper counts them).
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            shapes[name] = tuple(output.shape[1:])
        return hook

    layers = {name: getattr(model, name.lower()) for name in LAYER_NAMES}
    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    reference = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros((1, *INPUT_SHAPE), device=reference.device, dtype=reference.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return [{"layer": name, "output_shape": shapes[name], "params": count_parameters(layer),
             "connections": _connections(layer, shapes[name])} for name, layer in layers.items()]


def _mark(ours: int, paper: int) -> str:
    return "ok" if ours == paper else "differs"


def format_layer_table(rows: list[dict]) -> str:
    """``layer_table(model)`` as text, each count next to the paper's with ``ok`` or ``differs``."""
    paper = {row.layer: row for row in LAYERS}
    header = (f"{'layer':<7}{'output':>10}  {'params':>8}{'paper':>8}  {'':<7}"
              f"{'connections':>12}{'paper':>9}")

    def line(name: str, shape: str, params: int, paper_params: int,
             connections: int, paper_connections: int) -> str:
        return (f"{name:<7}{shape:>10}  {params:>8,}{paper_params:>8,}  {_mark(params, paper_params):<7}"
                f"{connections:>12,}{paper_connections:>9,}  {_mark(connections, paper_connections)}")

    lines = [header, "-" * len(header)]
    for row in rows:
        if row["layer"] not in paper:
            raise ValueError(f"unknown layer {row['layer']!r}; expected one of {', '.join(LAYER_NAMES)}")
        facts = paper[row["layer"]]
        shape = "x".join(str(d) for d in row["output_shape"])
        lines.append(line(row["layer"], shape, row["params"], facts.params,
                          row["connections"], facts.connections))
    lines.append("-" * len(header))
    lines.append(line("total", "", sum(r["params"] for r in rows), PARAMS_TOTAL,
                      sum(r["connections"] for r in rows), CONNECTIONS_TOTAL))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Inference on raw digits
# --------------------------------------------------------------------------------------------

def _check_digits(images) -> np.ndarray:
    """``images`` as uint8 ``(N, 28, 28)``, or a TypeError/ValueError saying what is wrong."""
    if not isinstance(images, np.ndarray):
        hint = "; convert with .cpu().numpy()" if isinstance(images, torch.Tensor) else ""
        raise TypeError(f"predict expects a numpy array of uint8 digits (N, 28, 28), "
                        f"got {type(images).__name__}{hint}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer):
            raise TypeError(f"predict expects raw pixels, uint8 0..255 (as load_mnist gives them), got "
                            f"{images.dtype}; scaled or float images are not accepted because "
                            "predict pads and scales them itself")
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError(f"predict expects pixel values 0..255, got values from {images.min()} "
                             f"to {images.max()}")
        images = images.astype(np.uint8)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        hint = "; for one digit pass images[None]" if images.shape == (28, 28) else ""
        raise ValueError(f"predict expects a batch of digits (N, 28, 28), got shape {images.shape}{hint}")
    return images


def predict(model: LeNet5, images: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """Class indices (int64 ``(N,)``) for raw MNIST digits (uint8 ``(N, 28, 28)``, ink = 255).

    The digits are padded to 32x32 and scaled as in the paper (:func:`lenet_course.data.to_tensor`),
    then classified ``batch_size`` at a time on the model's device, in eval mode, without
    gradients; the model's train/eval mode is restored afterwards. The class is the one with
    the largest :meth:`LeNet5.scores`: the nearest prototype for the RBF head, the largest logit
    for the linear one.
    """
    images = _check_digits(images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    reference = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batches = [model.scores(to_tensor(images[i:i + batch_size]).to(reference.device, reference.dtype))
                       .argmax(dim=1).cpu().numpy() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate([np.empty(0, dtype=np.int64), *batches])


# --------------------------------------------------------------------------------------------
# Pretrained weights shipped with the package
# --------------------------------------------------------------------------------------------

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsError(ValueError):
    """Shipped weights are missing, damaged or modified (their SHA-256 does not match)."""


def pretrained_info(variant: str = "paper") -> dict:
    """What the shipped weights of ``variant`` are: file, SHA-256, data, seed, epochs, recipe, test error."""
    manifest_path = WEIGHTS_DIR / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{manifest_path}: cannot read the weights manifest ({exc}); reinstall the package") from None
    if variant not in manifest:
        raise ValueError(f"no pretrained weights for {variant!r}; available: {', '.join(sorted(manifest))}")
    return manifest[variant]


def load_pretrained(variant: str = "paper") -> LeNet5:
    """The shipped LeNet-5 of ``variant`` ("paper" or "modern"), trained on full MNIST, in eval mode.

    The file's SHA-256 is checked against the manifest before anything is loaded, and the state
    dict is read with ``torch.load(..., weights_only=True)``: plain tensors, no code.
    """
    info = pretrained_info(variant)
    path = WEIGHTS_DIR / info["file"]
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot be read ({exc.strerror or exc}); reinstall the package") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != info["sha256"]:
        raise WeightsError(f"{path}: SHA-256 {digest} does not match the recorded {info['sha256']}: the file "
                           "is damaged or was modified; restore it (git checkout, or reinstall the package)")
    model = lenet5(variant)
    model.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
    return model.eval()
