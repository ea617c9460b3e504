"""Checks for a CUDA machine (marker `gpu`; skipped without CUDA): every fast path of the KW and dynamic-convolution
layers on CUDA in fp32 and bf16 against the float64 reference on the CPU, small models compiled by torch.compile
(and with CUDA graphs, mode 'reduce-overhead') against eager, a one-epoch trial with bf16, channels_last and
torch.compile, and a two-worker DDP trial (nccl) when two GPUs are there.

Run by scripts/gpu-check.sh, which also times `kwlab bench` on the GPU.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import nn

from kwlab import store
from kwlab.methods import build_model
from kwlab.methods.temperature import set_temperature
from kwlab.train import TrainConfig, run
from kwlab.train.compiling import compile_model
from kwlab.train.distributed import Distributed
from methods.test_mixing import CASES, DENSE_PATHS, paths_for
from methods.test_mixing import run as forward_backward
from methods.test_mixing_dynamic import CASES as DYNAMIC_CASES
from methods.test_mixing_dynamic import make, paths_of
from methods.test_mixing_dynamic import run as dynamic_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

# relative error of outputs and gradients (norm of the difference over the norm of the float64 reference): fp32
# kernels (TF32 off) agree to round-off; bf16 autocast keeps 8 significant bits
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


def relative_error(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.fixture(autouse=True)
def _no_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("path", [*DENSE_PATHS, "combined", "shared"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_kw_fast_paths_on_cuda_match_the_float64_reference(name: str, path: str, dtype: torch.dtype) -> None:
    case = CASES[name]
    if path != "shared" and path not in paths_for(case):
        pytest.skip("path not taken for this geometry")
    layer, warehouse = case.build()
    if path == "shared":
        layer.attention.tau.fill_(1.0)
    x = torch.randn(case.input, dtype=torch.float64)
    layer.path = "reference"
    expected, expected_grads, grad = forward_backward(layer, warehouse, x)
    gpu_layer, gpu_warehouse = copy.deepcopy(layer), copy.deepcopy(warehouse)
    object.__setattr__(gpu_layer, "warehouse", gpu_warehouse)
    gpu_layer.float().cuda()
    gpu_warehouse.float().cuda()
    if path == "shared":
        from kwlab.methods.temperature import set_temperature

        set_temperature(gpu_layer, 1.0)
    gpu_layer.path = path
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out, grads, _ = forward_backward(gpu_layer, gpu_warehouse, x.float().cuda(), grad.float().cuda())
    assert relative_error(out, expected) < TOLERANCE[dtype]
    for got, want in zip(grads, expected_grads, strict=True):
        assert relative_error(got, want) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("method", "settings"), [("condconv", {"experts": 4}), ("dyconv", {"kernels": 4}),
                                                  ("odconv", {"kernels": 1}), ("odconv", {"kernels": 4})])
def test_dynamic_convolutions_on_cuda_match_the_float64_cpu_model(method: str, settings: dict,
                                                                  dtype: torch.dtype) -> None:
    """A whole small model converted by each method: its CUDA forward and backward (every layer on the path it
    picks for CUDA) against the same model in float64 on the CPU."""
    torch.manual_seed(0)
    cpu = build_model("cifar_resnet8", method, settings, num_classes=10, in_chans=3, width=0.5).double().train()
    gpu = copy.deepcopy(cpu).float().cuda()
    x = torch.randn(8, 3, 16, 16, dtype=torch.float64)
    expected = cpu(x)
    expected.square().mean().backward()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = gpu(x.float().cuda())
    out.float().square().mean().backward()
    assert relative_error(out, expected) < TOLERANCE[dtype]
    for (name, p_cpu), (_, p_gpu) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        assert relative_error(p_gpu.grad, p_cpu.grad) < 5 * TOLERANCE[dtype], name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("memory", ["fast", "lean"])
@pytest.mark.parametrize("kind", ["condconv", "dyconv", "odconv1", "odconv3"])
@pytest.mark.parametrize("case", ["3x3-stride", "1x1", "depthwise"])
def test_every_dynamic_path_on_cuda_matches_the_float64_reference(case: str, kind: str, memory: str,
                                                                   dtype: torch.dtype) -> None:
    """Each path of the mixing engine a dynamic convolution can take (grouped, batched, mixed; shared for ODConv's
    1x1 single-kernel layers), in both memory modes, on CUDA against the float64 reference path on the CPU."""
    torch.manual_seed(0)
    layer = make(kind, DYNAMIC_CASES[case], bias=case == "1x1")
    x = torch.randn(DYNAMIC_CASES[case].input, dtype=torch.float64)
    expected, expected_grads = dynamic_run(layer, x, "reference")
    gpu = copy.deepcopy(layer).float().cuda()
    gpu.memory = memory
    for path in paths_of(layer):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out, grads = dynamic_run(gpu, x.float().cuda(), path)
        assert relative_error(out, expected) < TOLERANCE[dtype], path
        for name, grad in expected_grads.items():
            assert relative_error(grads[name], grad) < 5 * TOLERANCE[dtype], (path, name)


COMPILED = [("kw", {"budget": 1}), ("condconv", {"experts": 4}), ("dyconv", {"kernels": 4}),
            ("odconv", {"kernels": 4})]


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
@pytest.mark.parametrize(("method", "settings"), COMPILED, ids=[m for m, _ in COMPILED])
def test_compiled_model_on_cuda_matches_eager(method: str, settings: dict, mode: str) -> None:
    """A small model compiled (Inductor's Triton kernels; 'reduce-overhead' adds CUDA graphs, the shapes being
    static): three training steps give eager's outputs and gradients (fp32, TF32 off)."""
    torch.manual_seed(0)
    eager = build_model("cifar_resnet8", method, settings, num_classes=10, in_chans=3, width=0.5).cuda().train()
    set_temperature(eager, 0.5)  # attentions that depend on the sample
    twin = copy.deepcopy(eager)
    compiled = compile_model(twin, None if mode == "default" else mode)
    for step in range(3):
        x = torch.randn(16, 3, 16, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(step))
        expected = eager(x)
        expected.square().mean().backward()
        out = compiled(x)
        out.square().mean().backward()
        assert relative_error(out, expected) < 1e-4, step
        for (name, a), b in zip(eager.named_parameters(), twin.parameters(), strict=True):
            assert relative_error(b.grad, a.grad) < 1e-3, (step, name)
        eager.zero_grad(set_to_none=True)
        twin.zero_grad(set_to_none=True)


def test_one_epoch_trial_with_bf16_channels_last_and_compile(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict({
        "data": {"name": "digits", "train_size": 600}, "epochs": 1, "optim": {"warmup_epochs": 0},
        "runtime": {"device": "cuda", "precision": "bf16", "channels_last": True, "compile": True},
    })
    history = list(run(cfg, tmp_path))
    summary = store.TrialDir(tmp_path).summary()
    assert len(history) == 1 and summary["device"].startswith("cuda")
    assert all(torch.isfinite(torch.tensor(v)) for k, v in history[0].items() if isinstance(v, float))
    assert 0 <= summary["test_top1"] <= 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, trial_dir: str, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch_dist.init_process_group("nccl", rank=rank, world_size=2)
    try:
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
        dist = Distributed(rank, 2, lambda m: nn.parallel.DistributedDataParallel(m, device_ids=[rank]), device)
        cfg = TrainConfig.from_dict({**DDP_CONFIG, "runtime": {**DDP_CONFIG["runtime"], "sync_bn": True}})
        Path(results, f"rank{rank}.json").write_text(json.dumps(list(run(cfg, trial_dir, dist=dist))))
    finally:
        torch_dist.destroy_process_group()


DDP_CONFIG = {"data": {"name": "digits", "train_size": 640}, "epochs": 2, "batch_size": 64,
              "optim": {"warmup_epochs": 0}, "temperature": {"fraction": 1.0},
              "runtime": {"device": "cuda", "precision": "fp32", "channels_last": False}}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_worker_ddp_trial_on_two_gpus(tmp_path: Path) -> None:
    single = list(run(TrainConfig.from_dict(DDP_CONFIG), tmp_path / "one"))
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path / "two"), str(tmp_path)), nprocs=2, join=True)
    two = json.loads((tmp_path / "rank0.json").read_text())
    assert two[0]["train_loss"] == pytest.approx(single[0]["train_loss"], rel=1e-3)  # TF32 and nccl reductions
    assert store.TrialDir(tmp_path / "two").summary()["workers"] == 2
