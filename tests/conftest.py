"""Shared fixtures: deterministic seeding and the plain-loop tiling of a kernel into KernelWarehouse mixtures."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: the tests' tensors are tiny, and on a busy 2-core machine OpenMP's spinning threads made
    the suite 5x slower (measured 200 s vs 37 s for tests/test_convert.py under a load of 4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same global RNG state (model construction draws from it)."""
    torch.manual_seed(0)


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator for test data."""
    return torch.Generator().manual_seed(1234)


def _mixture_tiles(weight_shape: Sequence[int], cell: Sequence[int]) -> list[tuple[slice, ...]]:
    """Index of each cell tile of a kernel, in mixture order (spatial blocks, output block, input block).

    Written from the method text, independently of kwlab.methods.kw.assembly: a cell (c_out, c_in, [ck...]) with fewer dims
    than the kernel is 1 along the missing spatial dims.
    """
    spatial_cell = tuple(cell[2:]) if len(cell) == len(weight_shape) else (1,) * (len(weight_shape) - 2)
    cell = (cell[0], cell[1], *spatial_cell)
    blocks = [range(w // c) for w, c in zip(weight_shape, cell, strict=True)]
    tiles = []
    for *spatial, out_block, in_block in itertools.product(*blocks[2:], blocks[0], blocks[1]):
        starts = (out_block, in_block, *spatial)
        tiles.append(tuple(slice(s * c, (s + 1) * c) for s, c in zip(starts, cell, strict=True)))
    return tiles


@pytest.fixture
def mixture_tiles() -> Callable[[Sequence[int], Sequence[int]], list[tuple[slice, ...]]]:
    """`mixture_tiles(weight_shape, cell)`: the kernel index of mixture i is `mixture_tiles(...)[i]`."""
    return _mixture_tiles
