"""The numpy layers against torch, loops against vectorized, and the torch modules' gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from lenet_course import layers
from lenet_course.paper import A, C3_TABLE, S

FAST = settings(max_examples=20, deadline=None)


@st.composite
def conv_case(draw):
    """Random (x, w, b) for a valid convolution, float64."""
    n, c, k = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    h, w = draw(st.integers(kh, 9)), draw(st.integers(kw, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(n, c, h, w)), rng.normal(size=(k, c, kh, kw)), rng.normal(size=k)


@st.composite
def subsample_case(draw):
    """Random (x, coef, bias) for subsampling, float64; odd sizes included."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(n, c, h, w)), rng.normal(size=c), rng.normal(size=c)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------

@FAST
@given(conv_case())
def test_conv2d_matches_torch(case):
    x, w, b = case
    expected = F.conv2d(t(x), t(w), t(b)).numpy()
    np.testing.assert_allclose(layers.conv2d(x, w, b), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layers.conv2d_loops(x, w, b), expected, rtol=1e-10, atol=1e-10)


@FAST
@given(conv_case())
def test_conv2d_loops_equal_vectorized(case):
    x, w, b = case
    np.testing.assert_allclose(layers.conv2d_loops(x, w, b), layers.conv2d(x, w, b), rtol=1e-12, atol=1e-12)


def test_conv2d_c1_shape_and_dtype():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, 32, 32)).astype(np.float32)
    w = rng.normal(size=(6, 1, 5, 5)).astype(np.float32)
    y = layers.conv2d(x, w, np.zeros(6, np.float32))
    assert y.shape == (2, 6, 28, 28) and y.dtype == np.float32


@pytest.mark.parametrize("fn", [layers.conv2d, layers.conv2d_loops])
@pytest.mark.parametrize("x_shape, w_shape, b_shape, message", [
    ((1, 32, 32), (6, 1, 5, 5), (6,), r"\(N, C, H, W\)"),
    ((1, 1, 32, 32), (6, 5, 5), (6,), r"\(K, C, kh, kw\)"),
    ((1, 2, 32, 32), (6, 1, 5, 5), (6,), r"\(K, 2, kh, kw\)"),
    ((1, 1, 32, 32), (6, 1, 5, 5), (5,), r"\(6,\)"),
    ((1, 1, 4, 4), (6, 1, 5, 5), (6,), "do not fit"),
])
def test_conv2d_rejects_bad_shapes(fn, x_shape, w_shape, b_shape, message):
    with pytest.raises(ValueError, match=message):
        fn(np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape))


# --------------------------------------------------------------------------------------------
# Subsampling
# --------------------------------------------------------------------------------------------

@FAST
@given(subsample_case())
def test_subsample_matches_torch_pooling(case):
    x, coef, bias = case
    sums = F.avg_pool2d(t(x), 2).numpy() * 4
    expected = coef[:, None, None] * sums + bias[:, None, None]
    np.testing.assert_allclose(layers.subsample(x, coef, bias), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layers.subsample_loops(x, coef, bias), expected, rtol=1e-10, atol=1e-10)


@FAST
@given(subsample_case())
def test_subsample_loops_equal_vectorized(case):
    x, coef, bias = case
    np.testing.assert_allclose(layers.subsample_loops(x, coef, bias), layers.subsample(x, coef, bias),
                               rtol=1e-12, atol=1e-12)


def test_subsample_with_quarter_coefficient_is_average_pooling():
    x = np.random.default_rng(1).normal(size=(2, 6, 28, 28))
    y = layers.subsample(x, np.full(6, 0.25), np.zeros(6))
    assert y.shape == (2, 6, 14, 14)
    np.testing.assert_allclose(y, F.avg_pool2d(t(x), 2).numpy(), atol=1e-12)


@pytest.mark.parametrize("fn", [layers.subsample, layers.subsample_loops])
@pytest.mark.parametrize("x_shape, c_shape, b_shape, message", [
    ((6, 28, 28), (6,), (6,), r"\(N, C, H, W\)"),
    ((1, 6, 1, 28), (6,), (6,), "H, W >= 2"),
    ((1, 6, 28, 28), (5,), (6,), r"coef .*\(6,\)"),
    ((1, 6, 28, 28), (6,), (6, 1), r"bias .*\(6,\)"),
])
def test_subsample_rejects_bad_shapes(fn, x_shape, c_shape, b_shape, message):
    with pytest.raises(ValueError, match=message):
        fn(np.zeros(x_shape), np.zeros(c_shape), np.zeros(b_shape))


# --------------------------------------------------------------------------------------------
# C3's table
# --------------------------------------------------------------------------------------------

def test_c3_mask_is_table_one():
    mask = layers.c3_mask(C3_TABLE)
    assert mask.shape == (16, 6)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask.sum() == 60
    for k, inputs in enumerate(C3_TABLE):
        assert set(np.flatnonzero(mask[k])) == set(inputs)
    np.testing.assert_array_equal(layers.c3_mask(), mask)


@pytest.mark.parametrize("table, message", [
    (((0, 1), ()), "empty"),
    (((0, 0, 1),), "twice"),
    (((0, 6),), "0..5"),
    (((-1,),), "0..5"),
])
def test_c3_mask_rejects_bad_tables(table, message):
    with pytest.raises(ValueError, match=message):
        layers.c3_mask(table)


@FAST
@given(st.integers(0, 2**32 - 1))
def test_sparse_conv2d_matches_per_map_convolution(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 6, 7, 7))
    w, b = rng.normal(size=(16, 6, 3, 3)), rng.normal(size=16)
    y = layers.sparse_conv2d(x, w, b, layers.c3_mask())
    assert y.shape == (2, 16, 5, 5)
    for k, inputs in enumerate(C3_TABLE):  # map k is an ordinary convolution of its own inputs
        idx = list(inputs)
        expected = F.conv2d(t(x[:, idx]), t(w[k:k + 1, idx]), t(b[k:k + 1])).numpy()[:, 0]
        np.testing.assert_allclose(y[:, k], expected, rtol=1e-10, atol=1e-10)


def test_sparse_conv2d_rejects_bad_mask():
    x, w, b = np.zeros((1, 6, 7, 7)), np.zeros((16, 6, 3, 3)), np.zeros(16)
    with pytest.raises(ValueError, match=r"\(K, C\)"):
        layers.sparse_conv2d(x, w, b, np.ones((6, 16)))
    with pytest.raises(ValueError, match="0 and 1"):
        layers.sparse_conv2d(x, w, b, np.full((16, 6), 0.5))


# --------------------------------------------------------------------------------------------
# The squashing function
# --------------------------------------------------------------------------------------------

def test_squash_values():
    np.testing.assert_allclose(layers.squash([-1.0, 0.0, 1.0]), [-1.0, 0.0, 1.0], atol=1e-4)
    assert abs(layers.squash(1e6)) <= A
    assert layers.squash(np.zeros((2, 3))).shape == (2, 3)


def test_squash_grad_matches_finite_differences():
    a = np.linspace(-6, 6, 241)
    h = 1e-6
    numeric = (layers.squash(a + h) - layers.squash(a - h)) / (2 * h)
    np.testing.assert_allclose(layers.squash_grad(a), numeric, rtol=1e-7, atol=1e-9)
    assert layers.squash_grad(0.0) == pytest.approx(A * S)


def test_scaled_tanh_module_matches_numpy():
    a = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(layers.ScaledTanh()(t(a)).numpy(), layers.squash(a), rtol=1e-12)


def test_scaled_tanh_gradcheck():
    a = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(layers.ScaledTanh(), (a,))


# --------------------------------------------------------------------------------------------
# The RBF output
# --------------------------------------------------------------------------------------------

def test_prototypes_are_ten_distinct_bitmaps():
    p = layers.rbf_prototypes()
    assert p.shape == (10, 12, 7)
    assert set(np.unique(p)) == {-1.0, 1.0}
    flat = p.reshape(10, 84)
    hamming = (flat[:, None, :] != flat[None, :, :]).sum(axis=2)
    off_diagonal = hamming[~np.eye(10, dtype=bool)]
    assert off_diagonal.min() >= 10, "two prototypes are nearly the same bitmap"
    assert ((flat == 1).sum(axis=1) >= 12).all(), "a prototype has almost no ink"


def test_prototypes_are_fresh_copies():
    p = layers.rbf_prototypes()
    p[:] = 0
    assert set(np.unique(layers.rbf_prototypes())) == {-1.0, 1.0}


def test_rbf_matches_torch_cdist():
    rng = np.random.default_rng(2)
    x, protos = rng.normal(size=(5, 84)), layers.rbf_prototypes().reshape(10, 84)
    expected = torch.cdist(t(x), t(protos)).numpy() ** 2
    y = layers.rbf(x, protos)
    assert y.shape == (5, 10)
    np.testing.assert_allclose(y, expected, rtol=1e-9)
    assert (layers.rbf(protos, protos).argmin(axis=1) == np.arange(10)).all()


@pytest.mark.parametrize("x_shape, p_shape, message", [
    ((84,), (10, 84), r"\(N, D\)"),
    ((5, 84), (10, 12, 7), r"\(K, 84\)"),
    ((5, 80), (10, 84), r"\(K, 80\)"),
])
def test_rbf_rejects_bad_shapes(x_shape, p_shape, message):
    with pytest.raises(ValueError, match=message):
        layers.rbf(np.zeros(x_shape), np.zeros(p_shape))


# --------------------------------------------------------------------------------------------
# Torch modules: same numbers as numpy, and correct gradients
# --------------------------------------------------------------------------------------------

def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_subsampling_module_matches_numpy_and_counts_two_per_map():
    m = layers.Subsampling(6).double()
    with torch.no_grad():
        m.coef.uniform_(-1, 1, generator=gen(1))
        m.bias.uniform_(-1, 1, generator=gen(2))
    x = torch.randn(2, 6, 28, 28, dtype=torch.float64, generator=gen(3))
    expected = layers.subsample(x.numpy(), m.coef.detach().numpy(), m.bias.detach().numpy())
    np.testing.assert_allclose(m(x).detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    assert sum(p.numel() for p in m.parameters()) == 12


def test_subsampling_starts_as_average_pooling():
    x = torch.randn(1, 3, 6, 6, generator=gen())
    torch.testing.assert_close(layers.Subsampling(3)(x), F.avg_pool2d(x, 2))


def test_subsampling_gradcheck():
    m = layers.Subsampling(3).double()
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64, generator=gen(), requires_grad=True)
    coef = torch.randn(3, dtype=torch.float64, generator=gen(1), requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, generator=gen(2), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c, b: functional_call(m, {"coef": c, "bias": b}, (x,)),
                                    (x, coef, bias))


@pytest.mark.parametrize("bad", [(2, 5, 4, 4), (2, 3, 1, 4), (3, 4, 4)])
def test_subsampling_rejects_bad_input(bad):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        layers.Subsampling(3)(torch.zeros(bad))


def test_sparse_conv_module_c3():
    m = layers.SparseConv2d(6, 16, 5, C3_TABLE)
    assert m.n_trainable() == 60 * 25 + 16 == 1_516
    assert m.connected_weights == 1_500
    assert "mask" in dict(m.named_buffers())
    assert "mask" not in dict(m.named_parameters())
    unconnected = torch.from_numpy(layers.c3_mask() == 0)
    assert (m.weight[unconnected] == 0).all()
    x = torch.randn(2, 6, 14, 14, generator=gen())
    y = m(x)
    assert y.shape == (2, 16, 10, 10)
    expected = layers.sparse_conv2d(x.numpy(), m.weight.detach().numpy(), m.bias.detach().numpy(),
                                    layers.c3_mask())
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    y.square().sum().backward()
    assert (m.weight.grad[unconnected] == 0).all()
    assert (m.weight.grad[~unconnected] != 0).any()


def test_sparse_conv_n_trainable_skips_frozen():
    m = layers.SparseConv2d(6, 16, 5, C3_TABLE)
    m.weight.requires_grad_(False)
    assert m.n_trainable() == 16


def test_sparse_conv_gradcheck():
    m = layers.SparseConv2d(6, 16, 2, C3_TABLE).double()
    x = torch.randn(1, 6, 3, 4, dtype=torch.float64, generator=gen(), requires_grad=True)
    w = torch.randn(16, 6, 2, 2, dtype=torch.float64, generator=gen(1), requires_grad=True)
    b = torch.randn(16, dtype=torch.float64, generator=gen(2), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: functional_call(m, {"weight": w, "bias": b}, (x,)),
                                    (x, w, b))


def test_sparse_conv_rejects_bad_table_and_input():
    with pytest.raises(ValueError, match="16 output maps"):
        layers.SparseConv2d(6, 16, 5, C3_TABLE[:15])
    with pytest.raises(ValueError, match=r"\(N, 6, H, W\)"):
        layers.SparseConv2d(6, 16, 5, C3_TABLE)(torch.zeros(1, 5, 14, 14))


def test_rbf_module_matches_numpy_with_fixed_prototypes():
    protos = layers.rbf_prototypes().reshape(10, 84)
    m = layers.RBFOutput(protos)
    assert list(m.parameters()) == []
    assert "prototypes" in m.state_dict()
    np.testing.assert_array_equal(m.prototypes.numpy(), protos)
    x = torch.randn(4, 84, generator=gen())
    np.testing.assert_allclose(m(x).numpy(), layers.rbf(x.numpy(), protos), rtol=1e-5)
    protos[:] = 0  # the module holds its own copy
    assert (m.prototypes.abs() == 1).all()


def test_rbf_module_gradcheck():
    m = layers.RBFOutput(layers.rbf_prototypes().reshape(10, 84)).double()
    x = torch.randn(3, 84, dtype=torch.float64, generator=gen(), requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


def test_rbf_module_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(K, D\)"):
        layers.RBFOutput(layers.rbf_prototypes())
    with pytest.raises(ValueError, match=r"\(N, 84\)"):
        layers.RBFOutput(layers.rbf_prototypes().reshape(10, 84))(torch.zeros(2, 12, 7))
