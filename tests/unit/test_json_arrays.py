"""JSON-array data files (LLaMA-Factory, Qwen-VL, VLM-R1 ship these): every element named by
the line it starts on, in time linear in the file (it was quadratic: 80,000 rows, 201 s)."""

from __future__ import annotations

import json

from vlexp.data.sources import _element_lines, rows_of

ROWS = 50_000  # quadratic line counting took minutes here; linear takes well under a second


def _write_array(path, count: int) -> tuple[list[int], set[int]]:
    """A JSON array of `count` elements in mixed layouts (one line, indented over several
    lines, several on one line, CRLF endings); returns the line each element starts on,
    counted while writing, and the indices of the elements that are not objects."""
    lines, starts, not_objects = ["["], [], set()
    index = 0
    while index < count:
        row = {"problem": f"q{index}", "solution": str(index)}
        layout = index % 4
        if index % 997 == 0:
            not_objects.add(index)
            starts.append(len(lines) + 1)
            lines.append(json.dumps([index]) + ",")
        elif layout == 0:
            starts.append(len(lines) + 1)
            lines.append("  " + json.dumps(row) + ",")
        elif layout == 1:
            starts.append(len(lines) + 1)
            lines.extend((json.dumps(row, indent=2) + ",").splitlines())
        elif layout == 2 and index + 1 < count and (index + 1) % 997:
            starts += [len(lines) + 1] * 2
            other = {"problem": f"q{index + 1}", "solution": str(index + 1)}
            lines.append(f"{json.dumps(row)}, {json.dumps(other)},")
            index += 1
        else:
            starts.append(len(lines) + 1)
            lines.append(json.dumps(row) + ",\r")
        index += 1
    lines[-1] = lines[-1].rstrip("\r").removesuffix(",")
    path.write_text("\n".join([*lines, "]", ""]), encoding="utf-8", newline="")
    return starts, not_objects


def test_every_element_of_a_large_array_is_named_by_the_line_it_starts_on(tmp_path):
    path = tmp_path / "train.json"
    starts, not_objects = _write_array(path, ROWS)
    rows = list(rows_of(path))
    assert len(rows) == ROWS
    assert [source for source, _, _ in rows] == [f"{path}:{line}" for line in starts]
    bad = {index for index, (_, _, problem) in enumerate(rows) if problem is not None}
    assert bad == not_objects
    assert rows[5][1] == {"problem": "q5", "solution": "5"}


class ScanCountingText(str):
    """A str that counts the characters its search methods look at (the line finder's work)."""

    scanned = 0

    def _span(self, start, end) -> int:
        start, end, _ = slice(start, end).indices(len(self))
        return max(0, end - start)

    def count(self, sub, start=None, end=None):
        ScanCountingText.scanned += self._span(start, end)
        return super().count(sub, start, end)

    def find(self, sub, start=None, end=None):
        found = super().find(sub, start, end)
        stop = found + len(sub) if found >= 0 else None
        ScanCountingText.scanned += self._span(start, end if found < 0 else stop)
        return found

    def index(self, sub, start=None, end=None):
        found = super().index(sub, start, end)
        ScanCountingText.scanned += self._span(start, found + len(sub))
        return found

    def splitlines(self, keepends=False):
        ScanCountingText.scanned += len(self)
        return super().splitlines(keepends)


def test_the_line_of_each_element_is_found_in_one_pass_over_the_text(tmp_path):
    """The work, not the time: the characters searched for line breaks stay within twice the
    file's length (counting from the start for every element searched it 50,000 times)."""
    path = tmp_path / "train.json"
    starts, _ = _write_array(path, ROWS)
    text = ScanCountingText(path.read_text(encoding="utf-8"))
    ScanCountingText.scanned = 0
    assert _element_lines(text) == starts
    assert ScanCountingText.scanned <= 2 * len(text)
