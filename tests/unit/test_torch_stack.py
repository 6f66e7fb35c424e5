"""A torch and a torchvision that do not match stop a run at start-up with one line naming
both versions and the pip command that fixes it, not 60 lines about `TrainerCallback`."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
from vlexp.recipe import stops
from vlexp.validate import torch_stack

# Rows of the compatibility table in pytorch/vision's README ("Installation"): torch, torchvision.
COMPATIBLE = [("2.0.1", "0.15.2"), ("2.5.1", "0.20.1"), ("2.8.0", "0.23.0"), ("2.9.0", "0.24.0")]
# What torch raises when torchvision's `_meta_registrations.py` (0.16-0.21) runs
# `@torch.library.register_fake("torchvision::nms")` and torchvision's C++ operators were
# built for another torch: reproduced below by the same call in a process without them.
FAKE_TORCHVISION = """
import torch

@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    return dets
"""


@pytest.mark.parametrize(("torch_version", "vision_version"), COMPATIBLE)
def test_the_compatibility_table_matches(torch_version, vision_version):
    assert torch_stack.mismatch(torch_version, vision_version) is None
    assert torch_stack.mismatch(f"{torch_version}+cpu", f"{vision_version}+cpu") is None
    assert torch_stack.mismatch(f"{torch_version}+cu126", f"{vision_version}+cu128") is None


@pytest.mark.parametrize(
    ("torch_version", "vision_version", "why", "command"),
    [
        ("2.15.0+cpu", "0.29.1+cu130", "torchvision 0.29 is built for torch 2.14, torch 2.15 "
         "needs 0.30", 'pip install "torchvision==0.30.*" --index-url '
         "https://download.pytorch.org/whl/cpu"),
        ("2.14.1+cpu", "0.29.1+cu130", "torch is a cpu build, torchvision a cuda13 build",
         'pip install "torchvision==0.29.*" --index-url https://download.pytorch.org/whl/cpu'),
        ("2.5.1", "0.19.0", "torchvision 0.19 is built for torch 2.4, torch 2.5 needs 0.20",
         'pip install "torchvision==0.20.*"'),
    ],
)  # fmt: skip
def test_a_mismatch_is_one_line_with_versions_and_the_fix(
    monkeypatch, torch_version, vision_version, why, command
):
    versions = {"torch": torch_version, "torchvision": vision_version}
    monkeypatch.setattr(torch_stack, "installed_version", versions.get)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # its import fails, as it would
    line = torch_stack.problem()
    assert line == (
        f"vlexp: torch {torch_version} and torchvision {vision_version} do not match ({why}); "
        f"transformers imports torchvision and would fail: install the torchvision built for "
        f"this torch: {command}"
    )


def test_versions_that_disagree_but_import_are_a_warning(monkeypatch, caplog):
    versions = {"torch": "2.15.0+cu130", "torchvision": "0.29.1+cu130"}
    monkeypatch.setattr(torch_stack, "installed_version", versions.get)
    assert torch_stack.problem() is None  # the real torchvision imports in this process
    assert "torchvision 0.29 is built for torch 2.14" in caplog.text


def test_no_torchvision_is_no_problem(monkeypatch):
    monkeypatch.setattr(torch_stack, "installed_version", {"torch": "2.14.1"}.get)
    assert torch_stack.problem() is None


def test_the_installed_versions_are_read_and_match():
    import torch
    import torchvision

    assert torch_stack.installed_version("torch") == torch.__version__
    assert torch_stack.installed_version("torchvision") == torchvision.__version__
    assert torch_stack.problem() is None


def test_transformers_wrapped_error_is_recognised():
    inner = RuntimeError("operator torchvision::nms does not exist")
    try:
        try:
            raise inner
        except RuntimeError as err:
            raise RuntimeError(
                "Failed to import transformers.trainer_callback because of the following error "
                "(look up to see its traceback):\noperator torchvision::nms does not exist"
            ) from err
    except RuntimeError as wrapped:
        line = stops.message(wrapped)
    assert line is not None and line.startswith("vlexp: torch ") and "pip install" in line
    assert stops.message(RuntimeError("something else")) is None


@pytest.mark.parametrize("vision_version", ["0.20.1+cu124", None])
def test_a_run_with_a_torchvision_built_for_another_torch_stops_at_start(tmp_path, vision_version):
    """A torchvision package first on sys.path whose import raises torch's real error; with an
    older version (the table names the fix) and with torch's own (the error names it)."""
    import torch

    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_TORCHVISION)
    if vision_version:
        (fake / "version.py").write_text(f"__version__ = {vision_version!r}\n")
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlexp",
            "algo=sft",
            "train.max_steps=1",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO / 'src'}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "TrainerCallback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    # Without version.py: the version the installed wheel's metadata records.
    shown = vision_version or importlib.metadata.version("torchvision")
    assert line.startswith(f"vlexp: torch {torch.__version__} and torchvision {shown}"), line
    minor = int(torch.__version__.split(".")[1]) + 15
    assert f'pip install "torchvision==0.{minor}.*"' in line
    if vision_version is None:
        assert "torchvision says: operator torchvision::nms does not exist" in line
    assert not (run_dir / "final").exists()
