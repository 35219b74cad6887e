import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch):
    # tqdm's monitor thread outlives tests; keep runs quiet and thread-free
    monkeypatch.setenv("TQDM_DISABLE", "1")
