"""Helpers for tests: compose a config, run the CLI, read a run dir's metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compose(overrides: list[str] | None = None):
    """The config `python -m vlexp <overrides>` would run (Hydra's compose API, no model)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vlexp.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides or [])


def run_cli(*args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m vlexp ARGS` in a fresh interpreter, as a user would; capture output."""
    return subprocess.run(
        [sys.executable, "-m", "vlexp", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_metrics(run_dir: Path) -> list[dict]:
    """The training log rows of a run dir's metrics.jsonl (the final summary row excluded)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    return [row for row in rows if "train_runtime" not in row]


def build_trainer(overrides: list[str], run_dir: Path, **trainer_kwargs):
    """(trainer, cfg): `python -m vlexp <overrides>` up to the built trainer, through the one
    builder the command uses (vlexp.recipe.run.build), without training."""
    from vlexp.recipe.run import build
    from vlexp.validate import validate

    cfg = compose(overrides)
    validate(cfg)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return build(cfg, Path(run_dir), **trainer_kwargs).trainer, cfg


def tiny_preset(family: str) -> str:
    """The conf/model file of a family's tiny build (its name_or_path is tiny://<family>)."""
    for path in sorted((REPO / "conf" / "model").glob("*.yaml")):
        if f"name_or_path: tiny://{family}\n" in path.read_text():
            return path.stem
    raise AssertionError(f"no conf/model file builds tiny://{family}: add conf/model/tiny_{family}")


def tiny_families(video: bool | None = None, default: bool = True) -> list[str]:
    """Names of the families with a tiny build, read from the family table (a new row is
    covered without editing a list): `video` keeps those that take videos (True) or not
    (False); `default=False` leaves out the default model's family (`model: tiny`), which
    the rest of the suite runs everywhere."""
    from vlexp.families import FAMILIES

    skip = _default_tiny_family() if not default else None
    return [
        f.name
        for f in FAMILIES.values()
        if f.tiny and f.name != skip and (video is None or f.video == video)
    ]


def _default_tiny_family() -> str:
    text = (REPO / "conf" / "model" / "tiny.yaml").read_text()
    return text.split("name_or_path: tiny://", 1)[1].split()[0]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a torch.distributed rendezvous (MASTER_PORT)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
