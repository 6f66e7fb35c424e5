"""README.md's "What it supports" table is what vlexp ships: scripts/support_table.py builds it
from conf/ and the registries (model families, data format readers), and README.md must show
exactly that, so an algorithm, reward, model, format or preset added without the README fails
here. README.md stays a front door."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.helpers import REPO

# Config groups the table lists, each option by name.
GROUPS = ("algo", "reward", "model", "data", "prompt", "memory", "speed", "launcher", "logger",
          "eval", "hydra/launcher")  # fmt: skip


def _script():
    spec = importlib.util.spec_from_file_location(
        "support_table", REPO / "scripts" / "support_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


support_table = _script()


def test_the_readme_shows_the_table_conf_and_the_registries_make():
    shown, built = support_table.shown(), support_table.build()
    assert shown, "README.md lost the support table's markers"
    assert shown == built, (
        "README.md's support table is stale: python scripts/support_table.py --write"
    )


def test_the_table_names_every_option_family_and_format():
    """Against the registries themselves, not the builder's reading of them."""
    from vlexp.data.formats import FORMATS
    from vlexp.families import FAMILIES
    from vlexp.paths import config_dir

    table = support_table.build()
    names = [p.stem for g in GROUPS for p in (config_dir() / g).glob("*.yaml")]
    names += [*FAMILIES, *FORMATS]
    missing = [name for name in names if f"`{name}`" not in table]
    assert not missing and len(names) > 60, missing


@pytest.mark.parametrize("group", ["algo", "reward", "model", "memory", "launcher"])
def test_a_new_option_without_the_readme_fails(tmp_path, group):
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    template = {"algo": "grpo", "reward": "iou", "model": "tiny", "memory": "zero3",
                "launcher": "local"}[group]  # fmt: skip
    shutil.copy(conf / group / f"{template}.yaml", conf / group / "brand_new.yaml")
    table = support_table.build(conf)
    assert "`brand_new`" in table and table != support_table.shown()


def test_the_readme_counts_the_algorithms_and_stays_short():
    from vlexp.paths import config_dir

    text = (REPO / "README.md").read_text(encoding="utf-8")
    intro = text.split("\n\n", 2)[1]
    count = len(list((config_dir() / "algo").glob("*.yaml")))
    assert f"with {count} algorithms" in " ".join(intro.split()), intro
    assert len(text.splitlines()) <= 300


def test_the_script_rewrites_a_stale_table(tmp_path, monkeypatch):
    """`python scripts/support_table.py --write`, as docs/development.md shows it."""
    readme = tmp_path / "README.md"
    stale = support_table.BEGIN + "\n| what | options | manual |\n" + support_table.END
    readme.write_text(f"# x\n\n{stale}\n\nmore\n")
    monkeypatch.setattr(support_table, "README", readme)
    assert support_table.main(["--check"]) == 1
    assert support_table.main(["--write"]) == 0
    assert support_table.main(["--check"]) == 0
    assert readme.read_text() == f"# x\n\n{support_table.build()}\n\nmore\n"


def test_the_concepts_table_lists_every_option_of_each_group():
    """docs/concepts.md's table of config groups names each group's options: all of them."""
    import re

    from tests.readme import page
    from vlexp.paths import config_dir

    rows = re.findall(r"^\| `(\w+)`\s*\| (.*?) \|", page("concepts"), re.M)
    checked = 0
    for group, cell in rows:
        if (config_dir() / group).is_dir():
            options = {p.stem for p in (config_dir() / group).glob("*.yaml")}
            assert set(re.findall(r"`(\w+)`", cell)) == options, group
            checked += 1
    assert checked >= 9, rows
