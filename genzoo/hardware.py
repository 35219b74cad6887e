"""What the machine computes natively: the CPU's model and bfloat16 support, a CUDA device's bf16.

bfloat16 autocast pays only where the hardware has bf16 arithmetic: on a CPU with avx512_bf16 or
AMX-BF16 a training step runs 1.1-2.4x faster than fp32 (bench/throughput.py on an AMD EPYC), on an
AVX-512 CPU without them 1.2-2.6x slower (an Intel Xeon). ``bf16: auto`` asks ``native_bf16`` once per run.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16")     # CPU features with native bfloat16 arithmetic


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """{"model": str, "avx512_bf16": bool, "amx_bf16": bool, "source": where the flags were read}.

    The flags come from torch's own CPU capability query where this torch has one (2.8 and newer), else from
    /proc/cpuinfo; an unknown CPU is not assumed to compute bf16."""
    fields = {}
    for line in _read("/proc/cpuinfo").splitlines():   # the first processor's entries
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else None
    if caps is not None:
        have, source = {f for f in BF16_FLAGS if caps.get(f)}, "torch.cpu.get_capabilities"
    elif "flags" in fields:
        have, source = set(fields["flags"].split()) & set(BF16_FLAGS), "/proc/cpuinfo"
    else:
        have, source = set(), "unknown"
    model = fields.get("model name") or (caps or {}).get("cpu_name") or platform.processor() or platform.machine()
    return {"model": model, **{f: f in have for f in BF16_FLAGS}, "source": source}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def describe_cpu() -> str:
    """One line naming the CPU and its bf16 flags, e.g. 'AMD EPYC (avx512_bf16)' or 'Intel Xeon (no bf16 flags)'."""
    info = cpu_info()
    flags = [f for f in BF16_FLAGS if info[f]]
    return f"{info['model']} ({', '.join(flags) if flags else 'no bf16 flags'})"


def machine() -> str:
    """The machine a figure was measured on, e.g. '2-core AMD EPYC (avx512_bf16), torch 2.13.0+cpu, 2 threads'."""
    return f"{os.cpu_count()}-core {describe_cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def native_bf16(device: str | torch.device) -> tuple[bool, str]:
    """(whether ``device`` computes bfloat16 natively, the reason in words)."""
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'reports' if ok else 'does not report'} bf16 support"
    if device.type == "cpu":
        info = cpu_info()
        flags = [f for f in BF16_FLAGS if info[f]]
        if flags:
            return True, f"the CPU ({info['model']}) has {' and '.join(flags)}"
        return False, f"the CPU ({info['model']}) has neither avx512_bf16 nor amx_bf16"
    return False, f"bf16 support of {device.type} devices is not known"


def resolve_bf16(setting: bool | str, device: str | torch.device) -> tuple[bool, str]:
    """The training config's ``bf16`` (true, false or "auto") as a bool for ``device``, with the reason."""
    if setting == "auto":
        ok, why = native_bf16(device)
        return ok, f"auto: {why}"
    return bool(setting), "set in the config"
