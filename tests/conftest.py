"""Shared test setup: small thread counts (the suite runs as 2 pytest-xdist workers on 2
cores) and deterministic seeds."""

import os

import pytest
import torch

os.environ.setdefault("MINILDM_QUICK", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
