"""What every benchmark result under bench/results records: the machine, the versions, the commit, the command."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from avatar.core.atomic import write_json  # noqa: E402


def git_commit() -> str:
    """HEAD's hash, with "-dirty" when tracked files differ from it; "unknown" outside a git checkout."""

    def git(*args: str) -> str:
        try:
            result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        except OSError:
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    """The processor the benchmark ran on: the GPU's name and capability, or the CPU's name and cores."""
    if device.type == "cuda":
        return {
            "gpu": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        }
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count()}


def versions() -> dict:
    try:
        import gsplat

        gsplat_version = gsplat.__version__
    except Exception as error:  # any import failure: record it, do not stop the benchmark
        gsplat_version = f"unavailable ({type(error).__name__})"
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "gsplat": gsplat_version}


def command_line(script: str | Path, argv: list[str] | None = None) -> str:
    """How to run the benchmark again: python, the script relative to the checkout, its arguments."""
    path = Path(script).resolve()
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    arguments = sys.argv[1:] if argv is None else argv
    return " ".join([Path(sys.executable).name, str(shown), *arguments])


def record_header(
    benchmark: str, device: torch.device, script: str | Path, argv: list[str] | None = None
) -> dict:
    """The fields that open every result file; `argv`: the script's arguments (default: this process's)."""
    return {
        "benchmark": benchmark,
        **machine(device),
        **versions(),
        "commit": git_commit(),
        "command": command_line(script, argv),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(out_dir: Path, prefix: str, record: dict) -> Path:
    """Writes `record` atomically to out_dir/<prefix>-<processor>-<UTC time>.json and returns the path."""
    processor = record.get("gpu") or record.get("cpu") or "unknown"
    slug = re.sub(r"[^a-z0-9]+", "-", processor.lower()).strip("-")
    path = Path(out_dir) / f"{prefix}-{slug}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.json"
    write_json(path, record)
    return path
