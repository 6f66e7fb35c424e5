"""Several ranks, or several nodes sharing one file system, doing the same thing at once:
downloading an image, checking the data. Simulated in one process (threads, rank variables)
where a real multi-node launch cannot run in a test."""

from __future__ import annotations

import io
import os
import threading

import pytest

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"x" * 4096


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_ranks_fetching_one_url_at_once_each_write_their_own_file(tmp_path, monkeypatch):
    """Both ranks have written their download before either renames it (a barrier in
    os.replace): with one shared temp name the second rename finds nothing, or renames the
    other rank's half-written file."""
    from vlexp.data import images

    monkeypatch.setattr(images.urllib.request, "urlopen", lambda *a, **k: _Response(PNG_BYTES))
    both_written = threading.Barrier(2, timeout=10)
    real_replace = os.replace

    def replace_when_both_wrote(source, target):
        both_written.wait()
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_when_both_wrote)
    url = "https://example.org/cat.png"
    results: dict[int, object] = {}

    def rank(number: int) -> None:
        try:
            results[number] = images.fetch(url, tmp_path / "remote-images")
        except Exception as err:  # handed to the test's thread
            results[number] = err

    threads = [threading.Thread(target=rank, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(isinstance(r, Exception) for r in results.values()), results
    assert results[0] == results[1] and results[0].read_bytes() == PNG_BYTES
    assert sorted(p.name for p in (tmp_path / "remote-images").iterdir()) == [results[0].name]
    umask = os.umask(0)
    os.umask(umask)
    assert results[0].stat().st_mode & 0o777 == 0o666 & ~umask  # as readable as before


# One rank of a simulated multi-node run: the recipe's own `build` up to the data sets (a real
# gloo process group, the ranks' variables as torchrun sets them), then it stops.
RANK_SCRIPT = """
import json, os, sys
from pathlib import Path

from tests.helpers import compose
from vlexp.data import check
from vlexp.recipe import run

cfg_overrides, run_dir, log = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rank = os.environ["RANK"]

def note(line):
    with log.open("a") as handle:
        handle.write(f"{line} {rank}\\n")

check_split, write_bad_records = check.DataCheck.check_split, check.write_bad_records
check.DataCheck.check_split = lambda self, *a: note("check") or check_split(self, *a)
check.write_bad_records = lambda *a: note("report") or write_bad_records(*a)

class Stop(Exception):
    pass

def datasets_then_stop(*args, **kwargs):
    train, _ = build_datasets(*args, **kwargs)
    note("rows=" + ",".join(sorted(train["solution"])))
    raise Stop

build_datasets, run.build_datasets = run.build_datasets, datasets_then_stop
try:
    run.build(compose(cfg_overrides), run_dir)
except Stop:
    pass
import torch.distributed as dist
dist.destroy_process_group()
"""


def _start_rank(rank: int, local_rank: int, local_world: int, node: int, port: int, args: list):
    import subprocess
    import sys

    from tests.helpers import REPO

    env = {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(local_world),
        "GROUP_RANK": str(node),
        "WORLD_SIZE": "3",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "VLEXP_LAUNCH_ID": f"launch-of-node-{node}",
    }
    return subprocess.Popen(
        [sys.executable, "-c", RANK_SCRIPT, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_data_check_runs_once_per_node_and_rank_0_alone_reports(tmp_path, tiny_model):
    """Node 0 runs two ranks, node 1 one (3 ranks, a gloo group): each node's local rank 0
    checks the data, node 0's second rank reads its result, and bad_records.jsonl is written
    once, by rank 0, into the shared run dir. Every rank used to check and write it."""
    import json

    from vlexp.recipe.launch import free_port

    data = tmp_path / "train.jsonl"
    rows = [json.dumps({"problem": f"What is {n}+1?", "solution": str(n + 1)}) for n in range(6)]
    data.write_text("\n".join([*rows[:3], "{not json", *rows[3:]]) + "\n")
    overrides = [
        "data=jsonl",
        f"data.train={data}",
        "data.on_bad_record=skip",
        f"model.name_or_path={tiny_model}",
    ]
    run_dir, log = tmp_path / "run", tmp_path / "ranks.log"
    run_dir.mkdir()
    args = [json.dumps(overrides), str(run_dir), str(log)]
    port = free_port()
    places = [(0, 0, 2, 0), (1, 1, 2, 0), (2, 0, 1, 1)]  # rank, local rank, local ranks, node
    ranks = [_start_rank(*place, port, args) for place in places]
    outputs = [rank.communicate(timeout=300)[0] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0, 0], "\n".join(outputs)[-3000:]
    lines = sorted(log.read_text().splitlines())
    kept = ",".join(sorted(str(n + 1) for n in range(6)))
    assert lines == [
        "check 0",  # node 0's local rank 0 (one split: train)
        "check 2",  # node 1's only rank
        "report 0",
        f"rows={kept} 0",
        f"rows={kept} 1",
        f"rows={kept} 2",
    ]
    bad = [json.loads(line) for line in (run_dir / "bad_records.jsonl").read_text().splitlines()]
    assert [(b["source"], b["reason"]) for b in bad] == [(f"{data}:4", "invalid JSON")]
    assert not list(run_dir.glob(".data-check*"))  # the shared result is removed once read


def test_a_failed_check_stops_the_node_s_other_ranks_with_the_same_message(tmp_path, monkeypatch):
    """Local rank 0's error reaches the ranks waiting for its result (they do not wait
    forever, nor check again); each launch names its own result file."""
    from vlexp.data import DataError
    from vlexp.recipe import launch, per_node

    ids = {launch.rank_environment({})[per_node.LAUNCH_ID] for _ in range(2)}
    assert len(ids) == 2  # a resumed run never reads the last launch's file
    monkeypatch.setenv(per_node.LAUNCH_ID, ids.pop())
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    calls = []

    def failing_check():
        calls.append(os.environ["LOCAL_RANK"])
        raise DataError("data.train: 3 bad record(s)")

    for local_rank in ("0", "1"):
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        monkeypatch.setenv("RANK", local_rank)
        with pytest.raises(DataError, match=r"^data.train: 3 bad record\(s\)$"):
            per_node.once_per_node("data-check", tmp_path, failing_check)
    assert calls == ["0"]
