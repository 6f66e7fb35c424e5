"""bench=: the conf/bench/ presets against lmms-eval's own task YAMLs, and the mistakes that
must stop before anything loads (unknown name, no extra, data not cached offline, no
judge key, a run dir without final/), plus the results' way into compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from tests.helpers import REPO, compose
from vlexp import compare, overrides
from vlexp.evaluation import bench
from vlexp.families import FAMILIES

PRESETS = sorted(p.stem for p in (REPO / "conf" / "bench").glob("*.yaml"))


def evaluate(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def lmms_tasks():
    """lmms-eval's own index of its shipped tasks (TaskManager), name -> entry."""
    pytest.importorskip("lmms_eval", reason='the bench extra: pip install -e ".[bench]"')
    return bench.task_manager(compose(["bench=countbench"]).bench).task_index  # cached: one index


@pytest.mark.parametrize("name", PRESETS)
def test_bench_preset_matches_lmms_eval_task(name, lmms_tasks, monkeypatch):
    """Each preset names a real lmms-eval task, its data set and split, a metric the task
    reports, and loads with lmms-eval's full YAML loader (its scoring code imports)."""
    from lmms_eval.utils import load_yaml_config

    spec = compose([f"bench={name}"]).bench.tasks[name]
    entry = lmms_tasks.get(spec.task)
    assert entry is not None and entry["type"] == "task", f"{spec.task}: not an lmms-eval task"
    if spec.get("judge"):  # OpenAI clients built at import need a key, never used here
        monkeypatch.setenv(spec.judge, "unused")
    task = load_yaml_config(entry["yaml_path"], mode="full")
    assert task["dataset_path"] == spec.dataset
    assert task["test_split"] == spec.split
    assert spec.metric in [m["metric"] for m in task["metric_list"]]


MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
def test_bench_takes_every_qwen_family_and_names_the_others(model):
    """From the model presets: a family with an lmms-eval backend wired passes the check; any
    other stops before loading, naming its model_type and where backends are wired."""
    from vlexp import runplan
    from vlexp.evaluation.bench_backend import BACKENDS

    family = runplan.of(compose([f"model={model}", "bench=countbench"])).family
    if any(t in BACKENDS for t in family.model_types):
        bench.check_family(family)
    else:
        with pytest.raises(bench.BenchError, match=f"{family.model_types[0]!r}.*BACKENDS"):
            bench.check_family(family)


def test_bench_unknown_lmms_eval_task_gets_a_guess(lmms_tasks):
    cfg = compose(["bench=countbench", "bench.tasks.countbench.task=countbnch"])
    with pytest.raises(
        bench.BenchError, match="countbnch: lmms-eval has no such task; did you mean countbench"
    ):
        bench.check_tasks(cfg.bench)


def test_bench_presets_compose_together():
    cfg = compose(["bench=[mathvista_testmini,mmmu_val,chartqa]"])
    assert list(cfg.bench.tasks) == ["mathvista_testmini", "mmmu_val", "chartqa"]
    assert all(cfg.bench.tasks[n].limit is None for n in cfg.bench.tasks)


def test_bench_unknown_name_lists_options_and_a_guess():
    line = overrides.problem(["bench=[mathvista_testmini,mmmu_vall]"], "evaluate", "x")
    assert "mmmu_vall is not an option of bench: did you mean mmmu_val?" in line
    assert all(name in line for name in PRESETS)


def test_bench_without_extra_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "lmms_eval" else real(n, *a)
    )
    with pytest.raises(bench.BenchError, match=r'pip install -e "\.\[bench\]"'):
        bench.check(compose(["bench=countbench"]).bench, FAMILIES["qwen2_5_vl"])


def test_bench_judge_key_checked_first(monkeypatch):
    pytest.importorskip("lmms_eval", reason='the bench extra: pip install -e ".[bench]"')
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(bench.BenchError, match="mathvista_testmini.*OPENAI_API_KEY"):
        bench.check(compose(["bench=mathvista_testmini"]).bench, FAMILIES["qwen2_5_vl"])


def test_bench_offline_and_not_cached_stops_in_one_line_before_loading(tmp_path):
    pytest.importorskip("lmms_eval", reason='the bench extra: pip install -e ".[bench]"')
    done = evaluate(
        "model=tiny",
        "bench=[countbench,chartqa]",
        env={
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(tmp_path / "datasets"),
            "LMMS_EVAL_DATASETS_CACHE": "",
            "VLEXP_CACHE": str(tmp_path / "vlexp"),  # a model load would build tiny here
        },
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("vlexp.evaluate:")]
    assert len(lines) == 1, done.stderr[-2000:]
    assert "vikhyatk/CountBenchQA" in lines[0] and str(tmp_path / "datasets") in lines[0]
    assert "python -m vlexp.evaluate model=tiny bench=countbench bench.limit=1" in lines[0]
    assert not (tmp_path / "vlexp").exists()


def test_bench_offline_finds_what_datasets_itself_would_load(tmp_path, monkeypatch):
    """The layout an online load_dataset leaves (<namespace>___<snake_case name>/<config>/
    <version>/<hash>/) counts; a hub-cache copy (`hf download`) alone does not, because
    datasets 5 reads only this cache offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.delenv("LMMS_EVAL_DATASETS_CACHE", raising=False)
    hub = tmp_path / "hub" / "datasets--vikhyatk--CountBenchQA" / "snapshots" / "abc"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    countbench = bench.chosen(compose(["bench=countbench"]).bench)
    assert "vikhyatk/CountBenchQA" in bench.not_cached(countbench)
    (tmp_path / "datasets" / "vikhyatk___count_bench_qa" / "default" / "0.0.0" / "f00d").mkdir(
        parents=True
    )
    assert bench.not_cached(countbench) is None
    assert "lmms-lab-encoder/ChartQA" in bench.not_cached(
        bench.chosen(compose(["bench=chartqa"]).bench)
    )


def test_bench_run_dir_without_final(tmp_path):
    (tmp_path / "config.resolved.yaml").write_text("{}")
    done = evaluate(f"run={tmp_path}", "bench=countbench")
    assert done.returncode != 0
    assert "final" in done.stderr and "Traceback" not in done.stderr


def test_bench_in_training_needs_eval_steps_not_data_eval(monkeypatch):
    from vlexp.validate.training import check_eval

    pytest.importorskip("lmms_eval", reason='the bench extra: pip install -e ".[bench]"')
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # conftest's; the data check is above
    (problem,) = check_eval(compose(["bench=countbench"]))
    assert "train.eval_steps" in problem
    assert check_eval(compose(["bench=countbench", "train.eval_steps=5", "data.eval=null"])) == []
    (ranks,) = check_eval(
        compose(["bench=countbench", "train.eval_steps=5", "launcher.num_processes=2"])
    )
    assert "launcher.num_processes=2" in ranks and "checkpoint-N bench=" in ranks


def test_bench_in_training_checks_this_machine_before_loading(tmp_path, monkeypatch):
    from vlexp.validate import ConfigError, validate

    pytest.importorskip("lmms_eval", reason='the bench extra: pip install -e ".[bench]"')
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.delenv("LMMS_EVAL_DATASETS_CACHE", raising=False)
    cfg = compose(["bench=countbench", "bench.limit=8", "train.eval_steps=5"])
    validate(cfg, machine=False)  # the config is fine; this machine lacks the data
    with pytest.raises(ConfigError, match="vikhyatk/CountBenchQA is not in lmms-eval's"):
        validate(cfg)


def test_bench_scores_become_compare_columns(tmp_path):
    """Two runs scored on benchmarks (one during training, one after): one column each."""
    one, two = tmp_path / "one", tmp_path / "two"
    for run, lr in ((one, "0.1"), (two, "0.2")):
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"train.lr={lr}"]))
    rows = [{"step": 5, "loss": 1.0}, {"step": 5, "eval/bench/countbench": 0.25}]
    (one / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (two / "eval" / "bench").mkdir(parents=True)
    report = {"countbench": {"score": 0.5}, "mmmu_val": {"score": 0.125}}
    bench.write_summary(two / "eval" / "bench", {"step": 9}, report)
    header, body = compare.table(compare.find_runs([one, two]))
    assert {"countbench", "mmmu_val"} <= set(header)
    col = header.index("countbench")
    assert [row[col] for row in body] == ["0.25", "0.5"]
    assert body[0][header.index("mmmu_val")] == "-"


def test_bench_scores_join_the_run_summary(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 3}))
    line = {"task": "countbench", "metric": "acc", "score": 0.5, "n": 4, "limit": None}
    bench.into_run_summary(tmp_path, {"countbench": {**line, "metrics": {"acc": 0.5}}})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {"steps": 3, "bench": {"countbench": line}}


def test_bench_limits_group_by_slice():
    tasks = OmegaConf.to_container(compose(["bench=[countbench,chartqa]"]).bench.tasks)
    tasks["chartqa"]["limit"] = 5
    assert bench.limits(tasks, 20) == {20: ["countbench"], 5: ["chartqa"]}
    assert bench.limits(tasks, None) == {None: ["countbench"], 5: ["chartqa"]}
