"""The paper's distortions (lenet_course.distortions) and training with them (fit's ``augment``)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lenet_course.data import BACKGROUND, FOREGROUND
from lenet_course.distortions import Distort, _gaussian_matrix, elastic, random_affine
from lenet_course.models import lenet5
from lenet_course.training import TrainConfig, fit, load_checkpoint

STILL = dict(max_shift=0.0, scale=0.0, squeeze=0.0, shear=0.0, alpha=0.0)  # every strength 0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Made-up inputs (n, 1, 32, 32) in the paper's range: background with a block of grey ink."""
    x = torch.full((n, 1, 32, 32), BACKGROUND)
    noise = torch.rand(n, 1, 12, 10, generator=gen(seed))
    x[:, :, 10:22, 11:21] = BACKGROUND + (FOREGROUND - BACKGROUND) * noise
    return x


def moments(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each image's ink centre (column, row) and spread (std along columns, rows), (N, 2) each."""
    ink = (x[:, 0] - BACKGROUND).double()
    rows, cols = torch.meshgrid(torch.arange(32.0, dtype=torch.float64), torch.arange(32.0, dtype=torch.float64),
                                indexing="ij")
    mass = ink.sum(dim=(1, 2))
    centre = torch.stack([(ink * cols).sum(dim=(1, 2)) / mass, (ink * rows).sum(dim=(1, 2)) / mass], 1)
    spread = torch.stack([((ink * (cols - centre[:, :1, None]) ** 2).sum(dim=(1, 2)) / mass).sqrt(),
                          ((ink * (rows - centre[:, 1:, None]) ** 2).sum(dim=(1, 2)) / mass).sqrt()], 1)
    return centre.numpy(), spread.numpy()


def affine_draws(n: int, seed: int) -> list[torch.Tensor]:
    """The five uniform(0, 1) draws of Distort's affine part (scale, squeeze, shear, shift x, shift y)."""
    g = gen(seed)
    return [torch.rand(n, generator=g).double() for _ in range(5)]


# --------------------------------------------------------------------------------------------
# Shapes, range, determinism, identity
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("distort", [random_affine, elastic, Distort(), Distort(alpha=0.0)])
def test_shape_dtype_and_range_are_kept(distort):
    x = images(5)
    out = distort(x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= BACKGROUND - 1e-6 and out.max() <= x.max() + 1e-6  # interpolation never overshoots
    assert not torch.allclose(out, x)


def test_other_shapes_and_float64_work():
    x = torch.full((3, 2, 20, 24), BACKGROUND, dtype=torch.float64)
    out = Distort()(x, gen())
    assert out.shape == x.shape and out.dtype == torch.float64
    assert torch.allclose(out, x)  # a blank image stays blank


def test_the_generator_decides_everything():
    x = images(4)
    assert torch.equal(Distort()(x, gen(3)), Distort()(x, gen(3)))
    assert not torch.equal(Distort()(x, gen(3)), Distort()(x, gen(4)))
    g = gen(3)
    first, second = Distort()(x, g), Distort()(x, g)   # the generator advances
    assert not torch.equal(first, second)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        a = Distort()(x, gen(5))
        torch.manual_seed(1)
        b = Distort()(x, gen(5))
    assert torch.equal(a, b)  # the global random state plays no part


def test_every_image_gets_its_own_distortion():
    x = images(1).repeat(4, 1, 1, 1)
    out = Distort()(x, gen())
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 4))


def test_zero_strength_is_the_identity():
    x = images(6)
    assert torch.allclose(Distort(**STILL)(x, gen()), x, atol=1e-6)
    assert torch.allclose(random_affine(x, gen(), max_shift=0, scale=0, squeeze=0, shear=0), x, atol=1e-6)
    assert torch.allclose(elastic(x, gen(), alpha=0), x, atol=1e-6)


def test_the_background_comes_in_from_outside():
    x = torch.full((2, 1, 32, 32), FOREGROUND)  # an image of ink only
    out = Distort(**{**STILL, "max_shift": 6.0})(x, gen(7))
    draws = affine_draws(2, 7)
    dx = (2 * draws[3] - 1) * 6
    for n in range(2):
        k = int(abs(dx[n]))  # columns that come entirely from outside, on the side the image moved away from
        if k:
            edge = out[n, 0, :, :k] if dx[n] > 0 else out[n, 0, :, 32 - k:]
            assert torch.allclose(edge, torch.tensor(BACKGROUND))  # background, not 0


# --------------------------------------------------------------------------------------------
# The geometry
# --------------------------------------------------------------------------------------------

def test_a_shift_moves_the_ink_right_and_down_by_the_drawn_pixels():
    x = images(6)
    out = Distort(**{**STILL, "max_shift": 3.0})(x, gen(11))
    draws = affine_draws(6, 11)
    expected = torch.stack([(2 * draws[3] - 1) * 3, (2 * draws[4] - 1) * 3], 1).numpy()
    before, _ = moments(x)
    after, _ = moments(out)
    assert np.allclose(after - before, expected, atol=1e-3)


def test_scaling_and_squeezing_change_the_ink_spread():
    x = images(6)
    _, before = moments(x)
    _, scaled = moments(Distort(**{**STILL, "scale": 0.3})(x, gen(12)))
    s = (1 + (2 * affine_draws(6, 12)[0] - 1) * 0.3).numpy()
    assert np.allclose(scaled / before, s[:, None], rtol=0.06)  # interpolation blurs a little
    _, squeezed = moments(Distort(**{**STILL, "squeeze": 0.3})(x, gen(13)))
    q = (1 + (2 * affine_draws(6, 13)[1] - 1) * 0.3).numpy()
    assert np.allclose(squeezed[:, 0] / before[:, 0], q, rtol=0.06)      # wider by q
    assert np.allclose(squeezed[:, 1] / before[:, 1], 1 / q, rtol=0.06)  # and shorter by q


@pytest.mark.parametrize("others", [{}, {"squeeze": 0.3, "scale": 0.2}], ids=["shear alone", "with squeeze and scale"])
def test_shear_slants_rows_in_proportion_to_their_height(others):
    # M = shear @ squeeze @ scale maps a vertical bar (x = 0) to x = k y' whatever the squeeze and scale
    x = torch.full((1, 1, 32, 32), BACKGROUND)
    x[0, 0, 6:26, 15:17] = FOREGROUND  # a vertical bar
    out = Distort(**{**STILL, "shear": 0.5, **others})(x, gen(14))
    k = ((2 * affine_draws(1, 14)[2] - 1) * 0.5).item()
    cols = torch.arange(32.0)
    ink = out[0, 0] - BACKGROUND
    centres = (ink[8:24] * cols).sum(1) / ink[8:24].sum(1)  # the bar's centre in each row
    slope = np.polyfit(np.arange(8, 24), centres.numpy(), 1)[0]
    assert slope == pytest.approx(k, abs=0.02)


def test_elastic_displacements_are_smooth_and_scale_with_alpha():
    small = Distort(**{**STILL, "alpha": 5.0})._elastic_offsets(3, 32, 32, gen(15))
    large = Distort(**{**STILL, "alpha": 10.0})._elastic_offsets(3, 32, 32, gen(15))
    assert small.shape == (3, 32, 32, 2)
    assert torch.allclose(large, 2 * small)
    neighbours = torch.corrcoef(torch.stack([small[:, :, :-1].flatten(), small[:, :, 1:].flatten()]))[0, 1]
    assert neighbours > 0.95  # smoothed: neighbouring pixels move together
    rough = Distort(**{**STILL, "alpha": 5.0, "sigma": 0.3})._elastic_offsets(3, 32, 32, gen(15))
    assert torch.corrcoef(torch.stack([rough[:, :, :-1].flatten(), rough[:, :, 1:].flatten()]))[0, 1] < 0.3


def test_the_smoothing_matrix_is_a_normalised_gaussian():
    g = _gaussian_matrix(32, 4.0)
    assert torch.allclose(g, g.T)
    assert g.sum(1)[16] == pytest.approx(1.0, abs=0.01)   # inside, the weights sum to 1
    assert g.sum(1)[0] < 0.6                              # at the edge, half the kernel falls outside
    assert g[16, 20] / g[16, 16] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma away


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("x, error, text", [
    (np.zeros((2, 1, 32, 32), np.float32), TypeError, "x must be a torch tensor"),
    (torch.zeros(1, 32, 32), ValueError, "for one image pass x[None]"),
    (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), TypeError, "to_tensor scales uint8"),
])
def test_bad_images_are_named(x, error, text):
    with pytest.raises(error, match=text.replace("[", r"\[").replace("]", r"\]")):
        Distort()(x, gen())


def test_a_seed_instead_of_a_generator_is_refused():
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator \(torch.Generator\(\).manual_seed"):
        random_affine(images(1), 0)


@pytest.mark.parametrize("field, value, error", [
    ("scale", 1.0, ValueError), ("squeeze", -0.1, ValueError), ("alpha", -1.0, ValueError),
    ("shear", -0.2, ValueError), ("sigma", 0.0, ValueError), ("max_shift", "2", TypeError),
    ("alpha", float("nan"), TypeError), ("shear", True, TypeError),
])
def test_bad_strengths_are_named(field, value, error):
    with pytest.raises(error, match=f"Distort.{field}"):
        Distort(**{field: value})


# --------------------------------------------------------------------------------------------
# Training with distortions: fit(..., augment=...)
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    x = images(96, seed=21).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (96,), generator=gen(22))
    return x, y


def _model(seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return lenet5("modern").to(memory_format=torch.channels_last)


STEADY = TrainConfig(epochs=2, batch_size=32, lr=3e-3, schedule="constant")


def test_fit_passes_each_batch_and_its_own_generator_to_augment(tiny):
    seen = []

    def spy(batch, generator):
        seen.append((tuple(batch.shape), generator))
        return Distort()(batch, generator)
    fit(_model(), tiny, STEADY, progress=False, augment=spy)
    assert [shape for shape, _ in seen] == [(32, 1, 32, 32)] * 6
    assert len({id(g) for _, g in seen}) == 1 and isinstance(seen[0][1], torch.Generator)


def test_augmented_training_differs_and_is_reproducible(tiny):
    plain, a, b = _model(), _model(), _model()
    fit(plain, tiny, STEADY, progress=False)
    fit(a, tiny, STEADY, progress=False, augment=Distort())
    fit(b, tiny, STEADY, progress=False, augment=Distort())
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), plain.state_dict().values()))


def test_a_resumed_augmented_run_ends_with_the_same_parameters(tiny, tmp_path):
    straight = _model()
    fit(straight, tiny, STEADY, progress=False, augment=Distort())
    path = tmp_path / "augmented.pt"
    fit(_model(), tiny, dataclasses.replace(STEADY, epochs=1), checkpoint=path, progress=False, augment=Distort())
    assert load_checkpoint(path)["history"]["epoch"] == [1]
    resumed = _model(seed=5)  # another start: everything must come from the checkpoint
    history = fit(resumed, tiny, STEADY, checkpoint=path, resume=True, progress=False, augment=Distort())
    assert history.epoch == [1, 2]
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
