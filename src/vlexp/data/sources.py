"""Where records come from: a JSONL file, a JSON array, a folder of either, a data set named in
LLaMA-Factory's `dataset_info.json`, or the rows of a `datasets` data set (`data=hf`). Every
source yields `Record`s in vlexp's form (`vlexp.data.formats`), `data.columns` applied first.

Errors name `file:line` (for JSON arrays, the line each element starts on).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vlexp.data.formats import FormatError, llamafactory, normalise
from vlexp.data.messages import hoist_inline_media
from vlexp.data.records import (
    BadRecord,
    DataError,
    DuplicateKey,
    Record,
    lone_surrogate,
    unique_keys,
)

SUFFIXES = (".jsonl", ".json")


def plain(value: Any) -> Any:
    """OmegaConf containers -> plain Python (dicts and lists)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class Reader:
    """Turns raw rows into Records: `data.columns`, `data.format`, the format's reader."""

    def __init__(self, data_cfg: Any = None) -> None:
        data_cfg = data_cfg or {}
        self.columns: dict[str, str] = plain(data_cfg.get("columns")) or {}
        self.format: str | None = data_cfg.get("format")
        if self.format == "auto":
            self.format = None
        self.image_root = data_cfg.get("image_root")
        self.info = data_cfg.get("dataset_info")

    def record(
        self, source: str, fields: dict, image_dir: Path, entry: Any = None
    ) -> Record | BadRecord:
        renamed = {self.columns.get(key, key): value for key, value in fields.items()}
        reader, name = None, self.format
        if entry is not None:  # dataset_info.json says how to read it
            name = "alpaca" if entry.formatting == "alpaca" else "sharegpt"
            read = llamafactory.alpaca if name == "alpaca" else llamafactory.sharegpt
            reader = lambda row: read(row, entry)  # noqa: E731
        try:
            converted, name = normalise(renamed, name, reader)
            converted = hoist_inline_media(converted)
        except FormatError as err:
            return BadRecord(source, err.field, err.reason, err.detail)
        return Record(source, converted, image_dir, format=name, raw_keys=frozenset(fields))

    def read(self, path: str | Path, bad: list[BadRecord] | None = None) -> list[Record]:
        """Every record of a file, a folder of files, or a `dataset_info.json` data set name.

        Lines (elements) that are not JSON objects and records no reader accepts raise
        DataError, or, when a `bad` list is given, go into it (the data check lists them all).
        """
        entry, media_dir = None, None
        if self.info and not Path(str(path)).expanduser().exists():
            path, entry, media_dir = llamafactory.load_entry(self.info, str(path))
        path = Path(path).expanduser()
        files = (
            sorted(p for p in path.iterdir() if p.suffix in SUFFIXES) if path.is_dir() else [path]
        )
        if path.is_dir() and not files:
            raise DataError(f"{path}: no .jsonl or .json files in this folder")
        records: list[Record] = []
        problems: list[BadRecord] = []
        for file in files:
            # Relative media paths: data.image_root, else LLaMA-Factory's media_dir (the
            # dataset_info.json's folder), else the data file's folder.
            image_dir = Path(self.image_root or media_dir or file.parent).expanduser()
            for source, fields, problem in rows_of(file):
                item = problem or self.record(source, fields, image_dir, entry)
                if isinstance(item, Record):
                    item.extra["file"] = str(file)
                (records if isinstance(item, Record) else problems).append(item)
        if problems and bad is None:
            raise DataError(str(problems[0]))
        if bad is not None:
            bad += problems
        if not records and not problems:
            raise DataError(f"{path}: no records (the file is empty)")
        self.check_renames(records, path)
        return records

    def rows(self, rows: Iterable[dict], label: str, bad: list[BadRecord] | None = None):
        """Records from a data set's rows (`data=hf`), named `label row N`."""
        image_dir = Path(self.image_root or ".").expanduser()
        records, problems = [], []
        for index, row in enumerate(rows):
            item = self.record(f"{label} row {index}", row, image_dir)
            if isinstance(item, Record):
                item.extra.update(hub=True, file=label)
            (records if isinstance(item, Record) else problems).append(item)
        if problems and bad is None:
            raise DataError(str(problems[0]))
        if bad is not None:
            bad += problems
        return records

    def check_renames(self, records: list[Record], path: Path) -> None:
        if not self.columns or not records:
            return
        seen = {key for record in records for key in record.raw_keys}
        unused = [old for old in self.columns if old not in seen]
        if unused:
            raise DataError(
                f"data.columns renames {unused}, which no record of {path} has "
                f"(its keys: {sorted(seen)})"
            )


def rows_of(path: Path) -> Iterator[tuple[str, dict | None, BadRecord | None]]:
    """(source, fields, problem) per record: JSONL lines, or the elements of a JSON array."""
    if not path.is_file():
        raise DataError(f"{path}: data file not found (check data.train / data.eval)")
    # Excel and Notepad start a UTF-8 file with a byte-order mark: not part of the data.
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    head = raw.lstrip()[:1]
    if head == b"[":
        yield from _array(path, raw)
        return
    for number, line in enumerate(raw.splitlines(), start=1):
        source = f"{path}:{number}"
        try:
            text = line.decode("utf-8")
            fields = json.loads(text, object_pairs_hook=unique_keys) if text.strip() else None
        except UnicodeDecodeError as err:
            detail = f"not UTF-8 ({err.reason} at byte {err.start})"
            yield source, None, BadRecord(source, "line", "not UTF-8", detail)
            continue
        except json.JSONDecodeError as err:
            detail = f"not valid JSON ({err.msg}, column {err.colno})"
            yield source, None, BadRecord(source, "line", "invalid JSON", detail)
            continue
        except DuplicateKey as err:
            yield source, None, BadRecord(source, "line", "duplicate key", str(err))
            continue
        if fields is None:
            continue
        yield source, fields, _object_problem(source, fields)


def _object_problem(source: str, fields: Any, element: str = "") -> BadRecord | None:
    """Why a parsed JSON value cannot be a record: not an object, or text with half a
    UTF-16 surrogate pair (tokenizers fail on it later)."""
    if not isinstance(fields, dict):
        detail = f"{element}a record must be a JSON object, got {type(fields).__name__}"
        return BadRecord(source, "line", "invalid JSON", detail)
    return lone_surrogate(source, fields)


def _array(path: Path, raw: bytes) -> Iterator[tuple[str, dict | None, BadRecord | None]]:
    """The elements of a JSON array file (LLaMA-Factory, Qwen-VL, VLM-R1 ship these), each
    named by the line it starts on; a broken file is one error at the position JSON gives."""
    try:
        text = raw.decode("utf-8")
        elements = json.loads(text, object_pairs_hook=unique_keys)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    except DuplicateKey as err:
        raise DataError(f"{path}: {err}") from None
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); the file is read as "
            "one JSON array because it starts with '['"
        ) from None
    starts = _element_lines(text)
    for index, fields in enumerate(elements):
        source = f"{path}:{starts[index] if index < len(starts) else 0}"
        problem = _object_problem(source, fields, f"element {index}: ")
        yield source, (None if problem else fields), problem


def _element_lines(text: str) -> list[int]:
    """The line each top-level element of a (valid) JSON array starts on.

    Line breaks are counted only between one element's start and the next, so the text is
    searched once: counting from the start for every element made a 80,000-row file take
    minutes (quadratic)."""
    decoder, lines, index = json.JSONDecoder(), [], text.index("[") + 1
    line, counted = 1, 0  # line breaks before `counted` are in `line`
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return lines
        line += text.count("\n", counted, index)
        counted = index
        lines.append(line)
        _, index = decoder.raw_decode(text, index)
