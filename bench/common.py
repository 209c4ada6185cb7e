"""What every benchmark records about the machine it ran on."""
from __future__ import annotations

import os
import platform

import torch


def machine() -> dict:
    """CPU model (and GPU, if any), cores, torch, and the load average at the start."""
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "gpu": gpu, "cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.is_available(), "loadavg_at_start": os.getloadavg()}


def write(report: dict, markdown: str, out, name: str) -> None:
    """``out/name.json`` (every figure) and ``out/name.md`` (the summary), then the summary printed."""
    import json
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
