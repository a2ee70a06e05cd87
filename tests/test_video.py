"""lenet_course.video: the moving-digit clips and their labels, frame-wise LeNet-5 with temporal pooling,
the 3-D convolution network and the clip pictures (training it: tests/test_training.py)."""
from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lenet_course.data import BACKGROUND, FOREGROUND, paper_scale  # noqa: E402
from lenet_course.models import lenet5  # noqa: E402
from lenet_course.video import (  # noqa: E402
    DIRECTIONS, POOLINGS, Clips, FrameWise, LeNet3D, clip_animation, clip_strip, direction_names,
    layer_shapes, moving_digits, opposite, shrink_digits, temporal_pool,
)


def _digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` made-up uint8 digits: random strokes of ink on a blank 28x28, and labels 0..9."""
    g = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = g.integers(5, 15, 2)
        images[i, r:r + 9, c:c + 3] = 255
        images[i, r + 2:r + 4, c - 2:c + 6] = g.integers(100, 256)
    return images, np.arange(n) % 10


def _clips(n: int = 40, seed: int = 0, **kwargs) -> Clips:
    images, labels = _digits(n, seed)
    return moving_digits(images, labels, generator=np.random.default_rng(seed), **kwargs)


@pytest.fixture(scope="module")
def clips() -> Clips:
    return _clips(60)


# --------------------------------------------------------------------------------------------
# The clips
# --------------------------------------------------------------------------------------------

def test_clips_have_the_documented_shapes_and_types(clips):
    assert clips.clips.shape == (60, 8, 1, 32, 32) and clips.clips.dtype == torch.float32
    assert clips.digits.shape == clips.directions.shape == (60,)
    assert clips.digits.dtype == clips.directions.dtype == clips.positions.dtype == torch.int64
    assert clips.positions.shape == (60, 8, 2)
    assert clips.names == ("right", "left", "down", "up") and clips.speed == 1 and clips.digit_size == 20
    assert len(clips) == 60
    assert repr(clips) == ("Clips(60 clips of 8 frames 32x32, digit 20x20, 1 px/frame, "
                           "directions: right, left, down, up)")
    assert torch.equal(clips.digits, torch.arange(60) % 10)


def test_frames_are_in_the_papers_range_with_a_background_of_minus_0_1(clips):
    x = clips.clips
    assert x.min().item() == pytest.approx(BACKGROUND) and x.max().item() <= FOREGROUND + 1e-6
    assert (x == torch.tensor(BACKGROUND)).float().mean() > 0.5          # mostly background, exactly -0.1
    assert ((x > BACKGROUND + 1e-6).flatten(2).sum(2) > 0).all()         # every frame holds some ink


def test_the_digit_moves_by_speed_times_direction_each_frame_and_stays_inside():
    for n_directions, speed, frames in ((4, 1, 8), (4, 2, 6), (8, 1, 8), (8, 3, 3)):
        clips = _clips(48, seed=speed, n_directions=n_directions, speed=speed, frames=frames)
        step = torch.tensor([DIRECTIONS[name] for name in clips.names])[clips.directions] * speed  # (N, 2)
        moves = clips.positions[:, 1:] - clips.positions[:, :-1]
        assert (moves == step[:, None]).all()
        assert (clips.positions >= 0).all() and (clips.positions + clips.digit_size <= 32).all()
        for i in range(len(clips)):                        # the picture itself moves: a pure shift
            for t in range(frames - 1):
                shifted = clips.clips[i, t].roll(tuple(step[i].tolist()), dims=(1, 2))
                assert torch.equal(clips.clips[i, t + 1], shifted)


def test_each_frame_holds_the_shrunk_digit_at_its_position(clips):
    images, _ = _digits(60)
    tiles = torch.from_numpy(paper_scale(shrink_digits(images, 20)))
    for i in (0, 7, 33):
        for t in (0, 5):
            r, c = clips.positions[i, t].tolist()
            assert torch.equal(clips.clips[i, t, 0, r:r + 20, c:c + 20], tiles[i])
            outside = clips.clips[i, t, 0].clone()
            outside[r:r + 20, c:c + 20] = BACKGROUND
            assert (outside == torch.tensor(BACKGROUND)).all()


def test_labels_agree_with_positions_for_4_and_8_directions():
    for n_directions in (4, 8):
        clips = _clips(200, seed=3, n_directions=n_directions)
        assert clips.names == direction_names(n_directions)
        step = torch.sign(clips.positions[:, -1] - clips.positions[:, 0])
        steps = torch.tensor(list(DIRECTIONS.values())[:n_directions])
        labels = (step[:, None] == steps[None]).all(2).int().argmax(1)
        assert torch.equal(labels, clips.directions)
        assert set(clips.directions.tolist()) == set(range(n_directions))  # every direction drawn


def test_start_positions_cover_every_allowed_position():
    """Along the moving axis a start is uniform over all starts that allow the whole trip (so a clip
    and its reversal are equally likely); across it, uniform over the whole room."""
    clips = _clips(2000, seed=4)
    right = clips.directions == 0
    left = clips.directions == 1
    start_cols_right = set(clips.positions[right, 0, 1].tolist())
    start_cols_left = set(clips.positions[left, 0, 1].tolist())
    assert start_cols_right == set(range(0, 6))            # room 12, travel 7: starts 0..5
    assert start_cols_left == set(range(7, 13))            # ... and 7..12 going left
    assert set(clips.positions[right, 0, 0].tolist()) == set(range(0, 13))
    ends_left = set(clips.positions[left, -1, 1].tolist())
    assert ends_left == start_cols_right                   # a left clip ends where right clips start


def test_the_same_seed_gives_the_same_clips_and_another_seed_others():
    images, labels = _digits(30)
    a = moving_digits(images, labels, generator=np.random.default_rng(5))
    b = moving_digits(images, labels, generator=np.random.default_rng(5))
    c = moving_digits(images, labels, generator=np.random.default_rng(6))
    assert torch.equal(a.clips, b.clips) and torch.equal(a.positions, b.positions)
    assert not torch.equal(a.positions, c.positions)
    t1 = moving_digits(images, labels, generator=torch.Generator().manual_seed(5))
    t2 = moving_digits(images, labels, generator=torch.Generator().manual_seed(5))
    assert torch.equal(t1.clips, t2.clips) and torch.equal(t1.directions, t2.directions)
    assert torch.equal(moving_digits(images, labels, generator=5).positions, a.positions)  # an int seeds numpy
    g = torch.Generator().manual_seed(5)                   # a generator advances: two calls differ
    assert not torch.equal(moving_digits(images, labels, generator=g).positions,
                           moving_digits(images, labels, generator=g).positions)


def test_generation_touches_no_global_random_state():
    images, labels = _digits(10)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    moving_digits(images, labels, generator=np.random.default_rng(0))
    moving_digits(images, labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)


def test_reversed_plays_the_clip_backwards_in_the_opposite_direction(clips):
    back = clips.reversed()
    assert torch.equal(back.clips, clips.clips.flip(1)) and torch.equal(back.positions, clips.positions.flip(1))
    assert torch.equal(back.digits, clips.digits)
    for d, b in zip(clips.directions.tolist(), back.directions.tolist()):
        assert DIRECTIONS[back.names[b]] == tuple(-s for s in DIRECTIONS[clips.names[d]])
    twice = back.reversed()
    assert torch.equal(twice.clips, clips.clips) and torch.equal(twice.directions, clips.directions)


def test_opposite_pairs_each_direction_with_its_negation():
    names = list(DIRECTIONS)
    for i, name in enumerate(names):
        j = int(opposite(torch.tensor(i)))
        assert DIRECTIONS[names[j]] == tuple(-s for s in DIRECTIONS[name])


def test_shrink_digits_resizes_with_antialiasing():
    images, _ = _digits(5)
    small = shrink_digits(images, 16)
    assert small.shape == (5, 16, 16) and small.dtype == np.uint8
    assert np.array_equal(shrink_digits(images, 28), images)
    assert small.max() == 255 and small[:, 0, :].max() == 0  # the blank margin stays blank
    assert shrink_digits(images[:0], 20).shape == (0, 20, 20)


@pytest.mark.parametrize("call, error, message", [
    (lambda im, lb: moving_digits(im.astype(np.float32), lb, generator=0), TypeError, "numpy uint8 array"),
    (lambda im, lb: moving_digits(torch.from_numpy(im), lb, generator=0), TypeError, "got Tensor"),
    (lambda im, lb: moving_digits(im[0], lb, generator=0), ValueError, "for one digit pass images[None]"),
    (lambda im, lb: moving_digits(im, lb[:3], generator=0), ValueError, "labels must be integers of shape (4,)"),
    (lambda im, lb: moving_digits(im, lb + 10, generator=0), ValueError, "labels must be digits 0..9"),
    (lambda im, lb: moving_digits(im, lb, generator=0, frames=1), ValueError, "frames must be an int >= 2"),
    (lambda im, lb: moving_digits(im, lb, generator=0, speed=0), ValueError, "speed must be an int >= 1"),
    (lambda im, lb: moving_digits(im, lb, generator=0, speed=1.5), ValueError, "speed must be an int >= 1"),
    (lambda im, lb: moving_digits(im, lb, generator=0, n_directions=6), ValueError, "n_directions must be 4"),
    (lambda im, lb: moving_digits(im, lb, generator=0, digit_size=40), ValueError, "must not exceed size"),
    (lambda im, lb: moving_digits(im, lb, generator=0, speed=2), ValueError,
     "the digit would leave the frame: 8 frames at speed 2 travel 14 pixels, but a 20-pixel digit in a 32-pixel "
     "frame has room for 12; lower speed or frames, or shrink digit_size"),
    (lambda im, lb: moving_digits(im, lb, generator=None), TypeError, "generator must be a numpy Generator"),
    (lambda im, lb: moving_digits(im, lb, generator=np.random.RandomState(0)), TypeError, "got RandomState"),
])
def test_bad_clip_requests_raise_clear_errors(call, error, message):
    images, labels = _digits(4)
    with pytest.raises(error) as info:
        call(images, labels)
    assert message in str(info.value)


# --------------------------------------------------------------------------------------------
# Frame-wise LeNet-5 and temporal pooling
# --------------------------------------------------------------------------------------------

def _net(variant: str, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return lenet5(variant).eval()


@pytest.mark.parametrize("variant", ["modern", "paper"])
def test_framewise_equals_lenet5_frame_by_frame(variant, clips):
    net = _net(variant)
    x = clips.clips[:12]
    with torch.no_grad():
        one_by_one = torch.stack([net.scores(x[:, t]) for t in range(8)], dim=1)       # one batch per frame index
        alone = torch.stack([net.scores(x[2, t][None])[0] for t in range(8)])           # clip 2, image by image
        features = torch.stack([net.features(x[:, t]) for t in range(8)], dim=1)
        reader = FrameWise(net)
        assert reader.frame_scores(x).shape == (12, 8, 10) and reader.frame_features(x).shape == (12, 8, 84)
        assert torch.allclose(reader.frame_scores(x), one_by_one, rtol=1e-5, atol=1e-4)
        assert torch.allclose(reader.frame_scores(x)[2], alone, rtol=1e-5, atol=1e-4)
        assert torch.allclose(reader.frame_features(x), features, rtol=1e-5, atol=1e-5)
        for how in POOLINGS:
            pooled = FrameWise(net, how)(x)
            assert pooled.shape == (12, 10)
            assert torch.allclose(pooled, temporal_pool(one_by_one, how), rtol=1e-5, atol=1e-4)


def test_temporal_pooling_by_hand():
    scores = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 100.0]]])  # (1, 3 frames, 3 classes)
    assert torch.equal(temporal_pool(scores, "mean"), torch.tensor([[0.0, 2 / 3, 100 / 3]]))
    assert torch.equal(temporal_pool(scores, "max"), torch.tensor([[0.0, 1.0, 100.0]]))
    assert torch.allclose(temporal_pool(scores, "vote"), torch.tensor([[0.0, 2 / 3, 1 / 3]]))
    assert temporal_pool(scores, "mean").argmax(1).item() == 2 and temporal_pool(scores, "vote").argmax(1).item() == 1
    tie = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])   # one vote each for classes 2 and 1
    assert temporal_pool(tie, "vote").argmax(1).item() == 1    # ties go to the lower class


def test_a_reversed_or_shuffled_clip_gives_the_same_pooled_prediction(clips):
    net = _net("modern", 1)
    shuffled = clips.clips[:, torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])]
    with torch.no_grad():
        for how in POOLINGS:
            reader = FrameWise(net, how)
            forward, backward = reader(clips.clips), reader(clips.reversed().clips)
            assert torch.allclose(forward, backward, rtol=1e-5, atol=1e-5)
            assert torch.equal(forward.argmax(1), backward.argmax(1))
            assert torch.equal(forward.argmax(1), reader(shuffled).argmax(1))


@pytest.mark.parametrize("call, error, message", [
    (lambda net, x: FrameWise(nn.Linear(3, 3)), TypeError, "net must be a LeNet5"),
    (lambda net, x: FrameWise(net, "median"), ValueError, "pooling must be one of 'mean', 'max', 'vote'"),
    (lambda net, x: FrameWise(net)(x[0]), ValueError, "for one clip pass clips[None]"),
    (lambda net, x: FrameWise(net)(x[..., :28, :28]), ValueError, "expects clips (N, T, 1, 32, 32)"),
    (lambda net, x: FrameWise(net)(x.numpy()), TypeError, "expects a tensor of clips"),
    (lambda net, x: temporal_pool(torch.zeros(2, 10), "mean"), ValueError, "expects scores (N, T, C), got (2, 10)"),
    (lambda net, x: temporal_pool(torch.zeros(2, 3, 10), "sum"), ValueError, "how must be one of"),
])
def test_bad_framewise_inputs_raise_clear_errors(call, error, message, clips):
    with pytest.raises(error) as info:
        call(_net("modern"), clips.clips[:2])
    assert message in str(info.value)


def test_framewise_refuses_a_clips_object_with_a_hint(clips):
    with pytest.raises(TypeError, match="pass Clips.clips"):
        FrameWise(_net("modern"))(clips)


# --------------------------------------------------------------------------------------------
# The 3-D convolution network
# --------------------------------------------------------------------------------------------

def test_lenet3d_shapes_and_parameters_per_layer(clips):
    torch.manual_seed(0)
    net = LeNet3D(4)
    rows = layer_shapes(net, clips.clips[:3], LeNet3D.LAYERS)
    assert rows == [("c1", (3, 6, 6, 28, 28), 456), ("s2", (3, 6, 6, 14, 14), 0), ("c3", (3, 16, 4, 10, 10), 7216),
                    ("s4", (3, 16, 4, 5, 5), 0), ("c5", (3, 120, 4, 1, 1), 48120), ("f6", (3, 84), 10164),
                    ("output", (3, 4), 340)]
    assert sum(p.numel() for p in net.parameters()) == 66_296
    assert net(clips.clips[:3]).shape == (3, 4) and net.features(clips.clips[:3]).shape == (3, 84)
    five = _clips(2, frames=5).clips
    assert [shape for _, shape, _ in layer_shapes(LeNet3D(8), five, ("c1", "c3", "c5", "output"))] == [
        (2, 6, 3, 28, 28), (2, 16, 1, 10, 10), (2, 120, 1, 1, 1), (2, 8)]


def test_lenet3d_depends_on_the_order_of_the_frames(clips):
    torch.manual_seed(0)
    net = LeNet3D(4).eval()
    with torch.no_grad():
        assert not torch.allclose(net(clips.clips[:8]), net(clips.reversed().clips[:8]), atol=1e-6)


def test_layer_shapes_restores_the_mode_and_names_unknown_layers(clips):
    net = LeNet3D().train()
    layer_shapes(net, clips.clips[:1], ["c1"])
    assert net.training
    with pytest.raises(ValueError, match="LeNet3D has no layer\\(s\\) 'c2'; its layers: c1, s2, c3"):
        layer_shapes(net, clips.clips[:1], ["c1", "c2"])


@pytest.mark.parametrize("call, message", [
    (lambda x: LeNet3D()(x[:, :4]), "at least 5 frames (C1 and C3 each span 3), got 4"),
    (lambda x: LeNet3D()(x[0]), "for one clip pass clips[None]"),
    (lambda x: LeNet3D()(x[..., :28, :28]), "expects clips (N, T, 1, 32, 32), got shape (2, 8, 1, 28, 28)"),
    (lambda x: LeNet3D(n_classes=1), "n_classes must be an int >= 2"),
])
def test_bad_lenet3d_inputs_raise_clear_errors(call, message, clips):
    with pytest.raises(ValueError) as info:
        call(clips.clips[:2])
    assert message in str(info.value)


# --------------------------------------------------------------------------------------------
# Showing clips
# --------------------------------------------------------------------------------------------

def test_clip_animation_is_a_small_looping_html_animation(clips):
    html = clip_animation(clips.clips[:2], ["a", "b"])
    assert isinstance(html, str) and "<script" in html and "loop" in html
    assert html.count("data:image/png;base64") == 8           # one image per frame
    assert len(html) < 60_000
    assert plt.get_fignums() == []                             # the figure is closed
    assert clip_animation(clips.clips[0]).count("data:image/png;base64") == 8   # one clip (T, 1, H, W)


def test_clip_strip_shows_every_frame_side_by_side(clips):
    fig = clip_strip(clips.clips[:3], ["x", "y", "z"])
    try:
        assert len(fig.axes) == 3 * 8
        assert [ax.get_title() for ax in fig.axes[:8]] == [f"t={t}" for t in range(8)]
        assert fig.axes[8].get_ylabel() == "y"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("call, message", [
    (lambda x: clip_animation(x[:2], ["only one"]), "titles must name each of the 2 clips, got 1 titles"),
    (lambda x: clip_strip(x[:, :, 0]), "expected a clip (T, 1, H, W) or clips (K, T, 1, H, W)"),
])
def test_bad_picture_requests_raise_clear_errors(call, message, clips):
    with pytest.raises(ValueError) as info:
        call(clips.clips[:2])
    assert message in str(info.value)
    plt.close("all")


def test_importing_the_module_changes_nothing_global():
    code = ("import sys, torch; state = torch.get_rng_state(); import lenet_course.video; "
            "assert 'matplotlib.pyplot' not in sys.modules; assert torch.equal(torch.get_rng_state(), state)")
    subprocess.run([sys.executable, "-c", code], check=True)
