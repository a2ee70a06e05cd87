"""Training LeNet-5: a fast in-memory loop, checkpoints that resume exactly, the paper's optimizer.

* :func:`fit` trains a model on tensors held in memory (no per-sample Dataset on the hot path),
  with a progress bar, a :class:`History` per pass, and an atomic checkpoint after each pass that
  :func:`fit` can resume from (``resume=True``) with the same result as an uninterrupted run.
* :func:`evaluate` gives the loss and error rate on a set.
* :class:`SDLM` is the paper's stochastic diagonal Levenberg-Marquardt method; its curvature
  estimate comes from :func:`gauss_newton_diagonal` (see there for the estimator and why).
* :func:`train` builds a seeded model and fits it: what ``lenet-course train`` and lesson 06 call.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.data import MNIST, to_tensor
from lenet_course.files import atomic_write
from lenet_course.progress import progress_bar
from lenet_course.losses import criterion
from lenet_course.layers import SparseConv2d, Subsampling
from lenet_course.models import LeNet5, LeNetConfig, lenet5
from lenet_course.paper import HESSIAN_SAMPLES, MU, learning_rate

__all__ = ["TrainConfig", "History", "CheckpointError", "DeviceError", "resolve_device", "prepare", "loss_step", "evaluate",
           "gauss_newton_diagonal", "SDLM", "fit", "train", "load_checkpoint", "RECIPES"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults are the fast modern recipe (Adam, one-cycle, batch 256)."""
    epochs: int = 4               # passes over the training set (the paper: 20)
    batch_size: int = 256         # examples per update (the paper: 1, an update after every example)
    optimizer: str = "adam"       # "adam", "sgd" (momentum 0.9) or "sdlm" (the paper's method)
    lr: float = 1e-2              # the peak rate for "onecycle", the rate for "constant", the rate of passes 1-2
                                  # for "paper" (later passes follow the paper's ratios); SDLM ignores it
    schedule: str = "onecycle"    # "onecycle", "constant", or "paper" (eta per pass, Section V of the paper)
    loss: str = "auto"            # "auto" (map for an RBF head, cross_entropy for a linear one), "mse", "map"
    mu: float = MU                # SDLM: the damping added to each curvature estimate (the paper: 0.02)
    hessian_samples: int = HESSIAN_SAMPLES  # SDLM: samples that re-estimate the curvature before each pass
    eta_scale: float = 0.1        # SDLM with schedule "paper": eta = the paper's eta for the pass * eta_scale.
                                  # At 1.0, single-example SDLM from the paper's initialisation jumps to a
                                  # saturated state (MAP loss ~74 -> ~200) within ten updates and stays
                                  # there (measured on MNIST); a tenth of it trains.
    weight_decay: float = 0.0     # L2 penalty (decoupled for Adam)
    seed: int = 0                 # the order of the examples (and the initial weights in train())
    device: str = "auto"          # "auto" (CUDA when present, else CPU), "cpu", "cuda", "mps" (only when asked)

    def __post_init__(self) -> None:
        choices = {"optimizer": ("adam", "sgd", "sdlm"), "schedule": ("onecycle", "constant", "paper"),
                   "loss": ("auto", "cross_entropy", "mse", "map"), "device": ("auto", "cpu", "cuda", "mps")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {', '.join(map(repr, allowed))}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "hessian_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if not self.lr > 0 or not self.mu > 0 or not self.eta_scale > 0 or self.weight_decay < 0:
            raise ValueError(f"TrainConfig needs lr > 0, mu > 0, eta_scale > 0, weight_decay >= 0; got "
                             f"lr={self.lr}, mu={self.mu}, eta_scale={self.eta_scale}, weight_decay={self.weight_decay}")
        if self.optimizer == "sdlm" and self.schedule == "onecycle":
            raise ValueError("the SDLM optimizer takes schedule 'paper' or 'constant', not 'onecycle'")


@dataclass
class History:
    """One entry per completed pass; errors are fractions (0.0095 = 0.95%)."""
    epoch: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)         # at the start of each pass (of the first param group)
    train_loss: list[float] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)   # time in the training loop, evaluation excluded

    @property
    def train_seconds(self) -> float:
        return float(sum(self.seconds))


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, or belongs to another model or configuration."""


class DeviceError(RuntimeError):
    """The device asked for is not available on this machine."""


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU. Apple's MPS only when asked for, with a warning."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' was asked for, but this machine has no Apple MPS; use 'auto' or 'cpu'")
        warnings.warn("training on MPS: some operations fall back to the CPU and results differ slightly "
                      "from CPU runs", stacklevel=2)
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {name!r}")
    return torch.device(name)


def prepare(images: np.ndarray, labels: np.ndarray, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 digits ``(N, 28, 28)`` and labels ``(N,)`` -> inputs ``(N, 1, 32, 32)`` and int64 targets.

    Padded and scaled as in the paper, in channels-last memory order (faster convolutions and
    pooling on CPUs), on ``device``.
    """
    x = to_tensor(images).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=device)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    return x, y


def _head(model: nn.Module) -> str:
    """``"rbf"`` for a LeNet5 with the RBF output; ``"linear"`` for any other module (it gives logits)."""
    return model.config.head if isinstance(model, LeNet5) else "linear"


def _loss_name(model: nn.Module, config: TrainConfig) -> str:
    if config.loss == "auto":
        return "map" if _head(model) == "rbf" else "cross_entropy"
    if config.loss in ("mse", "map") and _head(model) != "rbf":
        raise ValueError(f"loss {config.loss!r} is for the RBF head; this model gives logits: use loss "
                         "'cross_entropy'")
    return config.loss


def _loss_and_scores(model: nn.Module, loss_name: str) -> Callable:
    """A function ``(x, y) -> (loss, scores)``: the loss sees penalties or logits, as it expects."""
    loss_fn = criterion(loss_name)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(x)
        scores = -out if _head(model) == "rbf" else out
        return loss_fn(scores if loss_name == "cross_entropy" else out, y), scores
    return step


def loss_step(model: nn.Module, loss: str = "auto") -> Callable:
    """``(x, y) -> (loss, scores)`` for ``model``: the criterion training uses (``"auto"``: MAP for
    an RBF output, cross-entropy for logits) and the scores, larger = more likely ``(N, classes)``."""
    return _loss_and_scores(model, _loss_name(model, TrainConfig(loss=loss)))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "auto",
             batch_size: int = 2000) -> dict[str, float]:
    """Mean loss and error rate (a fraction) of ``model`` on prepared inputs; restores train/eval mode.

    ``model`` is a LeNet5, or any module whose output is logits ``(N, classes)`` for inputs ``x``.
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    step = loss_step(model, loss)
    was_training = model.training
    model.eval()
    total_loss, wrong = 0.0, 0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            value, scores = step(xb, yb)
            total_loss += float(value) * len(xb)
            wrong += int((scores.argmax(1) != yb).sum())
    finally:
        model.train(was_training)
    return {"loss": total_loss / max(1, len(x)), "error": wrong / max(1, len(x))}


# --------------------------------------------------------------------------------------------
# The paper's optimizer: stochastic diagonal Levenberg-Marquardt
# --------------------------------------------------------------------------------------------

def _surrogate_input(u: torch.Tensor, carrier: torch.Tensor | None) -> torch.Tensor:
    """A tensor whose value is ``u ** 2`` and whose gradient flows to ``carrier`` unchanged."""
    squared = (u ** 2).detach()
    return squared if carrier is None else squared + (carrier - carrier.detach())


def _squared_layer(layer: nn.Module, s: torch.Tensor, leaves: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``layer`` applied with squared weights to ``s``; the squared weights are leaves in ``leaves``."""
    def leaf(param_name: str, value: torch.Tensor) -> torch.Tensor:
        t = value.detach().clone().requires_grad_(True)
        leaves[f"{name}.{param_name}"] = t
        return t

    if isinstance(layer, nn.Conv2d):
        w2 = leaf("weight", layer.weight ** 2)
        if isinstance(layer, SparseConv2d):
            w2 = w2 * layer.mask[:, :, None, None]
        return F.conv2d(s, w2, leaf("bias", torch.ones_like(layer.bias)))
    if isinstance(layer, nn.Linear):
        return F.linear(s, leaf("weight", layer.weight ** 2), leaf("bias", torch.ones_like(layer.bias)))
    if isinstance(layer, Subsampling):  # a = coef * (x1 + x2 + x3 + x4) + bias, one coef per map
        block = F.avg_pool2d(s, 2) * 4
        return (leaf("coef", layer.coef ** 2)[:, None, None] * block
                + leaf("bias", torch.ones_like(layer.bias))[:, None, None])
    if isinstance(layer, nn.AvgPool2d):  # a = (x1 + x2 + x3 + x4) / 4
        return F.avg_pool2d(s, 2) / 4
    if isinstance(layer, nn.MaxPool2d):  # a = the largest input: the curvature goes to that one
        return F.max_pool2d(s, 2)
    raise TypeError(f"no curvature rule for a {type(layer).__name__}")


def _squared_derivative(act: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """``f'(a) ** 2`` for an elementwise activation ``f`` (1 for the identity)."""
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        (slope,) = torch.autograd.grad(act(a).sum(), a)
    return slope.detach() ** 2


def gauss_newton_diagonal(model: LeNet5, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The paper's estimate of each parameter's second derivative, averaged over the samples ``x``.

    Appendix C of the paper: second derivatives are back-propagated like gradients, keeping only
    the diagonal and the Gauss-Newton terms (those with f'' are dropped, so every estimate is
    >= 0):  ``d2E/da2 = f'(a)^2 d2E/dx2``,  ``d2E/dx_i^2 = sum_k w_ki^2 d2E/da_k^2``,
    ``d2E/dw_ki^2 = sum over the connections using w_ki of x_i^2 d2E/da_k^2``. The recursion
    starts from ``d2E/dx2 = 2`` at F6 (the MSE criterion's second derivative; for a linear head,
    from ``p (1 - p)``, the softmax cross-entropy's Gauss-Newton diagonal at the logits).

    These are linear in the second derivatives, so ordinary autograd computes them: a forward
    pass of a "squared" network (weights squared, inputs squared, f'(a)^2 between layers) whose
    gradient with respect to the squared weights is exactly the sum above.

    Why this estimator rather than the exact Gauss-Newton diagonal: for a shared (convolution)
    weight the paper sums the curvature of each connection, while the exact diagonal squares the
    sum, where contributions of opposite sign cancel. With the exact diagonal, C1's curvature at
    initialisation is ~100x smaller and SDLM at the paper's learning rates diverges within ten
    updates (measured); the per-connection sum keeps steps for heavily shared weights small, as
    the paper intended. Returns one non-negative tensor per trainable parameter name.
    """
    leaves: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            u = x
            stages = []  # (name, layer, activation, input, pre-activation) in forward order
            for name, act in (("c1", model.act), ("s2", model.pool_act), ("c3", model.act),
                              ("s4", model.pool_act), ("c5", model.act), ("f6", model.act)):
                layer = getattr(model, name)
                u_in = u.flatten(1) if name == "f6" else u
                a = layer(u_in)
                stages.append((name, layer, act, u_in, a))
                u = act(a)
        carrier = None
        with torch.enable_grad():
            for name, layer, act, u_in, a in stages:
                if carrier is not None and carrier.shape != u_in.shape:
                    carrier = carrier.flatten(1)  # C5's (N, 120, 1, 1) maps are F6's 120 inputs
                s_out = _squared_layer(layer, _surrogate_input(u_in, carrier), leaves, name)
                carrier = _squared_derivative(act, a) * s_out
            if model.config.head == "rbf":
                seed = torch.full_like(carrier, 2.0)
            else:
                with torch.no_grad():
                    p = F.softmax(model.output(u), dim=1)
                carrier = _squared_layer(model.output, _surrogate_input(u, carrier), leaves, "output")
                seed = p * (1 - p)
            grads = torch.autograd.grad((carrier * seed).sum(), list(leaves.values()))
    finally:
        model.train(was_training)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {n: g.detach() / len(x) for n, g in zip(leaves, grads) if n in trainable}


class SDLM(torch.optim.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt: ``w -= lr / (mu + h_w) * grad_w`` for each weight.

    ``h`` is the curvature estimate set by :meth:`set_curvature` (before each pass, from
    :func:`gauss_newton_diagonal`); ``mu`` keeps the step finite where ``h`` is tiny. The paper
    updates after every example (batch size 1). With a batch of B examples the step uses the
    batch's mean gradient at the same ``lr``: scaling ``lr`` by B to mimic B single-example
    updates diverges in the first updates (measured), because those updates are not small.
    """

    def __init__(self, named_params, lr: float, mu: float = MU):
        named = list(named_params)
        super().__init__([p for _, p in named], {"lr": lr, "mu": mu})
        self._names = {id(p): name for name, p in named}

    def set_curvature(self, diagonal: dict[str, torch.Tensor]) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["h"] = diagonal[self._names[id(p)]].to(p)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                h = self.state[p].get("h")
                if h is None:
                    raise RuntimeError("SDLM.step() before set_curvature(): estimate the curvature first")
                p.addcdiv_(p.grad, h + group["mu"], value=-group["lr"])
        return loss


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------

def _optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int, device: torch.device,
               param_groups: list[dict] | None = None):
    params = ([{**group, "lr": group.get("lr", config.lr)} for group in param_groups] if param_groups is not None
              else [p for p in model.parameters() if p.requires_grad])
    if config.optimizer == "sdlm":
        if not isinstance(model, LeNet5):
            raise ValueError(f"SDLM's curvature estimate is written for LeNet5, not a {type(model).__name__}: "
                             "use optimizer 'adam' or 'sgd'")
        if param_groups is not None:
            raise ValueError("SDLM sets each weight's step from its curvature; it takes no param_groups")
        lr = config.lr if config.schedule == "constant" else 0.0  # "paper": set before each pass
        return SDLM(((n, p) for n, p in model.named_parameters() if p.requires_grad), lr=lr, mu=config.mu), None
    if config.optimizer == "adam":
        fused = device.type in ("cpu", "cuda")
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                        epochs=config.epochs,
                                                        steps_per_epoch=steps_per_epoch)
    if config.schedule == "paper":
        return opt, torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: learning_rate(step // steps_per_epoch) / learning_rate(0))
    return opt, None


def _epoch_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def _model_description(model: nn.Module) -> dict:
    """What a checkpoint records of the model it was written for: a LeNet5's config, else its class."""
    return dataclasses.asdict(model.config) if isinstance(model, LeNet5) else {"module": type(model).__name__}


def _save_checkpoint(path: Path, model: nn.Module, opt, sched, generator: torch.Generator,
                     history: History, config: TrainConfig) -> None:
    state = {"format": 1, "model_config": _model_description(model), "train_config": dataclasses.asdict(config),
             "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict() if sched is not None else None,
             "generator": generator.get_state(), "history": dataclasses.asdict(history)}
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`fit` (tensors and plain data only: ``weights_only=True``)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # truncated zip, garbage bytes, a pickle that is not plain data
        raise CheckpointError(f"{path}: not a readable checkpoint, it is truncated or corrupt "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); delete it "
                              "to train from scratch") from None
    if not isinstance(state, dict) or state.get("format") != 1:
        raise CheckpointError(f"{path}: not a lenet-course checkpoint (no format marker)")
    return state


def _restore(path: Path, model: nn.Module, opt, sched, generator: torch.Generator, config: TrainConfig) -> History:
    state = load_checkpoint(path)
    if state["model_config"] != _model_description(model):
        raise CheckpointError(f"{path}: saved for a model with {state['model_config']}, not "
                              f"{_model_description(model)}")
    saved = {k: v for k, v in state["train_config"].items() if k != "epochs"}
    wanted = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}
    if saved != wanted or (config.schedule == "onecycle" and state["train_config"]["epochs"] != config.epochs):
        diff = {k: (state["train_config"][k], v) for k, v in dataclasses.asdict(config).items()
                if state["train_config"].get(k) != v}
        raise CheckpointError(f"{path}: written with other training settings (saved, now): {diff}; "
                              "resume with the same settings or start a new checkpoint")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None:
        sched.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    return History(**state["history"])


def fit(model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], config: TrainConfig = TrainConfig(), *,
        test_data: tuple[torch.Tensor, torch.Tensor] | None = None, checkpoint: str | Path | None = None,
        resume: bool = False, progress: bool = True,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        param_groups: list[dict] | None = None) -> History:
    """Train ``model`` in place on prepared tensors (see :func:`prepare`); return the :class:`History`.

    ``model`` is a LeNet5, or any module whose output is logits (trained with cross-entropy): a
    3-D convolution network on clips, a linear head on features.

    Each pass shuffles the training set with a generator seeded by ``config.seed``, updates after
    every ``batch_size`` examples, and evaluates on ``test_data`` when given. With ``checkpoint``,
    the model, optimizer, schedule, generator and history are saved atomically after each pass;
    ``resume=True`` continues from that file (when it exists) and ends with exactly the parameters
    an uninterrupted run would have. ``augment(batch, generator)``, when given, replaces each
    training batch ``(B, 1, 32, 32)`` by a distorted copy (e.g. :class:`lenet_course.distortions.Distort`);
    it draws from the same seeded generator as the shuffling, so a resumed run stays exact.
    ``param_groups`` (torch's optimizer groups: ``{"params": [...], "lr": ...}``, ``lr`` defaulting
    to ``config.lr``) trains only those parameters, each group at its own rate; the schedule
    scales every group's rate alike.
    """
    x, y = train_data
    if len(x) != len(y):
        raise ValueError(f"{len(x)} training inputs but {len(y)} labels")
    device = next(model.parameters()).device
    if x.device != device:
        raise ValueError(f"the data is on {x.device} but the model on {device}: prepare(..., device=...)")
    loss_name = _loss_name(model, config)
    step = _loss_and_scores(model, loss_name)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    opt, sched = _optimizer(model, config, steps_per_epoch, device, param_groups)
    generator = torch.Generator().manual_seed(config.seed)
    history = History()
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if resume and checkpoint is not None and checkpoint.exists():
        history = _restore(checkpoint, model, opt, sched, generator, config)
    first = len(history.epoch)
    if first > config.epochs:
        raise CheckpointError(f"{checkpoint}: already holds {first} passes, more than epochs={config.epochs}; "
                              "ask for at least that many passes, or use a new checkpoint")

    bar = progress_bar(total=(config.epochs - first) * steps_per_epoch, desc="training", unit="batch",
                       enabled=progress, leave=False)
    model.train()
    threads = torch.get_num_threads()
    if config.batch_size == 1 and device.type == "cpu":
        # One example per update: the operations are too small to share between threads, and
        # threads that wait for each other slow each update ~20x when another process is busy.
        torch.set_num_threads(1)
    try:
        for epoch in range(first, config.epochs):
            if config.optimizer == "sdlm":
                sample = torch.randperm(len(x), generator=generator)[:config.hessian_samples].to(device)
                opt.set_curvature(gauss_newton_diagonal(model, x[sample]))
                if config.schedule == "paper":
                    for group in opt.param_groups:
                        group["lr"] = learning_rate(epoch) * config.eta_scale
            lr = _epoch_lr(opt)
            order = torch.randperm(len(x), generator=generator).to(device)
            total_loss = torch.zeros((), device=device)
            wrong = torch.zeros((), dtype=torch.int64, device=device)
            start = time.perf_counter()
            for i in range(0, len(x), config.batch_size):
                idx = order[i:i + config.batch_size]
                xb, yb = x[idx], y[idx]
                if augment is not None:
                    xb = augment(xb, generator)
                loss, scores = step(xb, yb)
                model.zero_grad(set_to_none=True)  # also parameters outside param_groups
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total_loss += loss.detach() * len(idx)
                wrong += (scores.detach().argmax(1) != yb).sum()
                bar.update()
                if bar.n % 50 == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}", refresh=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            history.seconds.append(time.perf_counter() - start)
            history.epoch.append(epoch + 1)
            history.lr.append(lr)
            history.train_loss.append(float(total_loss) / len(x))
            history.train_error.append(int(wrong) / len(x))
            if test_data is not None:
                result = evaluate(model, *test_data, loss=loss_name)
                history.test_loss.append(result["loss"])
                history.test_error.append(result["error"])
                bar.set_postfix(epoch=epoch + 1, test_error=f"{result['error']:.2%}")
            if checkpoint is not None:
                _save_checkpoint(checkpoint, model, opt, sched, generator, history, config)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return history


def _fast_recipe(epochs: int | None = None, **overrides) -> TrainConfig:
    """Adam with a one-cycle schedule, batch 256: about 99% on full MNIST in 4 passes."""
    return TrainConfig(epochs=epochs or 4, **overrides)


def _paper_recipe(epochs: int | None = None, **overrides) -> TrainConfig:
    """The paper's way: SDLM, one example per update, 20 passes with the paper's schedule."""
    return TrainConfig(epochs=epochs or 20, batch_size=1, optimizer="sdlm", schedule="paper", **overrides)


RECIPES: dict[str, Callable[..., TrainConfig]] = {"fast": _fast_recipe, "paper": _paper_recipe}


def train(variant: str | LeNetConfig, data: MNIST, config: TrainConfig = TrainConfig(), *,
          checkpoint: str | Path | None = None, resume: bool = False, progress: bool = True,
          augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
          ) -> tuple[LeNet5, History]:
    """Build a LeNet-5 seeded with ``config.seed`` and fit it on ``data``, evaluating on its test set.

    The seed is applied inside :func:`torch.random.fork_rng`: torch's global random state is
    left as it was.
    """
    device = resolve_device(config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = lenet5(variant)
    model = model.to(device).to(memory_format=torch.channels_last)
    train_xy = prepare(data.train_images, data.train_labels, device)
    test_xy = prepare(data.test_images, data.test_labels, device)
    history = fit(model, train_xy, config, test_data=test_xy, checkpoint=checkpoint, resume=resume,
                  progress=progress, augment=augment)
    return model, history
