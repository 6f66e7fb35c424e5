"""Bad data through the commands users type: the run stops before the model, or skips and trains."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.bad_data import EXPECTED, kept_ids, line_of, write_corpus
from tests.helpers import REPO, read_metrics, run_cli


def _data_args(train) -> list[str]:
    return ["data=jsonl", f"data.train={train}", f"data.eval={train.parent / 'eval.jsonl'}"]


def test_run_stops_before_loading_the_model_and_names_every_bad_record(tmp_path, tiny_model):
    train = write_corpus(tmp_path / "data")
    run_dir = tmp_path / "run"
    result = run_cli(*_data_args(train), f"hydra.run.dir={run_dir}", timeout=300)
    assert result.returncode == 1
    expected = EXPECTED["grpo"]
    # The message starts a line of its own (the run's log lines go to stdout and the log file).
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(f"vlexp: data error: {len(expected)} bad record(s)") for line in lines
    )
    for rid, (field, _) in expected.items():
        assert f"{train}:{line_of(train, rid)}: {field}: " in result.stderr, rid
    assert "data check train:" in result.stdout
    assert "parameters" not in result.stdout  # the "model ...: N parameters" line: never loaded
    assert len((run_dir / "bad_records.jsonl").read_text().splitlines()) == len(expected)


def test_skip_trains_on_the_good_records_and_lists_the_dropped(tmp_path, tiny_model):
    train = write_corpus(tmp_path / "data")
    run_dir = tmp_path / "run"
    result = run_cli(
        *_data_args(train),
        "data.on_bad_record=skip",
        "train.max_steps=2",
        "train.per_device_train_batch_size=4",
        f"hydra.run.dir={run_dir}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kept = kept_ids("grpo")
    assert f"{len(kept) + len(EXPECTED['grpo'])} read, {len(kept)} kept" in result.stdout
    rows = [json.loads(line) for line in (run_dir / "bad_records.jsonl").read_text().splitlines()]
    assert sorted(int(r["source"].rsplit(":", 1)[1]) for r in rows) == sorted(
        line_of(train, rid) for rid in EXPECTED["grpo"]
    )
    assert [row["step"] for row in read_metrics(run_dir)] == [1, 2]


def test_check_data_command_exit_codes(tmp_path, tiny_model):
    train = write_corpus(tmp_path / "data")

    def check(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vlexp.check_data", *_data_args(train), "algo=dpo", *extra],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = check()
    assert result.returncode == 1
    assert (
        f"{train}:{line_of(train, 'same-pair')}: rejected: chosen and rejected are identical"
        in result.stderr
    )
    assert "data check train: 21 read, 7 kept, 14 bad" in result.stdout
    result = check("data.on_bad_record=skip")
    assert result.returncode == 0
    assert result.stdout.count("dropped (train): ") == len(EXPECTED["dpo"])
    assert "vlexp.check_data: ok, 7 train / 4 eval records would be used" in result.stdout
    result = check("model.min_pixels=99999999")
    assert result.returncode == 2
    assert result.stderr.startswith("vlexp.check_data: config error: model.min_pixels (99999999)")
