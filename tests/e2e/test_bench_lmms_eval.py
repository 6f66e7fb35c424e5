"""bench=: lmms-eval's real path (simple_evaluate, its task YAMLs, prompts and scoring) on the
tiny model, offline: a few local rows in each benchmark's real schema, loaded through a local
task YAML that `include`s lmms-eval's own one (only the data source changes), and scores
checked against hand-computed ones.

The tiny model's answers are made known at the model boundary: `generate` appends a scripted
answer for the row whose marker it finds in the prompt it was given, so every other step
(prompt building, the processor, the vision inputs, decoding, scoring) is lmms-eval's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

pytest.importorskip("lmms_eval", reason='lmms-eval is the bench extra: pip install -e ".[bench]"')

from tests.helpers import REPO  # noqa: E402
from vlexp.evaluation import bench  # noqa: E402


def image(seed: int):
    from PIL import Image

    return Image.new("RGB", (56, 56), ((seed * 70) % 256, 120, 200))


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
            (marker,) = [m for m in answers if f"{m} " in prompt]
            new = tokenizer(answers[marker], add_special_tokens=False).input_ids
            rows.append(torch.cat([ids, torch.tensor([*new, tokenizer.eos_token_id])]))
        assert len({len(r) for r in rows}) == 1, "batch_size 1 in these tests"
        return torch.stack(rows)

    model.generate = generate


@pytest.fixture(scope="module")
def report(bench_cfg, tmp_path_factory):
    from vlexp.models.loading import load_model, load_processor

    processor = load_processor(bench_cfg.model)
    model = load_model(bench_cfg.model, {}).eval()
    out = tmp_path_factory.mktemp("bench-out")
    found = {}
    for name, case in CASES.items():
        cfg = OmegaConf.merge(bench_cfg, {"bench": {"tasks": {}}})
        cfg.bench.tasks = {name: bench_cfg.bench.tasks[name]}
        scripted(model, processor.tokenizer, case["answers"])
        found.update(bench.run(model, processor, cfg, out / name))
    return found, out


@pytest.mark.parametrize("name", list(CASES))
def test_bench_scores_match_hand_computed(report, name):
    found, _ = report
    assert found[name]["score"] == pytest.approx(CASES[name]["expected"])
    assert found[name]["n"] == len(CASES[name]["rows"])


def test_bench_keeps_lmms_eval_output(report):
    _, out = report
    for name in CASES:
        results = list((out / name).rglob("*_results.json"))
        samples = list((out / name).rglob(f"*_samples_local_{name}.jsonl"))
        assert results and samples, sorted((out / name).rglob("*"))
        assert (out / name / bench.SUMMARY).is_file()
