"""`python -m vlexp -m`: a 2x2 sweep compared offline, a failing job recorded while the
others finish, and a two-trial Optuna search on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.helpers import read_metrics, run_cli
from vlexp import compare
from vlexp.recipe.sweep import read_sweep

FAST = [
    "train.max_steps=3",
    "train.per_device_train_batch_size=4",
]


@pytest.fixture(scope="module")
def sweep_2x2(tmp_path_factory, tiny_model, shapes_dir) -> Path:
    sweep_dir = tmp_path_factory.mktemp("sweep") / "2x2"
    result = run_cli(
        "-m",
        *FAST,
        "algo.args.num_generations=2",
        "algo.args.beta=0.0,0.04",
        "train.learning_rate=1e-3,3e-3",
        # Names and group are decided (and saved) even when W&B itself is off.
        "logger=wandb",
        "logger.mode=disabled",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


def test_sweep_jsonl_has_one_line_per_job(sweep_2x2):
    records = read_sweep(sweep_2x2)
    assert [r["job"] for r in records] == [0, 1, 2, 3]
    assert {r["status"] for r in records} == {"completed"}
    assert [r["run_dir"] for r in records] == [str(sweep_2x2 / str(i)) for i in range(4)]
    assert "algo.args.beta=0.04" in records[2]["overrides"]
    loggers = [
        yaml.safe_load(Path(r["run_dir"], "config.resolved.yaml").read_text())["logger"]
        for r in records
    ]
    assert {logger["group"] for logger in loggers} == {f"sweep-{sweep_2x2.parent.name}_2x2"}
    assert (
        loggers[3]["run_name"]
        == "grpo-max_steps=3-per_device_train_batch_size=4-num_generations=2-beta=0.04-learning_rate=0.003"
    )
    assert not any(Path(r["run_dir"], "wandb").exists() for r in records)  # mode=disabled
    for record in records:
        rewards = [row["reward"] for row in read_metrics(Path(record["run_dir"]))]
        assert record["final"]["step"] == 3 and record["final"]["reward"] == rewards[-1]
        assert record["objective"] == pytest.approx(sum(rewards) / len(rewards))


def test_compare_over_the_sweep(sweep_2x2, tmp_path):
    out = tmp_path / "cmp"
    assert compare.main([str(sweep_2x2), "--out", str(out)]) == 0
    header, *rows = (out / "compare.csv").read_text().splitlines()
    columns = header.split(",")
    assert columns[:4] == ["run", "algo.args.beta", "train.learning_rate", "status"]
    assert {"reward", "best reward", "kl", "entropy", "completion len"} <= set(columns)
    cells = [dict(zip(columns, row.split(","), strict=True)) for row in rows]
    assert [(c["algo.args.beta"], c["train.learning_rate"]) for c in cells] == [
        ("0.0", "0.001"),
        ("0.0", "0.003"),
        ("0.04", "0.001"),
        ("0.04", "0.003"),
    ]
    assert all(c["steps"] == "3" and c["status"] == "completed" for c in cells)
    assert [c["kl"] == "-" for c in cells] == [True, True, False, False]  # beta=0: no KL
    # The objective as the sweep reported it (sweep.jsonl), under the settings it used.
    objective = [f"{r['objective']:.4g}" for r in read_sweep(sweep_2x2)]
    assert [c["objective (mean of last 10 reward)"] for c in cells] == objective
    image = Image.open(out / "compare.png")
    image.verify()
    assert image.size[0] >= 1000 and image.size[1] >= 600
    assert (out / "compare.png").stat().st_size > 30_000


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path, tiny_model, shapes_dir):
    sweep_dir = tmp_path / "failing"
    # 4 x 1 is not a multiple of 3 generations: job 0 fails validation, job 1 trains.
    result = run_cli("-m", *FAST, "algo.args.num_generations=3,2", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode != 0
    assert "is not a multiple of algo.args.num_generations" in result.stderr
    failed, done = read_sweep(sweep_dir)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("JobFailed: vlexp: config error: train.per_device_train")
    assert failed["objective"] is None
    assert done["status"] == "completed" and done["final"]["step"] == 3


def test_optuna_sweep_two_trials(tmp_path, tiny_model, shapes_dir):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "optuna"
    result = run_cli(
        "-m",
        "experiment=optuna_shapes",
        *FAST,
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_sweep(sweep_dir)
    assert [r["status"] for r in records] == ["completed", "completed"]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(r["objective"] for r in records))
    params = {"algo.args.beta", "train.learning_rate", "algo.args.num_generations"}
    assert set(best["best_params"]) == params
    for record in records:  # each trial ran with the values Optuna sampled
        assert {o.split("=")[0] for o in record["overrides"]} >= params
    # The sweep ends with its answer: the jobs, the best trial, where to look next.
    assert f"vlexp: sweep of 2 jobs done: {sweep_dir}" in result.stdout
    assert f"best trial (Optuna): objective {best['best_value']:.4g} with " in result.stdout
    assert result.stdout.rstrip().endswith(f"python -m vlexp.compare {sweep_dir}")
    assert "setup plugin alembic" not in result.stdout + result.stderr
