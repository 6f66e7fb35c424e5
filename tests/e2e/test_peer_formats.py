"""Other frameworks' files through the real trainers: the SFT loss covers exactly the
assistant answers, and each GRPO reward receives its own record's solution."""

from __future__ import annotations

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


@pytest.mark.parametrize("writer", [peer_data.easyr1, peer_data.r1v_eval, peer_data.vlm_r1])
def test_each_grpo_reward_gets_its_own_records_solution(tmp_path, tiny_model, writer):
    path = writer(tmp_path)
    trainer, _ = build_trainer(
        [
            "algo=grpo",
            "reward=accuracy",
            "data=jsonl",
            f"data.train={path}",
            "data.image_cache=false",
        ],
        tmp_path / "run",
    )
    inputs = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    golds = [str(row["solution"]) for row in inputs]
    assert len(set(golds)) == len(golds) > 1

    def score(answers: list[str]) -> list[float]:
        completions = [[{"role": "assistant", "content": f"<answer>{a}</answer>"}] for a in answers]
        prompts = [row["prompt"] for row in inputs]
        rewards = trainer._calculate_rewards(inputs, prompts, completions, [[0]] * len(inputs))
        return rewards[:, 0].tolist()

    assert score(golds) == [1.0] * len(golds)
    assert score(golds[1:] + golds[:1]) == [0.0] * len(golds)  # another record's answer
