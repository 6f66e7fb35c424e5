"""An installed wheel finds its config groups and presets without a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import REPO

pytest.importorskip("hatchling", reason="the dev extra installs hatchling to build the wheel")


def test_wheel_ships_conf_experiments_and_the_search_path_plugin(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("vlexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vlexp/conf/config.yaml", "vlexp/conf/algo/grpo.yaml"} <= names
    assert "vlexp/experiments/shapes_grpo.yaml" in names
    assert "hydra_plugins/vlexp_searchpath/__init__.py" in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Run from an unrelated folder with only the unpacked wheel first on the path.
    result = subprocess.run(
        [sys.executable, "-m", "vlexp", "experiment=shapes_grpo", "--cfg", "job"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "max_steps: 300" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import vlexp.paths as p; print(p.config_dir())"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == str(site / "vlexp" / "conf")
