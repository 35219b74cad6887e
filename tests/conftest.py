import os

import pytest
import torch

# GENZOO_TEST_THREADS=1 keeps tests from spin-waiting against another job on a small machine
torch.set_num_threads(int(os.environ.get("GENZOO_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch):
    # tqdm's monitor thread outlives tests; keep runs quiet and thread-free
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny models: a second thread only adds hand-offs to their thousands of small
    ops, and on a busy 2-core machine its spin-waits made such tests up to 60x slower (autoregressive sampling at
    3x32x32, a diffusion training run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
