"""The headline numbers defined once (vlexp.recipe.numbers) and shown alike by the summary,
compare and the model card; the end-of-run block and card say what the run dir holds; each
preference algorithm's headline shows what its trainer logs. No model, no training."""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import types
from pathlib import Path

import pytest

from tests.helpers import compose
from vlexp import compare
from vlexp.recipe import console, modelcard, numbers, summary

MEMORY = {"gb": 1.0, "of": "process RSS"}


def algo_files() -> list[str]:
    from vlexp.paths import config_dir

    return sorted(p.stem for p in (Path(config_dir()) / "algo").glob("*.yaml"))


def grpo_rows(n: int, tokens_per_step: float = 100.0, start: int = 0) -> list[dict]:
    return [
        {
            "step": s,
            "reward": 0.1 * s,
            "rewards/think_format/mean": 0.05 * s,
            "rewards/accuracy/mean": 0.05 * s,
            "kl": 0.01 * s,
            "num_tokens": tokens_per_step * s,
        }
        for s in range(start + 1, start + n + 1)
    ]


def end_row(step: int, runtime: float, start: int | None = None, tokens: float = 0) -> dict:
    row = {"step": step, "train_runtime": runtime}
    return (
        row if start is None else {**row, "train_start_step": start, "train_start_tokens": tokens}
    )


def test_tokens_per_second_is_the_sessions_tokens_over_its_runtime():
    # A fresh run: every counted token over train_runtime (not a mean of per-step rates).
    fresh = [*grpo_rows(30), end_row(30, 12.0, 0)]
    speeds = [{"perf/tokens_per_second_per_gpu": 10_000.0, "step": 1}]
    assert numbers.throughput(fresh + speeds)["tokens_per_s"] == pytest.approx(3000 / 12.0)
    # Resumed at 20 by a trainer that restores its count (GRPO: num_input_tokens_seen):
    # the session counted 3000 - 2000 tokens in its 4 s.
    resumed = [*grpo_rows(20), *grpo_rows(10, start=20), end_row(30, 4.0, 20, 2000.0)]
    assert numbers.throughput(resumed) == {
        "tokens": 1000.0,
        "seconds": 4.0,
        "tokens_per_s": 250.0,
    }
    # ... by one that counts again from 0 (TRL's SFT, DPO, KTO): 10 steps of 100 tokens,
    # whatever the state's own count (include_num_input_tokens_seen) was.
    again = [{**r, "num_tokens": 100.0 * (r["step"] - 20)} for r in grpo_rows(10, start=20)]
    for state_count in (0.0, 2000.0):
        restarted = [*grpo_rows(20), *again, end_row(30, 4.0, 20, state_count)]
        assert numbers.throughput(restarted)["tokens"] == 1000.0
    assert numbers.throughput(grpo_rows(5)) is None  # not finished: no train_runtime


def test_the_bar_ends_on_the_summarys_tokens_per_second(tmp_path):
    stream = io.StringIO()
    view = console.LiveView(console.headline(compose([]).algo), stream=stream)
    state = types.SimpleNamespace(global_step=0, max_steps=2, is_world_process_zero=True,
                                  num_input_tokens_seen=0)  # fmt: skip
    view.on_train_begin(None, state, None)
    rows = grpo_rows(2)
    for row in rows:
        state.global_step = row["step"]
        view.on_step_end(None, state, None)
        view.on_log(None, state, None, logs={k: v for k, v in row.items() if k != "step"})
    view.on_log(None, state, None, logs={"train_runtime": 8.0})
    view.on_train_end(None, state, None)
    last = stream.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    answer = summary.build(compose([]), tmp_path, [*rows, end_row(2, 8.0, 0)],
                           console.headline(compose([]).algo), 9.0, MEMORY)  # fmt: skip
    assert answer["tokens_per_s"] == 200 / 8.0
    assert last.endswith("tok/s 25]") and "reward 0.2" in last  # the headline stays drawn


def test_compare_shows_the_summarys_window_tokens_per_second_and_the_sweeps_objective(tmp_path):
    sweep = tmp_path / "sweep"
    rows = [*grpo_rows(30), end_row(30, 12.0, 0)]
    for job in (0, 1):
        run = sweep / str(job)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        (run / "config.resolved.yaml").write_text("objective:\n  metric: reward\n  last: 10\n")
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = [
        {"job": j, "overrides": [f"seed={j}"], "run_dir": str(sweep / str(j)),
         "status": "completed", "objective": 0.25 + j}
        for j in (0, 1)
    ]  # fmt: skip
    (sweep / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    header, body = compare.table(compare.find_runs([sweep]))
    cells = dict(zip(header, body[0], strict=True))
    # The summary's window over 30 steps is 3: rewards 0.1..0.3 and 2.8..3.0, by hand.
    assert cells["reward"] == "0.2 -> 2.9"
    answer = summary.build(compose([]), sweep / "0", rows, console.headline(compose([]).algo),
                           13.0, MEMORY)  # fmt: skip
    reward = answer["metrics"]["reward"]
    assert cells["reward"] == f"{reward['first']:.4g} -> {reward['last']:.4g}"
    assert cells["tokens/s"] == "250" and answer["tokens_per_s"] == 250.0
    objective = "objective (mean of last 10 reward)"
    assert [dict(zip(header, b, strict=True))[objective] for b in body] == ["0.25", "1.25"]


def test_compare_skips_a_run_dir_without_metrics_and_says_so(tmp_path, capsys):
    stopped = tmp_path / "stopped"
    (stopped / ".hydra").mkdir(parents=True)
    (stopped / "app.log").write_text("vlexp: data error: ...\n")
    done = tmp_path / "done"
    (done / ".hydra").mkdir(parents=True)
    (done / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [*grpo_rows(3), end_row(3, 1.0)])
    )
    runs = compare.find_runs([stopped, done])
    assert [run.path for run in runs] == [done]
    assert f"skipped {stopped}: no metrics" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no run to compare"):
        compare.find_runs([stopped])


def test_the_end_of_run_block_says_final_holds_an_adapter(tmp_path):
    cfg = compose(["memory=lora"])
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "adapter_config.json").write_text("{}")
    answer = summary.build(cfg, tmp_path, [*grpo_rows(2), end_row(2, 1.0)],
                           console.headline(cfg.algo), 1.0, MEMORY)  # fmt: skip
    (line,) = [x for x in summary.render(answer).splitlines() if x.startswith("  final ")]
    assert "LoRA adapter + processor" in line and "PeftModel" in line
    assert "model + processor" not in line.replace("adapter + processor", "")
    (tmp_path / "final" / "adapter_config.json").unlink()
    full = summary.build(cfg, tmp_path, grpo_rows(2), console.headline(cfg.algo), 1.0, MEMORY)
    assert "  final          model + processor" in summary.render(full)


def test_the_card_of_a_run_without_an_eval_split_says_so(tmp_path):
    cfg = compose(["data.eval=null"])
    answer = summary.build(cfg, tmp_path, [*grpo_rows(2), end_row(2, 1.0)],
                           console.headline(cfg.algo), 1.0, MEMORY)  # fmt: skip
    card = modelcard.render(cfg, tmp_path, answer)
    assert "None" not in card and "no eval split" in card
    assert f"{answer['tokens_per_s']:.1f} tokens/s" in card


def test_wandb_gets_the_summarys_numbers(tmp_path, monkeypatch):
    got = {}
    run = types.SimpleNamespace(summary=types.SimpleNamespace(update=got.update))
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=run))
    answer = summary.build(compose([]), tmp_path, [*grpo_rows(30), end_row(30, 12.0, 0)],
                           console.headline(compose([]).algo), 13.0, MEMORY)  # fmt: skip
    summary.to_wandb(answer)
    assert got["summary/tokens_per_s"] == answer["tokens_per_s"] == 250.0
    assert got["summary/rewards/accuracy/mean/last"] == answer["metrics"][
        "rewards/accuracy/mean"]["last"]  # fmt: skip


def logged_literals(trainer_cls: type) -> set[str]:
    """Every string constant (f-string parts included) in the modules of the trainer's class
    hierarchy: the names it can log, read from TRL's (or vlexp's) own source."""
    strings: set[str] = set()
    for cls in trainer_cls.__mro__:
        module = sys.modules.get(cls.__module__)
        try:
            source = inspect.getsource(module)
        except (TypeError, OSError):
            continue
        tree = ast.parse(source)
        strings |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                    and isinstance(n.value, str)}  # fmt: skip
    return strings


PREFERENCE_NUMBERS = ("rewards/margins", "rewards/accuracies", "kl", "objective/kl")


def test_a_preference_algorithms_headline_shows_what_its_trainer_logs():
    """Margins, preference accuracy and KL, each where the trainer logs it (every algo file
    whose trainer logs rewards/margins): KTO's summary was its loss alone while TRL's
    KTOTrainer logs rewards/margins and kl."""
    from vlexp.config import algo as algorithm

    preference, missing = [], {}
    for algo in algo_files():
        cfg = compose([f"algo={algo}"])
        logged = logged_literals(algorithm.trainer_class(cfg))
        if "rewards/margins" not in logged:
            continue
        preference.append(algo)
        shown = [metric for metric, _ in console.headline(cfg.algo)]
        absent = [m for m in PREFERENCE_NUMBERS if m in logged and m not in shown]
        if absent:
            missing[algo] = absent
    assert {"dpo", "kto", "online_dpo", "orpo"} <= set(preference)
    assert not missing, f"logged but not in the headline: {missing}"
