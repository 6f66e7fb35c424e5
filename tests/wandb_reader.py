"""An offline W&B run read back with wandb's own reader, whatever wandb the project allows.

The tests compare what vlexp logged against an independent reference, so the reader is wandb's,
never vlexp's: `wandb leet inspect --json` where the installed CLI has it (0.26-ish on), else
wandb's Python datastore reader (`wandb.sdk.internal.datastore.DataStore` parsing
`wandb_internal_pb2.Record`s; wandb 0.25.0, which lmms-eval pins, has this and no `leet
inspect`). Both give the same shape, leet's:

- records: one dict per record, `{"num": N, "type": T, T: payload}`; the payload is the
  record's protobuf JSON with proto field names, its lists of logged items (history rows,
  summary and config updates) turned into `{dotted key: decoded value}`, a history step as
  `{"num": N}`.
- summary (`--summary`): `run_id`, `name`, `entity`, `project`, `notes`, `tags`, `start_time`,
  `config`, `summary` (the latest values, nested), `step` (the last history step), `exit_code`.
  The datastore path leaves out what tells a live run from a dead one (`state`, `last_write`)
  and the console tail: no test reads them.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

# What leet prints for the floats JSON has no literal for (simplejsonext.WalkDeNaN).
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
# Summary keys leet's --summary has that the datastore path does not rebuild.
LIVENESS_KEYS = ("state", "last_write", "console", "console_lines", "file")


def offline_run_file(folder: Path) -> Path:
    """The one `run-*.wandb` file under `folder` (a run dir, a wandb/ dir, an offline-run-*
    dir, or the file itself)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    found = sorted(folder.rglob("run-*.wandb"))
    assert len(found) == 1, f"expected one offline W&B run under {folder}, found {found}"
    return found[0]


@functools.cache
def reader() -> str:
    """'leet' when this Python's wandb CLI has `leet inspect --json --summary`, else
    'datastore'."""
    help_text = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if (
        help_text.returncode == 0
        and "--json" in help_text.stdout
        and "--summary" in help_text.stdout
    ):
        return "leet"
    return "datastore"


def wandb_records(folder: Path) -> list[dict]:
    """Every record of the offline run under `folder`, in order (see the module docstring)."""
    path = offline_run_file(folder)
    if reader() == "leet":
        out = _leet_inspect(path)
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [_record_json(num, record) for num, record in enumerate(_datastore_scan(path), 1)]


def wandb_summary(folder: Path) -> dict:
    """The run's overview: leet's `inspect --summary --json` object (see the module docstring)."""
    path = offline_run_file(folder)
    if reader() == "leet":
        return json.loads(_leet_inspect(path, "--summary"))
    return _datastore_summary(_datastore_scan(path))


def wandb_history(folder: Path) -> list[dict]:
    """The logged history rows (`{dotted key: value}`), in order."""
    return [r["history"]["item"] for r in wandb_records(folder) if r["type"] == "history"]


def _leet_inspect(path: Path, *extra: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", *extra, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def _datastore_scan(path: Path) -> list:
    """The file's protobuf Records, read by wandb's own transaction-log reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    store = DataStore()
    store.open_for_scan(str(path))
    records = []
    try:
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            records.append(record)
    finally:
        store.close()
    return records


def _record_json(num: int, record: Any) -> dict:
    """One record as leet's `writeRecordJSON` prints it (wandb core/internal/leet)."""
    from google.protobuf.json_format import MessageToDict

    field = record.WhichOneof("record_type")
    if field is None:
        return {"num": num, "type": "unknown"}
    message = getattr(record, field)
    payload = MessageToDict(message, preserving_proto_field_name=True)
    payload.pop("_info", None)
    kind = field
    if field == "history" and message.HasField("step"):
        payload["step"] = {"num": message.step.num}
    elif field == "exit":
        payload["exit_code"] = message.exit_code
    elif field == "output_raw":
        payload["output_type"] = type(message).OutputType.Name(message.output_type)
    elif field == "request" and message.WhichOneof("request_type"):
        kind = f"request/{message.WhichOneof('request_type')}"
    return {"num": num, "type": kind, field: _decode_logged_items(payload)}


def _decode_logged_items(value: Any) -> Any:
    """Lists of `{key | nested_key, value_json}` become `{dotted key: decoded value}`."""
    if isinstance(value, dict):
        return {k: _decode_logged_items(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(
            isinstance(e, dict) and isinstance(e.get("value_json"), str) for e in value
        ):
            return {_item_key(e): _decoded(e["value_json"]) for e in value}
        return [_decode_logged_items(e) for e in value]
    return value


def _item_key(item: dict) -> str:
    return (
        ".".join(str(p) for p in item["nested_key"])
        if item.get("nested_key")
        else item.get("key", "")
    )


def _decoded(value_json: str) -> Any:
    try:
        return _de_nan(json.loads(value_json))
    except ValueError:
        return value_json  # leet keeps what does not parse as the raw string


def _de_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {k: _de_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_de_nan(v) for v in value]
    return value


def _datastore_summary(records: list) -> dict:
    """leet's `runDigest` over the records: the run record, config and summary updates applied
    in order (nested keys as nested maps, W&B's own `_wandb` entries dropped), the last step."""
    out: dict[str, Any] = {"config": {}, "summary": {}, "exit_code": None, "step": None}
    for record in records:
        field = record.WhichOneof("record_type")
        if field == "run":
            _apply_run(out, record.run)
        elif field == "config":
            _apply_items(out["config"], record.config)
        elif field == "summary":
            _apply_items(out["summary"], record.summary)
        elif field == "history" and record.history.HasField("step"):
            out["step"] = max(out["step"] or 0, record.history.step.num)
        elif field == "exit":
            out["exit_code"] = record.exit.exit_code
    for tree in (out["config"], out["summary"]):
        tree.pop("_wandb", None)
    out["config"] = _without_empty_maps(out["config"])  # leet's config tree keeps no empty map
    return out


def _without_empty_maps(tree: dict) -> dict:
    pruned = {k: _without_empty_maps(v) if isinstance(v, dict) else v for k, v in tree.items()}
    return {k: v for k, v in pruned.items() if v != {}}


def _apply_run(out: dict, run: Any) -> None:
    start = _go_time(run.start_time) if run.HasField("start_time") else None
    out.update(
        run_id=run.run_id,
        name=run.display_name,
        entity=run.entity,
        project=run.project,
        notes=run.notes,
        tags=list(run.tags),
        start_time=start,
    )
    _apply_items(out["config"], run.config)


def _go_time(stamp: Any) -> str:
    """A protobuf Timestamp as Go's time.Time marshals to JSON (RFC 3339, the fraction's trailing
    zeros trimmed), which is how leet's --summary prints `start_time`."""
    from datetime import UTC, datetime

    whole = datetime.fromtimestamp(stamp.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{stamp.nanos:09d}".rstrip("0")
    return f"{whole}.{fraction}Z" if fraction else f"{whole}Z"


def _apply_items(tree: dict, change: Any) -> None:
    """A config or summary record's updates and removals, each at its key path."""
    for item in change.update:
        *parents, last = list(item.nested_key) or [item.key]
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = _decoded(item.value_json)
    for item in change.remove:
        *parents, last = list(item.nested_key) or [item.key]
        node = tree
        for part in parents:
            node = node.get(part, {})
        node.pop(last, None)
