"""Where vlexp finds its config groups and keeps its caches (no heavy imports here)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = PACKAGE_DIR.parent.parent


def _shipped_or_checkout(name: str) -> Path:
    # A wheel carries conf/ and experiments/ inside the package; a checkout (editable
    # install) keeps them at the repository root, lightning-hydra-template style.
    shipped = PACKAGE_DIR / name
    return shipped if shipped.is_dir() else _REPO_ROOT / name


def config_dir() -> Path:
    """The directory holding `config.yaml` and the config groups."""
    return _shipped_or_checkout("conf")


def experiments_dir() -> Path:
    """The directory holding the `experiment=NAME` presets."""
    return _shipped_or_checkout("experiments")


def cache_dir() -> Path:
    """Root of vlexp's caches (tiny model, generated data): `$VLEXP_CACHE` or ~/.cache/vlexp."""
    return Path(os.environ.get("VLEXP_CACHE", Path.home() / ".cache" / "vlexp")).expanduser()
