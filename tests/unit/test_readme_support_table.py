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
    families = support_table.FAMILY_BEGIN + "\n" + support_table.FAMILY_END
    readme.write_text(f"# x\n\n{stale}\n\n{families}\n\nmore\n")
    monkeypatch.setattr(support_table, "README", readme)
    assert support_table.main(["--check"]) == 1
    assert support_table.main(["--write"]) == 0
    assert support_table.main(["--check"]) == 0
    expected = f"{support_table.build()}\n\n{support_table.family_table()}"
    assert readme.read_text() == f"# x\n\n{expected}\n\nmore\n"


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


def _family_table_problems(table: str) -> list[str]:
    """Families of the table in code without a row, and rows whose video claim contradicts the
    family's own flag (`Family.video`)."""
    import re

    from vlexp.families import FAMILIES

    rows = [r for r in table.splitlines() if r.startswith("| ") and "(`" in r]
    problems = []
    for family in FAMILIES.values():
        row = next((r for r in rows if f"(`{family.name}`)" in r), None)
        if row is None:
            problems.append(f"no row for {family.name}")
            continue
        shared = sum(f"(`{other}`)" in row for other in FAMILIES)
        refuses = bool(re.search(r"without video|video data[^|]*stops? before loading", row))
        if shared == 1 and refuses == family.video:
            problems.append(
                f"{family.name}: the row says video {'is refused' if refuses else 'runs'}"
            )
    return problems


def test_the_readme_family_table_is_the_manuals_and_names_every_family():
    """README.md shows docs/models.md's family table row for row (each family's box frame,
    tokens per image and what runs on its tiny build); every family has its row, and a row
    says video is refused exactly where the family takes none."""
    shown = support_table.shown(begin=support_table.FAMILY_BEGIN, end=support_table.FAMILY_END)
    assert shown == support_table.family_table(), (
        "README.md's family table is stale: python scripts/support_table.py --write"
    )
    assert _family_table_problems(shown) == []


def test_a_missing_row_or_a_wrong_video_claim_is_caught(tmp_path):
    table = support_table.family_table()
    without_gemma = "\n".join(line for line in table.splitlines() if "(`gemma3`)" not in line)
    assert _family_table_problems(without_gemma) == ["no row for gemma3"]
    video_claim = table.replace("the family matrix with video", "the family matrix without video")
    assert _family_table_problems(video_claim) == [
        "llava_onevision1_5: the row says video is refused"
    ]
