"""Tests for kwlab.methods.kw.attention: the attention functions' defining properties, the registry, and KWAttention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kwlab.methods.kw.attention import ATTENTION_FUNCTIONS, EPS, BatchNorm1dAnyBatch, KWAttention, register_attention
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.layers import KWConv2d
from kwlab.methods.kw.planner import attention_params, num_basis
from kwlab.methods.kw.warehouse import Warehouse


def mixed_sign_logits(generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """(B, m, n+1) logits with both signs in every row."""
    logits = torch.randn(4, 6, 9, generator=generator, dtype=torch.float64) * scale
    logits[..., 0], logits[..., 1] = logits[..., 0].abs() + 0.1, -logits[..., 1].abs() - 0.1
    return logits


def test_builtin_functions_are_registered():
    assert {"caf", "softmax", "sigmoid", "relu_l1"} <= set(ATTENTION_FUNCTIONS)


def test_caf_is_signed_and_l1_normalised(generator):
    logits = mixed_sign_logits(generator)
    alpha = ATTENTION_FUNCTIONS["caf"](logits)
    assert (alpha < 0).any() and (alpha > 0).any()
    assert torch.equal(alpha.sign(), logits.sign())  # a per-row positive rescaling keeps every sign
    l1 = logits.abs().sum(-1)
    torch.testing.assert_close(alpha.abs().sum(-1), l1 / (l1 + EPS))
    assert (alpha.abs().sum(-1) < 1).all()
    torch.testing.assert_close(alpha / logits, (1 / (l1 + EPS))[..., None].expand_as(alpha))  # same factor per row


def test_caf_is_nearly_unit_l1_for_large_logits(generator):
    alpha = ATTENTION_FUNCTIONS["caf"](mixed_sign_logits(generator, scale=1e4))
    torch.testing.assert_close(alpha.abs().sum(-1), torch.ones(4, 6, dtype=torch.float64), rtol=0, atol=1e-6)


def test_caf_epsilon_is_the_reference_value():
    """The reference divides by sum|z| + 1e-3: one logit of 1e-3 gives attention 1/2."""
    assert EPS == 1e-3
    alpha = ATTENTION_FUNCTIONS["caf"](torch.tensor([[1e-3, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(alpha, torch.tensor([[0.5, 0.0]], dtype=torch.float64))


def test_softmax_rows_sum_to_one(generator):
    alpha = ATTENTION_FUNCTIONS["softmax"](mixed_sign_logits(generator, scale=5.0))
    assert (alpha > 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4, 6, dtype=torch.float64))


def test_sigmoid_is_in_open_unit_interval(generator):
    logits = mixed_sign_logits(generator, scale=5.0)
    alpha = ATTENTION_FUNCTIONS["sigmoid"](logits)
    assert ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(alpha, 1 / (1 + torch.exp(-logits)))


def test_relu_l1_is_non_negative_and_sums_to_about_one(generator):
    logits = mixed_sign_logits(generator, scale=10.0)
    alpha = ATTENTION_FUNCTIONS["relu_l1"](logits)
    assert (alpha >= 0).all()
    assert (alpha[logits <= 0] == 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4, 6, dtype=torch.float64), rtol=0, atol=1e-3)


def test_relu_l1_of_all_negative_logits_is_zero():
    alpha = ATTENTION_FUNCTIONS["relu_l1"](-torch.rand(3, 5) - 0.1)
    assert torch.equal(alpha, torch.zeros(3, 5))


@pytest.mark.parametrize("name", sorted(ATTENTION_FUNCTIONS))
def test_functions_keep_shape_and_dtype(name, generator):
    logits = mixed_sign_logits(generator)
    alpha = ATTENTION_FUNCTIONS[name](logits)
    assert alpha.shape == logits.shape and alpha.dtype == logits.dtype and torch.isfinite(alpha).all()


@pytest.fixture
def first_cell_attention():
    """Register 'test_first_cell' (all attention on cell 0) for one test, then remove it from the registry."""
    name = "test_first_cell"
    assert name not in ATTENTION_FUNCTIONS

    @register_attention(name)
    def first_cell(logits: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.zeros(logits.shape[:-1], dtype=torch.long), logits.shape[-1]).to(logits.dtype)

    yield name
    del ATTENTION_FUNCTIONS[name]


def test_registered_function_drives_a_layer_without_touching_it(first_cell_attention, generator):
    """A new function is accepted by KWConfig and used by the layer: here every mixture becomes cell 0."""
    kw = KWConfig(attention=first_cell_attention, init="none")
    warehouse = Warehouse(5, (2, 2, 1, 1))
    layer = KWConv2d(2, 4, 3, padding=1, bias=False, warehouse=warehouse, kw=kw).eval()
    x = torch.randn(2, 2, 5, 5, generator=generator)
    kernel = warehouse.cells[0].reshape(2, 2, 1, 1).repeat(2, 1, 3, 3)  # every (2x2x1x1) tile is cell 0
    torch.testing.assert_close(layer(x), F.conv2d(x, kernel, padding=1))


def test_reregistering_warns_and_keeps_the_first():
    original = ATTENTION_FUNCTIONS["caf"]
    with pytest.warns(UserWarning, match="'caf' is already registered"):
        register_attention("caf")(lambda logits: logits * 0)
    assert ATTENTION_FUNCTIONS["caf"] is original


def test_unknown_attention_is_rejected_by_config():
    with pytest.raises(ValueError, match="kw.attention: 'nope' is not one of .*'caf'"):
        KWConfig(attention="nope")


def make_attention(*, blend=True, layer_norm=False, nonlocal_basis_ratio=1.0, own=(3, 4), cells=12, mixtures=4):
    """A KWAttention over `cells` cells whose beta maps mixture i to own cell own_start + i."""
    beta = torch.zeros(mixtures, cells + 1)
    beta[torch.arange(mixtures), own[0] + torch.arange(mixtures)] = 1
    return KWAttention(8, mixtures, cells, 16, beta, blend=blend, layer_norm=layer_norm, own_start=own[0],
                       own_cells=own[1], num_basis=num_basis(cells - own[1], nonlocal_basis_ratio))


@pytest.mark.parametrize("nonlocal_basis_ratio", [1.0, 0.5])
def test_tau_one_gives_beta_exactly(nonlocal_basis_ratio, generator):
    attention = make_attention(nonlocal_basis_ratio=nonlocal_basis_ratio).eval()
    alpha = attention(torch.randn(3, 8, generator=generator))
    assert alpha.shape == (3, 4, 12)
    assert torch.equal(alpha, attention.beta[:, :-1].expand(3, -1, -1))


def test_tau_blends_linearly_between_function_and_beta(generator):
    attention = make_attention().eval()
    pooled = torch.randn(3, 8, generator=generator)
    caf = ATTENTION_FUNCTIONS["caf"](attention.logits(pooled))[..., :-1]
    attention.tau.fill_(0.25)
    torch.testing.assert_close(attention(pooled), 0.75 * caf + 0.25 * attention.beta[:, :-1])


def test_no_blend_ignores_tau_and_beta(generator):
    attention = make_attention(blend=False).eval()
    pooled = torch.randn(3, 8, generator=generator)
    expected = ATTENTION_FUNCTIONS["caf"](attention.logits(pooled))[..., :-1]
    torch.testing.assert_close(attention(pooled), expected)


def test_nonlocal_basis_places_own_logits_at_the_own_slice(generator):
    """Own cells come straight from fc2; the others come from the basis map (zeroed here), so only they vary."""
    attention = make_attention(nonlocal_basis_ratio=0.5).eval()
    assert attention.num_basis == 16  # max(int(8 * 0.5), 16)
    with torch.no_grad():
        attention.basis.weight.zero_()
        attention.basis_bias.copy_(torch.randn(attention.basis_bias.shape, generator=generator))
    logits = attention.logits(torch.randn(2, 8, generator=generator))
    assert logits.shape == (2, 4, 13)
    others = torch.cat([logits[..., :3], logits[..., 7:12]], dim=-1)
    torch.testing.assert_close(others, torch.cat([attention.basis_bias[:, :3], attention.basis_bias[:, 7:12]], -1)
                               .expand(2, -1, -1))
    assert (logits[..., 3:7] != attention.basis_bias[:, 3:7]).all()


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("nonlocal_basis_ratio", [1.0, 0.5, 0.0625])
def test_planner_prices_the_attention_exactly(layer_norm, nonlocal_basis_ratio):
    attention = make_attention(layer_norm=layer_norm, nonlocal_basis_ratio=nonlocal_basis_ratio, cells=40, own=(8, 6))
    expected = attention_params(8, 4, 40, 6, 16, layer_norm, nonlocal_basis_ratio)
    assert sum(p.numel() for p in attention.parameters()) == expected


def test_batchnorm_any_batch_uses_running_statistics_for_one_sample(generator):
    norm = BatchNorm1dAnyBatch(4).train()
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(4, generator=generator))
        norm.running_var.copy_(torch.rand(4, generator=generator) + 0.5)
    before = norm.running_mean.clone()
    x = torch.randn(1, 4, generator=generator)
    expected = (x - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    torch.testing.assert_close(norm(x), expected)
    assert torch.equal(norm.running_mean, before)  # a single sample does not move the statistics
    batch = torch.randn(5, 4, generator=generator)
    torch.testing.assert_close(norm(batch), F.batch_norm(batch, None, None, training=True))
