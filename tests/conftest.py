import os

import pytest
import torch

# GENZOO_TEST_THREADS=1 keeps tests from spin-waiting against another job on a small machine
torch.set_num_threads(int(os.environ.get("GENZOO_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch):
    # tqdm's monitor thread outlives tests; keep runs quiet and thread-free
    monkeypatch.setenv("TQDM_DISABLE", "1")
