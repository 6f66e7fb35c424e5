"""Functions that read in one screen: none in src/ is over 60 lines (STYLE.md; issue 26)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "vlexp"
LIMIT = 60
# Functions allowed over the limit, with the reason (none today).
KNOWN: set[str] = set()


def _long_functions(path: Path, where: str) -> list[str]:
    """`where:name (N lines)` for each function or method of `path` over LIMIT lines, from its
    `def` line (decorators apart) to its last line, docstring included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > LIMIT:
                found.append(f"{where}:{node.name} ({lines} lines)")
    return found


def test_no_function_in_src_is_over_60_lines():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(SRC).as_posix()
        found += [f for f in _long_functions(path, where) if f.split(" (")[0] not in KNOWN]
    assert found == [], "split into named steps:\n" + "\n".join(found)


def test_the_scan_counts_a_long_function_and_not_a_short_one(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))  # def line + 60 = 61 lines
    probe = tmp_path / "probe.py"
    probe.write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n", encoding="utf-8")
    assert _long_functions(probe, "probe.py") == [f"probe.py:long ({LIMIT + 1} lines)"]
