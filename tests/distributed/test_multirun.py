"""`-m` sweep x 2 processes: each job is its own process group with its own run dir."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.distributed.helpers import TWO_RANKS
from tests.helpers import read_metrics, run_cli


@pytest.mark.slow
def test_sweep_of_two_jobs_with_two_ranks_each(tmp_path, tiny_model):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "algo.args.beta=0.0,0.04",
        *TWO_RANKS,
        "train.max_steps=1",
        f"hydra.sweep.dir={sweep}",
        "hydra.run.dir=/nonexistent/never-used",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Two jobs, two run dirs, nothing else (no per-rank timestamped dirs anywhere).
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]

    for job, beta in (("0", 0.0), ("1", 0.04)):
        run_dir = sweep / job
        resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
        assert resolved["algo"]["args"]["beta"] == beta
        assert resolved["launcher"]["num_processes"] == 2
        # One row per step although two ranks trained: only rank 0 writes metrics.
        rows = read_metrics(run_dir)
        assert [row["step"] for row in rows] == [1]
        assert (run_dir / "final" / "model.safetensors").is_file()

    # Each job started its own 2-rank group on its own rendezvous port.
    launches = re.findall(
        r"--num_processes 2 .*?--main_process_port (\d+)", result.stdout + result.stderr
    )
    assert len(launches) == 2 and len(set(launches)) == 2
    assert (result.stdout + result.stderr).count("vlexp.worker") >= 2
