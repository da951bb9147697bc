"""Shared fixtures and helpers of the test suite."""
import numpy as np
import pytest
import torch

CUDA = torch.cuda.is_available()


@pytest.fixture(params=['cpu'] + (['cuda'] if CUDA else []))  # the CPU path always runs; CUDA where there is one
def device(request):
    return torch.device(request.param)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed=0, dtype=torch.float64, lo=0., hi=1.):
    "Uniform [lo, hi) on CPU from a private generator (device-independent values)."
    return lo + (hi - lo) * torch.rand(*shape, generator=gen(seed), dtype=dtype)


def np_(t):
    "A tensor as a float64 NumPy array."
    return t.detach().cpu().numpy().astype(np.float64)
