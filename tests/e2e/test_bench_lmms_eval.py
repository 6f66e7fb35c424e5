"""bench=: lmms-eval's real path (simple_evaluate, its task YAMLs, prompts and scoring) on the
tiny model, offline: a few local rows in each benchmark's real schema, loaded through a local
task YAML that `include`s lmms-eval's own one (only the data source changes), and scores
checked against hand-computed ones.

The tiny model's answers are made known at the model boundary: `generate` appends a scripted
answer for the row whose marker it finds in the prompt it was given, so every other step
(prompt building, the processor, the vision inputs, decoding, scoring) is lmms-eval's own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

pytest.importorskip("lmms_eval", reason='lmms-eval is the bench extra: pip install -e ".[bench]"')

from tests.helpers import REPO  # noqa: E402
from tests.wandb_reader import wandb_history  # noqa: E402
from vlexp import families  # noqa: E402
from vlexp.evaluation import bench, bench_backend  # noqa: E402


def image(seed: int, side: int = 56):
    from PIL import Image

    return Image.new("RGB", (side, side), ((seed * 70) % 256, 120, 200))


def mathvista_row(i: int, question_type: str, answer_type: str, choices, answer: str) -> dict:
    """A row with AI4Math/MathVista's columns (testmini)."""
    question = f"M{i} What is the value shown?"
    return {
        "pid": str(i + 1),
        "question": question,
        "image": f"images/{i + 1}.jpg",
        "decoded_image": image(i),
        "choices": choices,
        "unit": None,
        "precision": None,
        "answer": answer,
        "question_type": question_type,
        "answer_type": answer_type,
        "metadata": {
            "category": "math-targeted-vqa",
            "context": "bar chart",
            "grade": "high school",
            "img_height": 56,
            "img_width": 56,
            "language": "english",
            "skills": ["arithmetic reasoning"],
            "source": "ChartQA",
            "split": "testmini",
            "task": "figure question answering",
        },
        "query": f"Hint: answer the question.\nQuestion: {question}",
    }


def mmmu_row(i: int, question_type: str, options: str, answer: str, marker: str) -> dict:
    """A row with lmms-lab MMMU's columns (validation): options as a list's repr."""
    row = {
        "id": f"validation_Art_{i}",
        "question": f"<image 1> Which one is shown? {marker}",
        "options": options,
        "explanation": "",
        "image_1": image(i),
        "img_type": "['Photographs']",
        "answer": answer,
        "topic_difficulty": "Easy",
        "question_type": question_type,
        "subfield": "Fine Arts",
    }
    return row


def lmms_task_yaml(*parts: str) -> Path:
    import lmms_eval

    return Path(lmms_eval.__file__).parent / "tasks" / Path(*parts)


def local_task(folder: Path, name: str, real: Path, split: str, rows: list[dict]) -> None:
    """`name`: lmms-eval's task `real` with its data read from a local parquet file."""
    import datasets

    data = folder / f"{name}.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(data))
    task = {
        "include": str(real),
        "task": name,
        "dataset_path": "parquet",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(data)}},
        "test_split": split,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(task), encoding="utf-8")


# Per benchmark: lmms-eval's task YAML, split, rows in the real data set's columns (marker
# M<i> in the question), the scripted answer per marker, and the score by hand.
CASES = {
    "countbench": dict(
        real=("countbench", "countbench.yaml"),
        split="test",
        rows=[
            {"image": image(0), "text": "three cats", "question": "M0 How many cats?", "number": 3},
            {"image": image(1), "text": "five dogs", "question": "M1 How many dogs?", "number": 5},
            {"image": image(2), "text": "four cups", "question": "M2 How many cups?", "number": 4},
        ],
        # "five" counts: lmms-eval maps number words to numerals; 2 != 4.
        answers={"M0": "3", "M1": "five", "M2": "2"},
        metric="acc",
        expected=2 / 3,
    ),
    "chartqa": dict(
        real=("chartqa", "chartqa.yaml"),
        split="test",
        rows=[
            {"type": "human_test", "question": "M0 Peak value?", "answer": "40", "image": image(3)},
            {
                "type": "augmented_test",
                "question": "M1 Share?",
                "answer": "12.5",
                "image": image(4),
            },
            {
                "type": "human_test",
                "question": "M2 Which year?",
                "answer": "2019",
                "image": image(5),
            },
            {
                "type": "augmented_test",
                "question": "M3 Label?",
                "answer": "Asia",
                "image": image(6),
            },
        ],
        # relaxed accuracy: 41 is within 5% of 40, 11 is 12% off 12.5; text matches exactly.
        answers={"M0": "41", "M1": "11", "M2": "2019", "M3": "asia"},
        metric="relaxed_overall",
        expected=3 / 4,
    ),
    # mathvista_testmini_format: multiple-choice answers equal to a choice and integer answers
    # are extracted without lmms-eval's OpenAI judge. Its accuracy is in percent, 2 decimals.
    "mathvista_testmini": dict(
        real=("mathvista", "mathvista_testmini_format.yaml"),
        split="testmini",
        rows=[
            mathvista_row(0, "multi_choice", "text", ["12", "15", "18"], "15"),
            mathvista_row(1, "free_form", "integer", None, "7"),
            mathvista_row(2, "free_form", "integer", None, "9"),
        ],
        answers={"M0": "15", "M1": "7", "M2": "8"},
        metric="llm_as_judge_eval",
        expected=66.67,
    ),
    # MMMU: the letter of a choice (C is wrong), and an open answer compared as a number.
    "mmmu_val": dict(
        real=("mmmu", "mmmu_val.yaml"),
        split="validation",
        rows=[
            mmmu_row(1, "multiple-choice", "['cat', 'dog', 'fish']", "B", "M0"),
            mmmu_row(2, "multiple-choice", "['red', 'green', 'blue']", "A", "M1"),
            mmmu_row(3, "open", "[]", "42", "M2"),
        ],
        answers={"M0": "B", "M1": "C", "M2": "42"},
        metric="mmmu_acc",
        expected=round(2 / 3, 5),  # lmms-eval's MMMU rounds to 5 decimals
    ),
    # RefCOCO REC: one annotation, two referring expressions (lmms-eval makes a row of each);
    # the pixel box [10, 20, 40, 40] (x, y, w, h) of a 100x100 image is [.1, .2, .5, .6]
    # relative; the second answer overlaps it with IoU 1/3 < 0.5.
    "refcoco": dict(
        real=("refcoco", "refcoco_bbox_rec_val.yaml"),
        split="val",
        rows=[
            {
                "question_id": "7",
                "image": image(7, side=100),
                "question": "Please carefully observe the area circled in the image.",
                "answer": ["the left dog M0", "dog on the left M1"],
                "segmentation": [10.0, 20.0, 50.0, 20.0, 50.0, 60.0],
                "bbox": [10.0, 20.0, 40.0, 40.0],
                "iscrowd": 0,
                "file_name": "COCO_train2014_000000000007.jpg",
            }
        ],
        answers={"M0": "[0.1, 0.2, 0.5, 0.6]", "M1": "[0.3, 0.2, 0.7, 0.6]"},
        metric="refcoco_ACC@0.5",
        expected=1 / 2,
        n=2,
    ),
}


@pytest.fixture(scope="module")
def bench_cfg(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("lmms-tasks")
    tasks = {}
    for name, case in CASES.items():
        local_task(
            folder, f"local_{name}", lmms_task_yaml(*case["real"]), case["split"], case["rows"]
        )
        tasks[name] = {"task": f"local_{name}", "metric": case["metric"], "limit": None}
    model = OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml")
    model.name_or_path = str(tiny_model)
    return OmegaConf.create(
        {
            "model": model,
            "bench": {
                "tasks": tasks,
                "limit": None,
                "include_path": str(folder),
                "only_include_path": True,
                "batch_size": 1,
                "gen_kwargs": None,
            },
        }
    )


def scripted(model, tokenizer, answers: dict[str, str]) -> None:
    """model.generate appends answers[marker] (then EOS) for the marker in each prompt."""
    import torch

    def generate(input_ids=None, **_):
        rows = []
        for ids in input_ids:
            prompt = tokenizer.decode(ids)
            (marker,) = [m for m in answers if re.search(rf"\b{m}\b", prompt)]
            new = tokenizer(answers[marker], add_special_tokens=False).input_ids
            rows.append(torch.cat([ids, torch.tensor([*new, tokenizer.eos_token_id])]))
        assert len({len(r) for r in rows}) == 1, "batch_size 1 in these tests"
        return torch.stack(rows)

    model.generate = generate


@pytest.fixture(scope="module")
def report(bench_cfg, tmp_path_factory):
    from vlexp.models.loading import load_model, load_processor

    processor = load_processor(bench_cfg.model, families.resolve(bench_cfg.model))
    model = load_model(bench_cfg.model, {}).eval()
    out = tmp_path_factory.mktemp("bench-out")
    found = {}
    with pytest.MonkeyPatch.context() as env:
        # lmms-eval's MathVista module builds its OpenAI judge client on import; these rows
        # are all scored without calling it (a call would fail: no network, and score 0).
        env.setenv("OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY", "unused-by-these-rows"))
        for name, case in CASES.items():
            cfg = OmegaConf.merge(bench_cfg, {"bench": {"tasks": {}}})
            cfg.bench.tasks = {name: bench_cfg.bench.tasks[name]}
            scripted(model, processor.tokenizer, case["answers"])
            found.update(bench.run(model, processor, cfg.bench, cfg.model, out / name))
    return found, out


# The tiny build of every model preset whose family has an lmms-eval backend wired but the
# default `tiny` (which `report` runs on every benchmark above), and but a build's variants
# (`tiny://<family>+<variant>`, e.g. tiny_tools: the same family and processor as its build,
# a longer warm-up that would be built for nothing here).
TINY_FAMILIES = sorted(
    p.stem
    for p in (REPO / "conf" / "model").glob("tiny_*.yaml")
    if families.tiny_variant(tiny := OmegaConf.load(p).name_or_path[len("tiny://") :]) is None
    and bench_backend.problem(families.of_tiny(tiny).model_types[0]) is None
)


@pytest.mark.parametrize("preset", TINY_FAMILIES)
def test_bench_scores_countbench_on_each_family(preset, bench_cfg, tmp_path):
    """lmms-eval's chat class for the family (Qwen3_VL for Qwen3-VL, its MoE, Qwen3.5) on
    that family's tiny build and processor, countbench's rows scored as for `tiny`."""
    from vlexp.models.loading import load_model, load_processor

    cfg = OmegaConf.merge(
        bench_cfg, {"model": OmegaConf.load(REPO / "conf/model" / f"{preset}.yaml")}
    )
    cfg.bench.tasks = {"countbench": bench_cfg.bench.tasks["countbench"]}
    processor = load_processor(cfg.model, families.resolve(cfg.model))
    model = load_model(cfg.model, {}).eval()
    scripted(model, processor.tokenizer, CASES["countbench"]["answers"])
    found = bench.run(model, processor, cfg.bench, cfg.model, tmp_path)
    assert found["countbench"]["score"] == pytest.approx(CASES["countbench"]["expected"])


@pytest.mark.parametrize("name", list(CASES))
def test_bench_scores_match_hand_computed(report, name):
    found, _ = report
    assert found[name]["score"] == pytest.approx(CASES[name]["expected"])
    assert found[name]["n"] == CASES[name].get("n", len(CASES[name]["rows"]))


def test_bench_keeps_lmms_eval_output(report):
    _, out = report
    for name in CASES:
        results = list((out / name).rglob("*_results.json"))
        samples = list((out / name).rglob(f"*_samples_local_{name}.jsonl"))
        assert results and samples, sorted((out / name).rglob("*"))


def test_bench_cli_run_dir_to_summary_and_compare(bench_cfg, tiny_model, tmp_path):
    """`python -m vlexp.evaluate run=RUN bench=countbench` as a user runs it, on the tiny
    model's own (unscripted) answers: RUN/eval/bench/ keeps lmms-eval's files, and the score
    in summary.json, the run's summary.json and `vlexp.compare` is lmms-eval's own mean of
    its per-sample `acc`."""
    import json
    import shutil
    import subprocess
    import sys

    from tests.helpers import compose
    from vlexp import compare

    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "final")
    cfg = compose([f"model.name_or_path={tiny_model}"])
    (run / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run / "summary.json").write_text(json.dumps({"steps": 3}))
    args = [
        f"run={run}",
        "bench=countbench",
        "bench.tasks.countbench.task=local_countbench",
        "bench.tasks.countbench.dataset=null",
        f"bench.include_path={bench_cfg.bench.include_path}",
        "bench.only_include_path=true",
        "logger=wandb",
        "logger.mode=offline",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = run / "eval" / "bench"
    (samples,) = out.rglob("*_samples_local_countbench.jsonl")
    per_sample = [json.loads(line)["acc"] for line in samples.read_text().splitlines()]
    assert len(per_sample) == len(CASES["countbench"]["rows"])
    expected = sum(per_sample) / len(per_sample)
    assert json.loads((out / "summary.json").read_text())["bench"]["countbench"]["score"] == (
        pytest.approx(expected)
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["bench"]["countbench"]["score"] == pytest.approx(
        expected
    )
    header, body = compare.table(compare.find_runs([run]))
    assert float(body[0][header.index("countbench")]) == pytest.approx(expected, abs=1e-3)
    (logged,) = [row for row in wandb_history(run / "eval") if "eval/bench/countbench" in row]
    assert logged["eval/bench/countbench"] == pytest.approx(expected)


@pytest.mark.slow  # a training run plus lmms-eval in a fresh interpreter: ~50 s on 2 cores
def test_bench_every_eval_steps_during_training(bench_cfg, tmp_path):
    """`train.eval_steps` with bench=: lmms-eval at each eval step, its score in
    metrics.jsonl as eval/bench/<name> at that step, its files in eval/bench/step-N/."""
    import json

    from tests.helpers import read_metrics, run_cli

    run = tmp_path / "run"
    done = run_cli(
        "algo=sft",
        "train.max_steps=2",
        "train.eval_steps=2",
        "data.eval=null",
        "bench=countbench",
        "bench.tasks.countbench.task=local_countbench",
        "bench.tasks.countbench.dataset=null",
        f"bench.include_path={bench_cfg.bench.include_path}",
        "bench.only_include_path=true",
        "bench.limit=2",
        f"hydra.run.dir={run}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (samples,) = (run / "eval" / "bench" / "step-2").rglob("*_samples_local_countbench.jsonl")
    per_sample = [json.loads(line)["acc"] for line in samples.read_text().splitlines()]
    assert len(per_sample) == 2  # bench.limit
    (row,) = [r for r in read_metrics(run) if "eval/bench/countbench" in r]
    assert row["step"] == 2
    assert row["eval/bench/countbench"] == pytest.approx(sum(per_sample) / 2)
