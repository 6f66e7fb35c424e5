"""The live view (one bar, headline numbers), the noise filter, and the end-of-run answers
(summary, curves.png, model card) on hand-made metrics: no model, no training."""

from __future__ import annotations

import io
import json
import logging
import types
import warnings
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import compose
from vlexp.recipe import console, curves, modelcard, plots, summary
from vlexp.recipe.sweep import sweep_report

GRPO_LOG = {
    "loss": 0.0001,
    "grad_norm": 1.39,
    "learning_rate": 0.001,
    "num_tokens": 480.0,
    "reward": 0.375,
    "reward_std": 0.5175,
    "kl": 0.0,
    "completions/mean_length": 20.5,
    "rewards/think_format/mean": 0.375,
    "rewards/accuracy/mean": 0.0,
}


GRPO_HEADLINE = ["reward", "reward_std", "kl", "completions/mean_length"]
TOOLS = ["tools/call_frequency", "tools/failure_frequency"]  # logged by TRL only with tools


def state(step: int = 0, max_steps: int = 4, rank0: bool = True):
    return types.SimpleNamespace(
        global_step=step, max_steps=max_steps, is_world_process_zero=rank0, epoch=0.0
    )


@pytest.mark.parametrize(
    ("algo", "metrics"),
    [
        ("grpo", [*GRPO_HEADLINE, *TOOLS]),
        ("dapo", [*GRPO_HEADLINE, *TOOLS]),
        ("sft", ["loss", "mean_token_accuracy"]),
        ("dpo", ["rewards/margins", "rewards/accuracies", "kl", "loss"]),
        ("kto", ["rewards/margins", "rewards/accuracies", "kl", "loss"]),
        ("reward_model", ["loss", "accuracy", "margin"]),
        ("ppo", ["objective/scores", "objective/kl", "completions/mean_length", "loss/value"]),
    ],
)
def test_each_algorithm_has_its_headline(algo, metrics):
    assert [m for m, _ in console.headline(compose([f"algo={algo}"]).algo)] == metrics


def test_the_bar_shows_the_headline_and_the_log_file_gets_the_whole_dict(tmp_path):
    stream = io.StringIO()
    view = console.LiveView(console.headline(compose([]).algo), stream=stream)
    log_file = tmp_path / "app.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(handler)
    try:
        view.on_train_begin(None, state(0), None)
        view.on_step_end(None, state(1), None)
        view.on_log(None, state(1), None, logs=dict(GRPO_LOG))
        view.on_step_end(None, state(2), None)
        view.on_log(None, state(2), None, logs={**GRPO_LOG, "num_tokens": 960.0, "kl": 0.0123})
        view.on_log(None, state(2), None, logs={"eval/accuracy": 0.3125, "eval/reward": 1.3})
        view.on_train_end(None, state(2), None)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    shown = stream.getvalue()
    assert "reward 0.375  reward_std 0.5175  kl 0.0123  len 20.5  tok/s" in shown
    assert "step 2 eval: accuracy 0.3125  reward 1.3" in shown
    assert "grad_norm" not in shown and "rewards/think_format" not in shown and "{" not in shown
    logged = log_file.read_text()
    assert logged.count("step ") == 3 and '"grad_norm": 1.39' in logged


def test_the_bar_shows_tool_calls_only_when_the_run_logs_them():
    stream = io.StringIO()
    view = console.LiveView(console.headline(compose(["env=zoom"]).algo), stream=stream)
    view.on_train_begin(None, state(0), None)
    view.on_step_end(None, state(1), None)
    view.on_log(None, state(1), None, logs=dict(GRPO_LOG))
    assert "tool_calls" not in stream.getvalue()  # a run without tools: nothing to show
    tools = {"tools/call_frequency": 0.75, "tools/failure_frequency": 0.25}
    view.on_log(None, state(1), None, logs={**GRPO_LOG, **tools})
    view.on_train_end(None, state(1), None)
    assert "tool_calls 0.75  tool_fails 0.25" in stream.getvalue()


def test_a_stopped_training_ends_the_bar_line_before_its_message():
    """A run that stops mid-training (a reward raised) prints its message on a line of its
    own, not glued to the bar, and the bar is not drawn again after it."""
    stream = io.StringIO()
    view = console.LiveView([("loss", "loss")], stream=stream)
    view.on_train_begin(None, state(0), None)
    view.on_step_end(None, state(1), None)
    trainer = types.SimpleNamespace(
        callback_handler=types.SimpleNamespace(callbacks=[object(), view])
    )
    console.close_bar(trainer)
    drawn = stream.getvalue()
    assert drawn.endswith("\n") and "1/" in drawn.splitlines()[-1]
    console.close_bar(trainer)  # again (on_train_end after a stop): nothing more drawn
    assert view.bar is None and stream.getvalue() == drawn


def test_other_ranks_draw_nothing():
    stream = io.StringIO()
    view = console.LiveView([("loss", "loss")], stream=stream)
    view.on_train_begin(None, state(0, rank0=False), None)
    view.on_log(None, state(1, rank0=False), None, logs={"loss": 1.0})
    assert view.bar is None and stream.getvalue() == ""


def test_only_known_harmless_noise_is_silenced():
    console.quiet_libraries()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        console.quiet_libraries()  # re-applies its filters over the catch-all above
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated and will ...", FutureWarning, stacklevel=2
        )
        warnings.warn(
            "`gradient_checkpointing` is deprecated and will ...", FutureWarning, stacklevel=2
        )
    assert [str(w.message)[:24] for w in caught] == ["`gradient_checkpointing`"]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    loggers = [
        logging.getLogger(n) for n in ("DeepSpeed", "math_verify.parser", "math_verify.grader")
    ]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        loggers[0].warning("Setting accelerator to CPU. If you have GPU ...")
        loggers[0].warning("ZeRO-3 partitioning failed")
        for logger in loggers[1:]:  # vlexp's reward guard keeps the deadline off the main thread
            logger.warning("Timeout is disabled as timeout_seconds is None or <= 0, you must ...")
        loggers[1].warning("Error parsing the answer")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    shown = [r.getMessage() for r in records]
    assert shown == ["ZeRO-3 partitioning failed", "Error parsing the answer"]


def rows(n: int) -> list[dict]:
    out = [
        {"step": s, "reward": 0.1 * s, "reward_std": 0.5, "kl": 0.01 * s, "num_tokens": 100.0 * s}
        for s in range(1, n + 1)
    ]
    return [
        *out,
        {"step": n, "eval/accuracy": 0.4, "eval/reward": 1.4},
        {"step": n, "train_runtime": 10.0},
    ]


def test_summary_tells_first_and_last_from_metrics(tmp_path):
    cfg = compose([])
    (tmp_path / "final").mkdir()
    answer = summary.build(cfg, tmp_path, rows(30), console.headline(cfg.algo), 12.0,
                           {"gb": 1.5, "of": "process RSS"})  # fmt: skip
    reward = answer["metrics"]["reward"]
    assert reward["mean_of"] == 3 and reward["first"] == pytest.approx(0.2)
    assert reward["last"] == pytest.approx(2.9) and reward["logged"] == 30
    assert answer["steps"] == 30 and answer["train_runtime_s"] == 10.0
    assert answer["tokens_per_s"] == pytest.approx(3000.0 / 10.0)
    assert answer["eval"] == {"step": 30, "accuracy": 0.4, "reward": 1.4}
    assert answer["next"][0] == f"python -m vlexp.evaluate run={tmp_path}"
    text = summary.render(answer)
    assert "vlexp: grpo on tiny://qwen2_5_vl over shapes: 30 steps in 10.0 s" in text
    assert "300 tokens/s" in text and "peak memory 1.50 GB" in text
    assert "reward      0.2 -> 2.9" in text and "(each a mean of 3 logged steps)" in text
    assert "eval at step 30: accuracy 0.4, reward 1.4" in text
    assert f"vlexp: done. run dir: {tmp_path}" in text
    assert text.splitlines()[-1] == f"  python -m vlexp.compare {tmp_path}"


def test_a_per_step_rate_is_not_the_summary_throughput(tmp_path):
    """perf/* rates stay under their own names; tokens/s is the trainer's tokens over
    train_runtime (vlexp.recipe.numbers), however fast single steps were."""
    cfg = compose([])
    logged = [{**row, "perf/tokens_per_second_per_gpu": 50.0} if "reward" in row else row
              for row in rows(4)]  # fmt: skip
    answer = summary.build(cfg, tmp_path, logged, console.headline(cfg.algo), 1.0,
                           {"gb": 1.0, "of": "process RSS"})  # fmt: skip
    assert answer["tokens_per_s"] == 400.0 / 10.0


def test_model_card_names_base_algorithm_data_results_and_loading(tmp_path):
    cfg = compose(["algo=sft", "model=qwen2_5_vl_3b", "memory=lora"])
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "adapter_config.json").write_text("{}")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- algo=sft\n- memory=lora\n")
    sft_rows = [{"step": s, "loss": 2.0 - 0.1 * s, "mean_token_accuracy": 0.1 * s} for s in (1, 2)]
    answer = summary.build(cfg, tmp_path, sft_rows, console.headline(cfg.algo), 1.0,
                           {"gb": 1.0, "of": "process RSS"})  # fmt: skip
    written = modelcard.write(cfg, tmp_path, answer)
    assert written == [tmp_path / "README.md", tmp_path / "final" / "README.md"]
    card = written[0].read_text()
    assert "base_model: Qwen/Qwen2.5-VL-3B-Instruct" in card and "library_name: peft" in card
    assert "with **sft** (SFTTrainer)" in card and "`python -m vlexp algo=sft memory=lora`" in card
    assert "| loss | 1.9 | 1.8 |" in card and "| mean_token_accuracy | 0.1 | 0.2 |" in card
    assert f'PeftModel.from_pretrained(base, "{tmp_path}/final")' in card
    assert "None" not in card


def test_smoothing_keeps_the_first_point_and_follows_the_trend():
    assert plots.smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])
    smoothed = plots.smooth([0.0, 1.0], weight=0.5)
    assert smoothed[0] == 0.0 and smoothed[1] == pytest.approx(2 / 3)


def test_compare_panels_give_each_reward_function_and_eval_its_own_axis():
    logged = {"reward", "kl", "loss", "rewards/accuracy/mean", "rewards/think_format/mean",
              "eval/accuracy"}  # fmt: skip
    assert [p[0] for p in plots.choose_panels(logged)] == [
        "reward", "kl", "loss", "rewards/accuracy/mean", "rewards/think_format/mean",
        "eval/accuracy",
    ]  # fmt: skip


def test_curves_png_has_a_panel_per_headline_metric(tmp_path):
    path = curves.plot_run(rows(30), [("reward", "reward"), ("kl", "kl")], tmp_path / "c.png")
    image = Image.open(path)
    image.verify()
    assert image.size[0] >= 900  # three panels: reward, kl, eval accuracy (+ eval reward)
    assert curves.plot_run([], [("reward", "reward")], tmp_path / "none.png") is None


def test_sweep_report_lists_jobs_and_the_best_trial(tmp_path):
    records = [
        {"job": 1, "overrides": ["a=2"], "status": "failed", "objective": None},
        {"job": 0, "overrides": ["a=1"], "status": "completed", "objective": 0.75},
    ]
    (tmp_path / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  a: 1\nbest_value: 0.75\n"
    )
    lines = sweep_report(tmp_path).splitlines()
    assert lines[0] == f"vlexp: sweep of 2 jobs done: {tmp_path}"
    assert lines[1].split() == ["job", "status", "objective", "overrides"]
    assert lines[2].split() == ["0", "completed", "0.75", "a=1"]
    assert lines[3].split() == ["1", "failed", "-", "a=2"]
    assert "best trial (Optuna): objective 0.75 with a=1" in lines[4]
    assert lines[-1] == f"  python -m vlexp.compare {tmp_path}"
    assert Path(tmp_path / "sweep.jsonl").as_posix() in lines[5]
