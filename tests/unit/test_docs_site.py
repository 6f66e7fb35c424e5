"""The manual under docs/ builds as a site with `mkdocs build --strict`: a link to a missing
page or anchor, or a page left out of mkdocs.yml's nav, fails the build (mkdocs.yml's
`validation` makes each a warning, --strict an error)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def test_the_site_tools_are_installed():
    """mkdocs and its theme come with the dev extra (.ci/run installs it): never skipped."""
    import importlib.util

    missing = [name for name in ("mkdocs", "material") if not importlib.util.find_spec(name)]
    assert not missing, f"{missing} missing: pip install -e '.[dev]' (mkdocs, mkdocs-material)"


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of the site whose mkdocs.yml lies in `root`, into `site`."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_manual_builds_strict(tmp_path):
    result = build(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "correctness" / "index.html").is_file()


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    return root


@pytest.mark.parametrize(
    "link",
    ["[gone](no-such-page.md)", "[gone](models.md#no-such-heading)", "[gone](#no-such-heading)"],
)
def test_a_broken_internal_link_fails_the_build(tmp_path, link):
    root = _copy(tmp_path)
    page = root / "docs" / "quickstart.md"
    page.write_text(page.read_text() + f"\nSee {link}.\n")
    result = build(root, tmp_path / "site")
    assert result.returncode != 0, f"{link} built without an error"
    assert "no-such" in result.stdout + result.stderr


def test_a_page_missing_from_the_nav_fails_the_build(tmp_path):
    root = _copy(tmp_path)
    (root / "docs" / "orphan.md").write_text("# Orphan\n")
    assert build(root, tmp_path / "site").returncode != 0
