"""`python -m vlexp.evaluate` and `train.eval_steps` on the tiny model, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, read_metrics, run_cli
from tests.wandb_reader import wandb_history
from vlexp import runplan
from vlexp.rewards import accuracy

# Small and fast: the tiny model's answers are ~18 tokens, so 24 new tokens never clip them.
EVAL = ["eval.max_new_tokens=24", "eval.batch_size=8"]
HEADLINE = ("accuracy", "exact_match", "reward", "format_rate", "completions/mean_length")


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", *args],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def eval_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if "eval/accuracy" in row]


def check_eval_dir(eval_dir: Path, num_prompts: int) -> dict:
    metrics = read_json(eval_dir / "metrics.json")
    assert metrics["num_prompts"] == num_prompts
    for name in HEADLINE:
        assert isinstance(metrics[name], float | int), name
    samples = [json.loads(line) for line in (eval_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == num_prompts
    for sample in samples:
        assert Path(sample["images"][0]).is_file() and sample["prompt"] and "rewards" in sample
        assert sample["exact_match"] == (
            re.sub(r".*<answer>(.*?)</answer>.*", r"\1", sample["completion"], flags=re.S).strip()
            == sample["solution"]
        )  # tiny answers are lower-case words or digits: exact match is this simple here
        # accuracy is the accuracy reward's verdict, whatever the run's reward config holds
        verdict = accuracy([sample["completion"]], solution=[sample["solution"]])[0]
        assert sample["correct"] == (verdict == 1.0)
    assert metrics["accuracy"] == pytest.approx(sum(s["correct"] for s in samples) / len(samples))
    exact = sum(s["exact_match"] for s in samples) / len(samples)
    assert metrics["exact_match"] == pytest.approx(exact)
    page = (eval_dir / "samples.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == num_prompts
    return metrics


def test_lora_run_is_evaluated_during_and_after_training(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli(
        "algo=sft", "memory=lora", "logger=wandb", "logger.mode=offline",
        "train.max_steps=4", "train.eval_steps=2", "train.save_steps=2", "eval.limit=4", *EVAL,
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "final" / "adapter_config.json").is_file()

    # During training: eval/* rows in metrics.jsonl and W&B at steps 2 and 4, files per step;
    # every training row is still there.
    train_rows = [row for row in read_metrics(run_dir) if "loss" in row]
    assert [row["step"] for row in train_rows] == [1, 2, 3, 4]
    rows = eval_rows(run_dir)
    assert [row["step"] for row in rows] == [2, 4]
    for row in rows:
        assert {f"eval/{name}" for name in HEADLINE} <= set(row)
    for step, row in zip((2, 4), rows, strict=True):
        step_metrics = check_eval_dir(run_dir / "eval" / f"step-{step}", 4)
        assert step_metrics["accuracy"] == row["eval/accuracy"]
    history = wandb_history(run_dir)
    logged = [(h["train/global_step"], h["eval/accuracy"]) for h in history if "eval/accuracy" in h]
    assert logged == [(2, rows[0]["eval/accuracy"]), (4, rows[1]["eval/accuracy"])]
    tables = [h for h in history if h.get("eval/samples._type") == "table-file"]
    assert [t["eval/samples.nrows"] for t in tables] == [4, 4]

    # After training: base + adapter from final/, with the run's own eval settings.
    result = run_eval(f"run={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    final = check_eval_dir(run_dir / "eval", 4)
    assert final["step"] == 4 and final["model"] == str(run_dir / "final")
    # Greedy decoding of the same weights: the number logged in training is the number here.
    for name in HEADLINE:
        assert final[name] == rows[1][f"eval/{name}"], name

    result = run_eval(f"run={run_dir / 'checkpoint-2'}", "logger=none")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = check_eval_dir(run_dir / "eval" / "checkpoint-2", 4)
    assert checkpoint["step"] == 2
    assert checkpoint["accuracy"] == rows[0]["eval/accuracy"]


def test_a_run_with_tools_is_evaluated_with_them_during_and_after(tmp_path, tiny_model):
    """env=zoom: the step evaluation and `python -m vlexp.evaluate run=` (which takes `env`
    from the run's config) both roll out with the run's tools, so each sample has its turns;
    greedy decoding of the same weights gives the same turns in both."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "env=zoom", "data=shapes_zoom", "data.prepare.num_train=8", "data.prepare.num_eval=2",
        "train.max_steps=1", "train.per_device_train_batch_size=4", "train.eval_steps=1",
        "eval.max_new_tokens=64", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_eval(f"run={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    during, after = (
        [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        for folder in (run_dir / "eval" / "step-1", run_dir / "eval")
    )
    assert len(during) == len(after) == 2
    for step, final in zip(during, after, strict=True):
        assert step["turns"] and step["turns"][0]["role"] == "assistant"
        assert final["turns"] == step["turns"]


@pytest.mark.slow
def test_the_readme_recipe_train_then_evaluate_beats_the_base_model(tmp_path, tiny_model):
    """README, Evaluation: its four commands as written (run dirs given), its numbers."""
    base_dir = tmp_path / "base"
    result = run_eval("model=tiny", "data=shapes", f"hydra.run.dir={base_dir}/eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"over 64 prompts -> {base_dir}/eval" in result.stdout
    before = check_eval_dir(base_dir / "eval", 64)
    assert before["run"] is None and before["step"] == 0

    run_dir = tmp_path / "sft"
    result = run_cli(
        "algo=sft", "train.max_steps=40", "train.learning_rate=3e-3", "train.save_steps=20",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_eval(f"run={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    after = check_eval_dir(run_dir / "eval", 64)
    # Measured: 0.219 (14/64) before, 0.375 (24/64) after 40 SFT steps (README numbers).
    assert after["accuracy"] >= before["accuracy"] + 6 / 64, (before, after)
    assert after["format_rate"] == 1.0 and after["step"] == 40

    result = run_eval(f"run={run_dir / 'checkpoint-20'}", "eval=pass_at_k")
    assert result.returncode == 0, result.stderr[-3000:]
    sampled = read_json(run_dir / "eval" / "checkpoint-20" / "metrics.json")
    assert sampled["step"] == 20 and sampled["num_prompts"] == 64
    assert sampled["pass@8"] >= sampled["accuracy"]


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_model, shapes_dir):
    """Greedy completions do not depend on batching (left padding is right), and decoding
    settings are explicit, whatever the checkpoint's generation_config says."""
    from tests.helpers import compose
    from vlexp.evaluation.generation import generate, load_examples
    from vlexp.models.loading import load_model, load_processor

    cfg = compose([])
    processor = load_processor(cfg.model, runplan.of(cfg).family)
    processor.tokenizer.padding_side = "right"  # generate() must pad left regardless
    model = load_model(cfg.model, cfg.memory).eval()
    model.generation_config.top_k = 1  # as some Instruct checkpoints ship
    model.generation_config.repetition_penalty = 1.05
    examples = load_examples(runplan.of(cfg).data, cfg.eval.max_new_tokens, processor, limit=6)
    lengths = {len(ex["prompt"][0]["content"][1]["text"]) for ex in examples}
    assert len(lengths) > 1  # prompts of different lengths, so the batch really is padded

    calls = []
    original = model.generate

    def spy(**kwargs):
        calls.append({k: kwargs.get(k) for k in ("top_k", "repetition_penalty", "do_sample")})
        return original(**kwargs)

    model.generate = spy
    batched = generate(model, processor, examples, max_new_tokens=24, batch_size=6, progress=False)
    single = generate(model, processor, examples, max_new_tokens=24, batch_size=1, progress=False)
    assert [c[0].text for c in batched] == [c[0].text for c in single]
    assert [c[0].ids for c in batched] == [c[0].ids for c in single]
    assert calls[0] == {"top_k": None, "repetition_penalty": 1.0, "do_sample": False}
    assert len(calls) == 1 + 6 and processor.tokenizer.padding_side == "right"

    sampled = generate(model, processor, examples[:2], max_new_tokens=8, num_samples=3,
                       temperature=1.0, progress=False)  # fmt: skip
    assert [len(c) for c in sampled] == [3, 3]
    assert calls[-1] == {"top_k": 0, "repetition_penalty": 1.0, "do_sample": True}


def test_eval_records_get_the_training_data_check(tmp_path, tiny_model, shapes_dir):
    """A record the rewards cannot score stops evaluation before the model loads (raise) or is
    left out (skip), exactly as in training."""
    good = json.loads((shapes_dir / "eval.jsonl").read_text().splitlines()[0])
    bad = {k: v for k, v in good.items() if k != "solution"} | {"id": "eval-bad"}
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    args = ["model=tiny", "data=jsonl", f"data.train={data}", f"data.eval={data}",
            f"data.image_root={shapes_dir}", *EVAL]  # fmt: skip

    result = run_eval(*args, f"hydra.run.dir={tmp_path}/raise/eval")
    assert result.returncode == 1
    assert result.stderr.startswith("vlexp.evaluate: ") and f"{data}:2" in result.stderr
    assert "solution" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "raise" / "eval" / "metrics.json").exists()

    result = run_eval(*args, "data.on_bad_record=skip", f"hydra.run.dir={tmp_path}/skip/eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_json(tmp_path / "skip" / "eval" / "metrics.json")["num_prompts"] == 1
