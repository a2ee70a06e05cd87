"""Training: the loop learns, resumes exactly, rejects bad checkpoints; the losses and SDLM."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.data import load_mnist
from lenet_course.losses import MAP_J, map_criterion, mse_criterion
from lenet_course.models import lenet5
from lenet_course.training import (SDLM, CheckpointError, TrainConfig, evaluate, fit, gauss_newton_diagonal,
                                   load_checkpoint, prepare, resolve_device, train)


@pytest.fixture(scope="module")
def small():
    data = load_mnist("sample", verbose=False)
    return prepare(data.train_images[:512], data.train_labels[:512]), prepare(data.test_images[:256], data.test_labels[:256])


def _model(variant, seed=0):
    torch.manual_seed(seed)
    return lenet5(variant).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("variant, config", [
    ("modern", TrainConfig(epochs=3, batch_size=64, lr=3e-3, schedule="constant")),
    ("paper", TrainConfig(epochs=3, batch_size=64, lr=3e-3, schedule="constant")),  # the MAP criterion
    ("paper", TrainConfig(epochs=3, batch_size=1, optimizer="sdlm", schedule="paper", hessian_samples=64)),
])
def test_a_short_run_lowers_the_loss(small, variant, config):
    (x, y), test = small
    model = _model(variant)
    before = evaluate(model, x, y)
    history = fit(model, (x, y), config, test_data=test, progress=False)
    after = evaluate(model, x, y)
    assert after["loss"] < 0.7 * before["loss"]
    assert after["error"] < before["error"]
    assert history.epoch == [1, 2, 3] and len(history.test_error) == 3 and all(s > 0 for s in history.seconds)


def test_resumed_run_ends_with_the_same_parameters(small, tmp_path):
    (x, y), _ = small
    config = TrainConfig(epochs=3, batch_size=128, lr=3e-3)
    straight = _model("paper")
    fit(straight, (x, y), config, progress=False)

    resumed = _model("paper")
    ckpt = tmp_path / "run.pt"
    fit(resumed, (x, y), dataclasses.replace(config, epochs=3), checkpoint=ckpt, progress=False)
    # simulate an interruption after pass 1: train a fresh model for one pass, then resume to 3
    interrupted = _model("paper")
    ckpt2 = tmp_path / "interrupted.pt"

    class Stop(Exception):
        pass

    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def step_then_stop(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 4 + 2:  # pass 1 has 4 batches; die in the middle of pass 2
            raise Stop
        return real_step(self, *a, **k)

    torch.optim.AdamW.step = step_then_stop
    try:
        with pytest.raises(Stop):
            fit(interrupted, (x, y), config, checkpoint=ckpt2, progress=False)
    finally:
        torch.optim.AdamW.step = real_step
    assert load_checkpoint(ckpt2)["history"]["epoch"] == [1]
    again = _model("paper", seed=123)  # different start: everything must come from the checkpoint
    history = fit(again, (x, y), config, checkpoint=ckpt2, resume=True, progress=False)
    assert history.epoch == [1, 2, 3]
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(resumed.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_truncated_or_corrupt_checkpoints_are_clear_errors(small, tmp_path):
    (x, y), _ = small
    ckpt = tmp_path / "run.pt"
    fit(_model("modern"), (x, y), TrainConfig(epochs=1, batch_size=256), checkpoint=ckpt, progress=False)
    data = ckpt.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"<html>503 Service Unavailable</html>")
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
            fit(_model("modern"), (x, y), TrainConfig(epochs=2, batch_size=256), checkpoint=bad, resume=True,
                progress=False)
        assert str(bad) in str(err.value)


def test_resume_refuses_another_model_or_other_settings(small, tmp_path):
    (x, y), _ = small
    ckpt = tmp_path / "run.pt"
    fit(_model("modern"), (x, y), TrainConfig(epochs=1, batch_size=256, schedule="constant", lr=1e-3),
        checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match="saved for a model"):
        fit(_model("paper"), (x, y), TrainConfig(epochs=2, batch_size=256, schedule="constant", lr=1e-3),
            checkpoint=ckpt, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="other training settings"):
        fit(_model("modern"), (x, y), TrainConfig(epochs=2, batch_size=128, schedule="constant", lr=1e-3),
            checkpoint=ckpt, resume=True, progress=False)
    # more passes with the same settings is a legitimate resume
    history = fit(_model("modern"), (x, y), TrainConfig(epochs=2, batch_size=256, schedule="constant", lr=1e-3),
                  checkpoint=ckpt, resume=True, progress=False)
    assert history.epoch == [1, 2]
    with pytest.raises(CheckpointError, match="already holds 2 passes"):  # fewer passes than already done
        fit(_model("modern"), (x, y), TrainConfig(epochs=1, batch_size=256, schedule="constant", lr=1e-3),
            checkpoint=ckpt, resume=True, progress=False)


def test_train_is_seeded_and_leaves_the_global_rng_alone(small):
    data = load_mnist("sample", verbose=False)
    data = dataclasses.replace(data, train_images=data.train_images[:256], train_labels=data.train_labels[:256],
                               test_images=data.test_images[:128], test_labels=data.test_labels[:128])
    state = torch.get_rng_state()
    config = TrainConfig(epochs=1, batch_size=64, device="cpu", seed=7)
    a, ha = train("modern", data, config, progress=False)
    b, hb = train("modern", data, config, progress=False)
    assert torch.equal(state, torch.get_rng_state())
    assert ha.train_loss == hb.train_loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_mse_and_map_criteria_match_the_paper_formulas():
    y = torch.tensor([[1.0, 5.0, 9.0], [4.0, 0.5, 2.0]])
    t = torch.tensor([0, 2])
    assert mse_criterion(y, t).item() == pytest.approx((1.0 + 2.0) / 2)
    j = MAP_J
    expected = ((1.0 + torch.log(torch.exp(torch.tensor(-j)) + torch.exp(-y[0]).sum()))
                + (2.0 + torch.log(torch.exp(torch.tensor(-j)) + torch.exp(-y[1]).sum()))) / 2
    assert map_criterion(y, t).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="targets"):
        mse_criterion(y, torch.tensor([0]))


def test_rbf_losses_are_refused_for_a_linear_head(small):
    (x, y), _ = small
    with pytest.raises(ValueError, match="cross_entropy"):
        fit(_model("modern"), (x, y), TrainConfig(epochs=1, loss="map"), progress=False)


def test_curvature_follows_the_papers_recursion():
    # Appendix C: d2E/dx2 = 2 at F6 (MSE criterion); d2E/da2 = f'(a)^2 d2E/dx2;
    # d2E/dx_i^2 = sum_k w_ki^2 d2E/da_k^2; d2E/dw_ki^2 = x_i^2 d2E/da_k^2 (averaged over samples).
    torch.manual_seed(0)
    model = lenet5("paper").double()
    x = torch.randn(5, 1, 32, 32, dtype=torch.float64)
    h = gauss_newton_diagonal(model, x)
    with torch.no_grad():
        m = model
        c5_in = m.pool_act(m.s4(m.act(m.c3(m.pool_act(m.s2(m.act(m.c1(x))))))))
        a_c5 = m.c5(c5_in).flatten(1)                  # (N, 120)
        u = m.act(a_c5)
        a_f6 = m.f6(u)                                  # (N, 84)
        slope = lambda a: 1.7159 * (2 / 3) * (1 - torch.tanh(2 * a / 3) ** 2)
        d2_f6 = 2 * slope(a_f6) ** 2                    # d2E/da2 at F6
        d2_c5 = slope(a_c5) ** 2 * (d2_f6 @ m.f6.weight ** 2)
    torch.testing.assert_close(h["f6.weight"], (d2_f6[:, :, None] * u[:, None, :] ** 2).mean(0))
    torch.testing.assert_close(h["f6.bias"], d2_f6.mean(0))
    torch.testing.assert_close(h["c5.bias"], d2_c5.mean(0))
    assert set(h) == {n for n, _ in model.named_parameters()}
    assert all((v >= 0).all() for v in h.values())
    unconnected = model.c3.mask == 0
    assert (h["c3.weight"][unconnected] == 0).all() and (h["c3.weight"][~unconnected] > 0).all()


def test_sdlm_step_divides_by_mu_plus_curvature():
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = SDLM([("w", w)], lr=0.1, mu=0.02)
    with pytest.raises(RuntimeError, match="set_curvature"):
        w.grad = torch.tensor([1.0, 1.0])
        opt.step()
    opt.set_curvature({"w": torch.tensor([0.0, 0.98])})
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([1.0 - 0.1 / 0.02, 1.0 - 0.1 / 1.0]))


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError):
        TrainConfig(device="tpu")


# --------------------------------------------------------------------------------------------
# Any module that gives logits (a 3-D network on clips, a linear head on features)
# --------------------------------------------------------------------------------------------

def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points in 5-D, three classes, each class far along its own axis."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 5, generator=g) * 0.3
    x[torch.arange(n), y] += 3.0
    return x, y


def test_fit_trains_any_module_that_gives_logits():
    train_xy, test_xy = _separable(300, 0), _separable(100, 1)
    torch.manual_seed(0)
    head = nn.Linear(5, 3)
    config = TrainConfig(epochs=5, batch_size=32, lr=0.05)
    history = fit(head, train_xy, config, test_data=test_xy, progress=False)
    assert history.epoch == [1, 2, 3, 4, 5] and len(history.test_error) == len(history.seconds) == 5
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.test_error[-1] == 0.0
    assert evaluate(head, *test_xy) == {"loss": pytest.approx(history.test_loss[-1]), "error": 0.0}
    assert head.training  # evaluation restored the mode


def test_fit_on_any_module_is_deterministic_by_seed():
    weights = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)
        head = nn.Linear(5, 3)
        fit(head, _separable(200, 2), TrainConfig(epochs=2, batch_size=64, seed=seed), progress=False)
        weights.append(head.weight.detach().clone())
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_evaluate_counts_the_errors_of_any_module():
    class Fixed(nn.Module):
        def forward(self, x):
            return F.one_hot(x, 3).float() * 10

    x, y = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])
    assert evaluate(Fixed(), x, y, batch_size=3)["error"] == 0.25
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        evaluate(Fixed(), x, y[:3])


@pytest.mark.parametrize("config, message", [
    (TrainConfig(epochs=1, batch_size=1, optimizer="sdlm", schedule="constant"), "SDLM's curvature .* not a Linear"),
    (TrainConfig(epochs=1, loss="map"), "loss 'map' is for the RBF head; this model gives logits"),
])
def test_fit_refuses_what_only_a_lenet5_can_do(config, message):
    with pytest.raises(ValueError, match=message):
        fit(nn.Linear(5, 3), _separable(10, 0), config, progress=False)
    x, y = _separable(10, 0)
    with pytest.raises(ValueError, match="10 training inputs but 9 labels"):
        fit(nn.Linear(5, 3), (x, y[:9]), TrainConfig(epochs=1), progress=False)


def test_fit_with_param_groups_trains_only_those():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    first, head = net[0].weight.detach().clone(), net[2].weight.detach().clone()
    fit(net, _separable(40, 5), TrainConfig(epochs=2, batch_size=8), param_groups=[{"params": net[2].parameters()}],
        progress=False)
    assert torch.equal(net[0].weight, first)                # not in a group: unchanged
    assert not torch.equal(net[2].weight, head)            # in the group: trained
