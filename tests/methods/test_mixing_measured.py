"""The measured path choice: candidates timed once per layer shape, the fastest kept; a measured layer computes what
the cost model's computes and leaves the model's state (gradients, BatchNorm statistics, random streams) alone."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from kwlab.methods import build_model, mixing, path_layers, set_paths, training_paths
from kwlab.methods.mixing import measured


@pytest.fixture(autouse=True)
def _fresh_measurements():
    mixing.forget_measurements()
    yield
    mixing.forget_measurements()


def test_the_fastest_timed_candidate_wins_once_per_key_and_far_costlier_ones_are_not_timed() -> None:
    calls: list[str] = []

    def trial(path: str) -> None:
        calls.append(path)
        if path == "grouped":  # the model's favourite is the slow one on this "machine"
            time.sleep(0.03)

    modelled = {"grouped": 1.0, "batched": 2.0, "mixed": measured.WITHIN * 1.5}
    cpu = torch.device("cpu")
    assert measured.fastest_path("layer A", modelled, trial, cpu) == "batched"
    assert sorted(set(calls)) == ["batched", "grouped"]  # mixed is modelled beyond WITHIN x the cheapest
    assert calls.count("grouped") == calls.count("batched") == 1 + measured.REPEATS
    timed = len(calls)
    assert measured.fastest_path("layer A", modelled, trial, cpu) == "batched" and len(calls) == timed  # kept
    assert mixing.measured_choices() == {"layer A": "batched"}
    measured.fastest_path("layer B", modelled, trial, cpu)  # another shape is timed on its own
    assert len(calls) == 2 * timed
    assert measured.fastest_path("layer C", {"grouped": 0.0}, trial, cpu) == "grouped"  # one candidate: no timing
    assert len(calls) == 2 * timed


def test_auto_and_measured_resolve_as_documented() -> None:
    modelled = {"grouped": 3.0, "mixed": 1.0}
    assert mixing.resolve_path("auto", lambda: modelled) == "mixed"
    assert mixing.resolve_path("measured", lambda: modelled) == "mixed"  # nothing to time: the model's choice
    assert mixing.resolve_path("grouped", lambda: modelled) == "grouped"
    with pytest.raises(ValueError, match="'fastest' is not one of"):
        mixing.resolve_path("fastest", lambda: modelled)


METHODS = [("kw", {"budget": "1"}), ("kw", {"budget": "4"}), ("condconv", {"experts": 4}),
           ("dyconv", {"kernels": 4}), ("odconv", {"kernels": 1}), ("odconv", {"kernels": 4})]


@pytest.mark.parametrize(("method", "settings"), METHODS, ids=[f"{m}-{next(iter(s.values()))}" for m, s in METHODS])
def test_a_measured_model_trains_like_the_modelled_one_and_touches_nothing(method: str, settings: dict) -> None:
    """The same step with 'auto' and 'measured': equal outputs and gradients (float tolerance: the paths may
    differ), and the timing leaves no gradient, BatchNorm statistic or random draw behind."""
    torch.manual_seed(0)
    model = build_model("cifar_resnet8", method, settings, in_chans=1, num_classes=10).train()
    twin = copy.deepcopy(model)
    set_paths(twin, "measured")
    x = torch.randn(8, 1, 8, 8)
    torch.manual_seed(1)
    out = model(x)
    out.square().sum().backward()
    rng = torch.get_rng_state()
    torch.manual_seed(1)
    twin_out = twin(x)
    twin_out.square().sum().backward()
    assert torch.equal(torch.get_rng_state(), rng)  # the trials drew no random numbers
    assert mixing.measured_choices()  # something was measured
    torch.testing.assert_close(twin_out, out, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)  # no trial added to .grad
    for (name, a), b in zip(model.named_buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)  # BatchNorm ran once per forward
    layers = path_layers(twin)
    assert layers and sum(training_paths(twin).values()) == len(layers)
    assert set(training_paths(twin)) <= set(mixing.RUNNABLE)


def test_under_no_grad_the_forward_alone_is_timed_and_kept_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model("cifar_resnet8", "kw", {"budget": "1"}, in_chans=1, num_classes=10).eval()
    set_paths(model, "measured")
    grads: list[bool] = []
    real = mixing.engine_trial

    def spy(forward, inputs):
        grads.append(torch.is_grad_enabled())
        real(forward, inputs)

    monkeypatch.setattr(measured, "engine_trial", spy)
    monkeypatch.setattr("kwlab.methods.kw.layers.mixing.engine_trial", spy)
    with torch.no_grad():
        model(torch.randn(4, 1, 8, 8))
    assert grads and not any(grads)
    keys = list(mixing.measured_choices())
    assert keys and not any(key[-1] for key in keys)  # keyed as forward-only
    assert training_paths(model) == {}  # no forward under autograd yet


def test_set_paths_refuses_an_unknown_choice() -> None:
    model = build_model("cifar_resnet8", "dyconv", {"kernels": 2}, in_chans=1)
    with pytest.raises(ValueError, match="'fast' is not one of"):
        set_paths(model, "fast")
    assert all(layer.path == "auto" for layer in path_layers(model))
    assert path_layers(nn.Sequential(nn.Conv2d(1, 1, 3))) == []


def test_exported_choices_replay_in_a_fresh_model_without_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Measure in one model, export (JSON-ready strings), forget, load: a fresh model of the same variant takes the
    same paths without timing anything."""
    import json

    torch.manual_seed(0)
    model = build_model("cifar_resnet8", "dyconv", {"kernels": 4}, in_chans=1, num_classes=10).train()
    set_paths(model, "measured")
    x = torch.randn(8, 1, 8, 8)
    model(x).sum().backward()
    taken = {name: layer.training_path for name, layer in model.named_modules() if layer in path_layers(model)}
    exported = json.loads(json.dumps(mixing.export_measurements()))
    assert exported and all(isinstance(k, str) and v in mixing.RUNNABLE for k, v in exported.items())
    assert any("DyConv2d" in key and "(8, 16, 8, 8)" in key and key.endswith("|cpu|contiguous|grad")
               for key in exported)

    mixing.forget_measurements()
    mixing.load_measurements(exported)

    def no_timing(*args, **kwargs):
        raise AssertionError("a loaded choice was timed again")

    monkeypatch.setattr(measured, "timed", no_timing)
    fresh = build_model("cifar_resnet8", "dyconv", {"kernels": 4}, in_chans=1, num_classes=10).train()
    set_paths(fresh, "measured")
    fresh(x).sum().backward()
    assert {name: layer.training_path for name, layer in fresh.named_modules()
            if layer in path_layers(fresh)} == taken
    assert mixing.export_measurements() == exported


def test_loading_refuses_an_unknown_path() -> None:
    with pytest.raises(ValueError, match="fastest is not a path"):
        mixing.load_measurements({"some layer": "fastest"})
