"""`python -m vlexp.evaluate` without a model: composing, locating runs, merging configs, HTML."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.helpers import REPO, compose
from vlexp.evaluate import EvalError, eval_dir, locate, plan
from vlexp.evaluation.core import check
from vlexp.evaluation.gallery import write_html


def compose_eval(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vlexp.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="evaluate", overrides=overrides)


def fake_run(tmp_path, overrides: list[str], model_dirs=("final",)):
    """A run dir as training leaves it, minus weights: config.resolved.yaml + model folders."""
    cfg = compose(overrides)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    for name in model_dirs:
        (run / name).mkdir()
        (run / name / "config.json").write_text("{}")
    return run


def test_eval_groups_compose():
    cfg = compose([])
    assert cfg.eval.temperature == 0.0 and cfg.eval.num_samples == 1
    assert cfg.train.eval_steps is None
    sampled = compose(["eval=pass_at_k"])
    assert sampled.eval.num_samples == 8 and sampled.eval.temperature == 1.0
    assert sampled.eval.max_new_tokens == cfg.eval.max_new_tokens  # inherited from greedy
    check(cfg.eval)
    check(sampled.eval)


def test_greedy_with_several_samples_is_rejected():
    cfg = compose(["eval.num_samples=4"])
    with pytest.raises(ValueError, match=r"eval.num_samples=4 with eval.temperature=0.0"):
        check(cfg.eval)


def test_evaluate_config_is_the_root_config_plus_run():
    cfg = compose_eval(["model=tiny", "data=shapes"])
    assert cfg.run is None and cfg.model.name == "tiny" and cfg.eval.name == "greedy"
    OmegaConf.resolve(cfg)


def test_locate_accepts_a_run_dir_final_or_checkpoint(tmp_path):
    run = fake_run(tmp_path, [], model_dirs=("final", "checkpoint-2"))
    assert locate(str(run)) == (run, run / "final")
    assert locate(str(run / "final")) == (run, run / "final")
    assert locate(str(run / "checkpoint-2")) == (run, run / "checkpoint-2")
    assert eval_dir(str(run)) == str(run / "eval")
    assert eval_dir(str(run / "checkpoint-2")) == str(run / "eval" / "checkpoint-2")
    assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d/eval", eval_dir(None))
    with pytest.raises(EvalError, match=r"run=.*nowhere: not a vlexp run dir"):
        locate(str(tmp_path / "nowhere"))


def test_run_config_wins_unless_the_command_line_names_it(tmp_path):
    run = fake_run(tmp_path, ["data=jsonl", "data.eval=/data/eval.jsonl", "data.train=/t.jsonl",
                              "reward=think_format", "model.max_pixels=50176"])  # fmt: skip
    cli = compose_eval([f"run={run}"])
    merged, model_dir, run_dir = plan(cli, [f"run={run}"])
    assert (model_dir, run_dir) == (run / "final", run)
    assert merged.data.eval == "/data/eval.jsonl" and list(merged.reward.funcs) == ["think_format"]
    assert merged.model.max_pixels == 50176  # the run's pixel limits

    # A key adjusts the run's node; a group replaces it.
    overrides = [f"run={run}", "data.eval=/other/eval.jsonl", "reward=accuracy", "eval.limit=5"]
    merged, _, _ = plan(compose_eval(overrides), overrides)
    assert merged.data.name == "jsonl" and merged.data.eval == "/other/eval.jsonl"
    assert list(merged.reward.funcs) == ["accuracy"] and merged.eval.limit == 5

    with pytest.raises(EvalError, match="the run decides the model"):
        plan(compose_eval([f"run={run}", "model=tiny"]), [f"run={run}", "model=tiny"])


def test_a_run_from_before_eval_existed_gets_the_default_eval(tmp_path):
    run = fake_run(tmp_path, [])
    resolved = OmegaConf.load(run / "config.resolved.yaml")
    del resolved["eval"]
    (run / "config.resolved.yaml").write_text(OmegaConf.to_yaml(resolved))
    merged, _, _ = plan(compose_eval([f"run={run}"]), [f"run={run}"])
    assert merged.eval.name == "greedy"


def test_bad_run_fails_fast_with_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", f"run={missing}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"vlexp.evaluate: run={missing}: not a vlexp run dir (no config.resolved.yaml in it or its "
        "parent, or no model in it): give a run dir such as outputs/DATE/TIME, or its "
        "checkpoint-N/ or final/ folder"
    )
    assert not missing.exists()


def test_print_config_imports_no_torch():
    code = (
        "import sys, runpy; sys.argv = ['x', '--cfg', 'job', 'model=tiny'];\n"
        "try: runpy.run_module('vlexp.evaluate', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "run: null" in result.stdout and "eval:" in result.stdout


def test_gallery_embeds_each_image_and_escapes_text(tmp_path):
    from PIL import Image

    image_path = tmp_path / "a.png"
    Image.new("RGB", (300, 150), (220, 40, 40)).save(image_path)
    samples = [
        {"index": 0, "sample": 0, "id": "r0", "prompt": "What <b>colour</b>?",
         "images": [str(image_path)], "solution": "red", "completion": "<answer>red</answer>",
         "length": 5, "clipped": False, "rewards": {"accuracy": 1.0}, "reward": 1.0,
         "correct": True, "format": False},
        {"index": 1, "sample": 0, "id": "r1", "prompt": "Lost?", "images": [str(tmp_path / "x.png")],
         "solution": "2", "completion": "", "length": 64, "clipped": True,
         "rewards": {"accuracy": 0.0}, "reward": 0.0, "correct": False, "format": False},
    ]  # fmt: skip
    record = {"accuracy": 0.5, "reward": 0.5, "model": "m", "decoding": {"temperature": 0.0}}
    page = write_html(tmp_path / "samples.html", record, samples, {"image_max_side": 128})
    text = page.read_text()
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(sources) == 1
    with Image.open(io.BytesIO(base64.b64decode(sources[0]))) as thumb:
        assert thumb.size == (128, 64)  # shrunk to image_max_side, aspect kept
        assert thumb.getpixel((10, 10)) == (220, 40, 40)
    assert "What &lt;b&gt;colour&lt;/b&gt;?" in text and "&lt;answer&gt;red&lt;/answer&gt;" in text
    assert f"image not found: {tmp_path / 'x.png'}" in text
    assert "correct" in text and "wrong" in text and "64 tokens (clipped)" in text
    assert "file://" not in text and "http" not in text.replace("http-equiv", "")
    assert_balanced(text)


def assert_balanced(page: str) -> None:
    """Every opened element is closed, in order (a broken card would swallow the rest)."""
    from html.parser import HTMLParser

    void = {"meta", "img", "br"}
    stack: list[str] = []

    class Checker(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag not in void:
                stack.append(tag)

        def handle_endtag(self, tag):
            assert stack and stack.pop() == tag, tag

    Checker().feed(page)
    assert stack == []


def test_eval_steps_is_validated_before_any_model_loads():
    from vlexp.validate import ConfigError, validate

    cfg = compose(["algo=sft", "data=jsonl", "data.train=/t.jsonl", "train.eval_steps=5"])
    with pytest.raises(ConfigError, match=r"train.eval_steps=5 needs an eval split.*data.eval="):
        validate(cfg)
    cfg = compose(["train.eval_steps=5", "eval.num_samples=2"])
    with pytest.raises(ConfigError, match="eval.num_samples=2 with eval.temperature=0.0"):
        validate(cfg)
    validate(compose(["train.eval_steps=5", "eval=pass_at_k"]))


def test_compare_shows_eval_metrics_next_to_training_metrics(tmp_path, capsys):
    import json

    from vlexp.compare import find_runs, table
    from vlexp.recipe.sweep import objective

    run = tmp_path / "sft"
    (run / "eval").mkdir(parents=True)
    rows = [
        {"step": 2, "loss": 0.5},
        {"step": 2, "eval/accuracy": 0.25, "eval/reward": 1.25, "eval/format_rate": 1.0},
        {"step": 4, "loss": 0.4, "reward": 1.5},
        {"step": 4, "train_runtime": 3.0},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "eval" / "metrics.json").write_text(json.dumps(
        {"accuracy": 0.5, "reward": 1.5, "format_rate": 1.0, "step": 4, "run": str(run),
         "decoding": {"temperature": 0.0}, "overrides": [f"run={run}"]}
    ))  # fmt: skip
    base = tmp_path / "base"
    (base / "eval").mkdir(parents=True)
    (base / "eval" / "metrics.json").write_text(json.dumps(
        {"accuracy": 0.125, "reward": 1.125, "format_rate": 1.0, "step": 0, "run": None,
         "overrides": ["model=tiny", "data=shapes"]}
    ))  # fmt: skip

    runs = find_runs([base, run])
    header, body = table(runs)
    cells = [dict(zip(header, row, strict=True)) for row in body]
    assert [c["eval accuracy"] for c in cells] == ["0.125", "0.5"]  # after training: eval/
    assert [c["eval reward"] for c in cells] == ["1.125", "1.5"]
    assert cells[1]["loss"] == "0.5 -> 0.4" and cells[1]["steps"] == "4"  # eval rows are not steps
    assert runs[1].series("eval/accuracy") == ([2, 4], [0.25, 0.5])  # training eval, then eval/
    assert objective(run, "reward") == 1.5


def test_train_eval_steps_stays_vlexp_s_own_and_trl_eval_steps_stay_in_algo_args(tmp_path):
    """train.eval_steps drives generation eval; it must not reset TRL's loss-eval schedule."""
    from vlexp.recipe.run import build_args

    cfg = compose(
        ["algo=reward_model", "+algo.args.eval_strategy=steps", "+algo.args.eval_steps=40"]
    )
    args = build_args(cfg, tmp_path)
    assert args.eval_steps == 40 and args.eval_strategy == "steps"
    assert build_args(compose(["train.eval_steps=5"]), tmp_path).eval_strategy == "no"
