"""bf16: auto resolves by what the device computes natively, the run records the resolved value and keeps it."""
import json

import pytest
import torch

from genzoo import hardware
from genzoo.cli import main
from genzoo.config import TrainConfig
from helpers import tiny_args


def _fake_cpu(monkeypatch, **flags):
    info = {"model": "Test CPU", "avx512_bf16": False, "amx_bf16": False, "source": "test", **flags}
    monkeypatch.setattr(hardware, "cpu_info", lambda: info)


@pytest.mark.parametrize("flags,want", [({}, False), ({"avx512_bf16": True}, True), ({"amx_bf16": True}, True)])
def test_auto_follows_the_cpu_flags(monkeypatch, flags, want):
    _fake_cpu(monkeypatch, **flags)
    ok, why = hardware.resolve_bf16("auto", "cpu")
    assert ok is want and "Test CPU" in why
    # an explicit setting wins over the hardware either way
    assert hardware.resolve_bf16(True, "cpu")[0] is True and hardware.resolve_bf16(False, "cpu")[0] is False


def test_cuda_follows_the_device_report(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    for reported in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: reported)
        assert hardware.native_bf16("cuda") == (reported, f"Test GPU {'reports' if reported else 'does not report'}"
                                                          " bf16 support")


def test_cpu_info_reads_the_flags_of_this_machine_consistently():
    info = hardware.cpu_info()
    assert info["model"] and set(hardware.BF16_FLAGS) <= set(info)
    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split()
    for f in hardware.BF16_FLAGS:          # torch's query and the kernel's flags agree
        assert info[f] == (f in flags), f


def test_bf16_defaults_to_auto_and_refuses_other_values():
    assert TrainConfig().bf16 == "auto"
    for bad in (3, "yes", 1, None):
        with pytest.raises(ValueError, match="bf16 must be true, false or auto"):
            TrainConfig(bf16=bad)


@pytest.mark.parametrize("flags,want", [({}, False), ({"avx512_bf16": True}, True)])
def test_the_run_records_the_resolved_value_and_resume_keeps_it(monkeypatch, tmp_path, capsys, flags, want):
    _fake_cpu(monkeypatch, **flags)
    run = tmp_path / "run"
    argv = ["train", "vae", "--data", "digits", "--steps", "3", "--out", str(run), "--no-progress",
            "--set", "batch_size=32", *tiny_args("vae")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"bf16 autocast: {'on' if want else 'off'} (auto: the CPU (Test CPU) has" in err
    assert json.loads((run / "config.json").read_text())["train"]["bf16"] is want
    _fake_cpu(monkeypatch, avx512_bf16=not want)          # another machine resumes it: the run keeps its value
    assert main([*argv[:5], "6", *argv[6:], "--resume"]) == 0
    assert f"bf16 autocast: {'on' if want else 'off'} (set in the config)" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["train"]["bf16"] is want
