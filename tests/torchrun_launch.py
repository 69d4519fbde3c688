"""Spawning ``torchrun --standalone`` on a worker script from a test (gloo, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def run_torchrun(worker: Path, *args: str, nproc: int = 2, timeout: float = 300) -> None:
    """Run ``worker`` on ``nproc`` ranks with one thread each; fail with both streams.

    The package is found through ``PYTHONPATH`` (the source tree first), so the workers run
    the code under test whether or not it is installed.
    """
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = (
        [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [*launcher, "--standalone", f"--nproc_per_node={nproc}", str(worker), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"torchrun failed ({proc.returncode}):\nstdout:\n{proc.stdout[-4000:]}\n"
        f"stderr:\n{proc.stderr[-8000:]}"
    )
