"""Other frameworks' files through the real trainers: the SFT loss covers exactly the
assistant answers, and each GRPO reward receives its own record's solution."""

from __future__ import annotations

import json
import math

import pytest

from tests import peer_data
from tests.helpers import build_trainer

IGNORE = -100


def test_llamafactory_mllm_demo_trains_on_the_assistant_turns_only(tmp_path, tiny_model):
    root = tmp_path / "data"
    peer_data.llamafactory(root)
    trainer, _ = build_trainer(
        [
            "algo=sft",
            "data=jsonl",
            f"data.dataset_info={root}",
            "data.train=mllm_demo",
            "train.per_device_train_batch_size=2",
            "data.image_cache=false",
        ],
        tmp_path / "run",
    )
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = trainer.processing_class.tokenizer
    targets = sorted(
        tokenizer.decode(ids[labels != IGNORE])
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True)
    )
    assert targets == sorted(
        [
            "They're Kane and Gretzka from Bayern Munich.<|im_end|>\n"
            "They are celebrating on the soccer field.<|im_end|>\n",
            "He's Thomas Muller from Bayern Munich.<|im_end|>\n"
            "Because he's sliding on his knees to celebrate.<|im_end|>\n",
        ]
    )
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    per_row = sorted(int((ids == pad).sum()) for ids in batch["input_ids"])
    assert per_row == [8, 4 + 16]  # 2.jpg alone; 1.jpg and 3.jpg in the two-image record
    assert "<image>" not in tokenizer.decode(batch["input_ids"][0])


NO_CACHE = "data.image_cache=false"


def _llamafactory(name: str):
    def data(root):
        peer_data.llamafactory(root)
        return ["data=jsonl", f"data.dataset_info={root}", f"data.train={name}", NO_CACHE]

    return data


def _jsonl(writer, key: str | None = None):
    def data(root):
        path = writer(root) if key is None else writer(root)[key]
        return ["data=jsonl", f"data.train={path}", NO_CACHE]

    return data


def _hub(writer):
    def data(root):
        return ["data=hf", "data.name=parquet", f"data.data_files={writer(root)}"]

    return data


def _rows(trainer, algo: str) -> list[tuple[str, int]]:
    """(the text the loss covers, image pad tokens) per row of the first batch."""
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = trainer.processing_class.tokenizer
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    mask = batch["labels"] != IGNORE if algo == "sft" else batch["completion_mask"] == 1
    return sorted(
        (tokenizer.decode(ids[keep]), int((ids == pad).sum()))
        for ids, keep in zip(batch["input_ids"], mask, strict=True)
    )


END = "<|im_end|>\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            _llamafactory("alpaca_mm"),
            [(f"Hi! Send me a picture.{END}A blue square.{END}", 8)],
        ),
        (
            _jsonl(peer_data.swift, "sft"),
            [
                (f"It equals 2{END}It equals 3{END}", 0),
                (f"The first one is a kitten, and the second one is a puppy.{END}", 4 + 8),
            ],
        ),
        (
            _jsonl(peer_data.qwen_vl),
            [
                (f"A red apple on a wooden table{END}", 4),
                (f"The first cat is an orange tabby, the second a gray Siamese.{END}", 16 + 8),
            ],
        ),
        (
            _hub(peer_data.trl_llava),
            [
                (f"A wide blue rectangle.{END}", 8),
                (f"The square is blue.{END}It is white.{END}", 4),
            ],
        ),
    ],
    ids=["llamafactory_alpaca", "ms_swift", "qwen_vl_finetune", "trl_llava_instruct_mix"],
)
def test_sft_loss_covers_exactly_the_assistant_answers(tmp_path, tiny_model, data, expected):
    overrides = ["algo=sft", *data(tmp_path / "data")]
    trainer, _ = build_trainer(
        [*overrides, "train.per_device_train_batch_size=2"], tmp_path / "run"
    )
    assert _rows(trainer, "sft") == sorted(expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_llamafactory("dpo_mm"), [("It is blue.", 4), ("It is red.", 4)]),
        (
            _jsonl(peer_data.swift, "dpo"),
            [("This is a kitten.", 4)] * 2 + [("This is a puppy.", 4)] * 2,
        ),
    ],
    ids=["llamafactory_sharegpt_ranking", "ms_swift_rejected_response_and_messages"],
)
def test_dpo_loss_covers_exactly_chosen_and_rejected(tmp_path, tiny_model, data, expected):
    overrides = ["algo=dpo", *data(tmp_path / "data")]
    trainer, _ = build_trainer(
        [*overrides, "train.per_device_train_batch_size=2"], tmp_path / "run"
    )
    # chosen rows then rejected rows; each the prompt's image and, under the mask, its answer
    assert _rows(trainer, "dpo") == sorted((f"{text}{END}", pads) for text, pads in expected)


@pytest.mark.parametrize(
    "data",
    [
        _jsonl(peer_data.easyr1),
        _jsonl(peer_data.r1v_eval),
        _jsonl(peer_data.vlm_r1),
        _jsonl(peer_data.visual_rft),
        _jsonl(peer_data.swift, "grpo"),
        _hub(peer_data.open_r1),
    ],
    ids=["easyr1", "r1v_eval", "vlm_r1", "visual_rft", "ms_swift", "open_r1_multimodal"],
)
def test_each_grpo_reward_gets_its_own_records_solution(tmp_path, tiny_model, data):
    """Through TRL's own reward call: `accuracy` and a probe that scores 1.0 only for the
    exact text of the `solution` TRL hands it (what any reward of the user's would get)."""
    probe = "tests.e2e.test_peer_formats.solution_probe"
    trainer, _ = build_trainer(
        ["algo=grpo", "reward=accuracy", *data(tmp_path / "data")]
        + [f"+reward.funcs.probe._target_={probe}", "+reward.funcs.probe._partial_=true"],
        tmp_path / "run",
    )
    inputs = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    golds = [str(row["solution"]) for row in inputs]
    assert len(set(golds)) == len(golds) > 1

    def score(answers: list[str]) -> list[list[float]]:
        completions = [[{"role": "assistant", "content": a}] for a in answers]
        prompts = [row["prompt"] for row in inputs]
        rewards = trainer._calculate_rewards(inputs, prompts, completions, [[0]] * len(inputs))
        return rewards.T.tolist()  # per reward: accuracy, probe

    accuracy, probe_scores = score(golds)
    assert probe_scores == [1.0] * len(golds)
    assert score(golds[1:] + golds[:1])[1] == [0.0] * len(golds)  # another record's solution
    if "Position" not in golds[0]:  # accuracy compares detection lists by their last number
        assert accuracy == [1.0] * len(golds)
        assert score(golds[1:] + golds[:1])[0] == [0.0] * len(golds)


def solution_probe(completions, solution, **kwargs):
    """1.0 when the completion is exactly the `solution` TRL passed for its record."""
    return [float(c[0]["content"] == str(s)) for c, s in zip(completions, solution, strict=True)]


SEEN: list[dict] = []
GOLD = {"Find x.": "2 \\sqrt { 221 }", "Find the ratio": "\\frac { 5 } { 2 }"}


def geometry_probe(prompts, completions, solution, **kwargs):
    """Records what TRL passed; 1.0 when the solution is the one of the prompt's question."""
    SEEN.append({"prompts": prompts, "solution": solution})
    asked = [next(q for q in GOLD if q in json.dumps(p, default=str)) for p in prompts]
    return [float(GOLD[q] == s) for q, s in zip(asked, solution, strict=True)]


@pytest.mark.slow
def test_easyr1_rows_train_with_grpo_and_each_reward_gets_its_own_answer(tmp_path, tiny_model):
    from tests.e2e.inprocess import train_in_process

    path = peer_data.easyr1(tmp_path / "data")
    SEEN.clear()
    _, rows = train_in_process(
        [
            "data=jsonl",
            f"data.train={path}",
            "reward=[accuracy]",
            "+reward.funcs.probe._target_=tests.e2e.test_peer_formats.geometry_probe",
            "+reward.funcs.probe._partial_=true",
            "+reward.weights.probe=0.0",
            "train.max_steps=2",
            "train.per_device_train_batch_size=4",
        ],
        tmp_path / "run",
    )
    assert len(SEEN) == 2 and all(len(call["solution"]) == 4 for call in SEEN)
    assert all(row["rewards/geometry_probe/mean"] == 1.0 for row in rows)
    # the image sits where the problem's <image> tag was; no tag is left in the text
    assert all(
        "<image>" not in json.dumps(p, default=str) for call in SEEN for p in call["prompts"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sft", "dpo"])
def test_llamafactory_and_ms_swift_files_train(tmp_path, tiny_model, algo):
    from tests.helpers import compose, read_metrics
    from vlexp.recipe.run import train

    if algo == "sft":
        root = tmp_path / "data"
        peer_data.llamafactory(root)
        data = [f"data.dataset_info={root}", "data.train=mllm_demo"]
    else:
        data = [f"data.train={peer_data.swift(tmp_path / 'data')['dpo']}"]
    cfg = compose([f"algo={algo}", "data=jsonl", *data, "train.max_steps=2"])
    (tmp_path / "run").mkdir()
    train(cfg, tmp_path / "run")
    losses = [row["loss"] for row in read_metrics(tmp_path / "run") if "loss" in row]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
