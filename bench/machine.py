"""The machine description every benchmark result carries (so numbers are never context-free)."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def describe() -> dict:
    """Host, CPU, memory, GPU (if any) and the versions of the libraries vlexp drives."""
    info = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "packages": {
            name: _version(name)
            for name in (
                "vlexp",
                "torch",
                "transformers",
                "trl",
                "peft",
                "accelerate",
                "deepspeed",
                "flash-attn",
                "liger-kernel",
                "vllm",
            )
        },
    }
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {
                "name": props.name,
                "count": torch.cuda.device_count(),
                "mem_gib": round(props.total_memory / 1024**3, 1),
                "capability": f"{props.major}.{props.minor}",
                "cuda": torch.version.cuda,
            }
    except ImportError:
        pass
    return info
