"""SFT trains on assistant tokens only: decode the label positions the loss actually sees."""

from __future__ import annotations

import pytest

from tests.data_forms import messages_jsonl, prefix_jsonl, shapes_records
from tests.helpers import build_trainer

IGNORE = -100


def first_batch(trainer):
    """The first training batch, through the trainer's own data loader and collator."""
    return next(iter(trainer.get_train_dataloader()))


def decoded_targets(trainer, batch) -> list[str]:
    tokenizer = trainer.processing_class.tokenizer
    return [
        tokenizer.decode(ids[labels != IGNORE])
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True)
    ]


def test_prefix_suffix_loss_covers_the_completion_only(tmp_path, shapes_dir, tiny_model):
    path = prefix_jsonl(shapes_dir, tmp_path / "d" / "train.jsonl", limit=4)
    trainer, _ = build_trainer(
        [
            "algo=sft",
            "data=jsonl",
            f"data.train={path}",
            "data.system_prompt='You count shapes.'",
            "train.per_device_train_batch_size=4",
        ],
        tmp_path / "run",
    )
    assert trainer.args.completion_only_loss and not trainer.args.assistant_only_loss
    batch = first_batch(trainer)
    targets = sorted(decoded_targets(trainer, batch))
    suffixes = sorted(r["suffix"] + "<|im_end|>\n" for r in shapes_records(shapes_dir, limit=4))
    assert targets == suffixes
    # what is masked: the system prompt, the question, every image pad, the padding
    image_pad = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    is_pad = batch["input_ids"] == image_pad
    assert is_pad.sum() > 0 and (batch["labels"][is_pad] == IGNORE).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE).all()
    assert all("You count shapes." not in t and "<|image_pad|>" not in t for t in targets)


def _images_allowed(shapes_dir) -> str:
    """The messages records point at the shapes images by absolute path: outside the JSONL
    file's folder, where the data check (which the one trainer builder runs) confines them."""
    return f"+data.allowed_image_roots=[{shapes_dir}]"


def test_messages_loss_covers_every_assistant_turn_only(tmp_path, shapes_dir, tiny_model):
    path = messages_jsonl(shapes_dir, tmp_path / "messages.jsonl", limit=4)
    trainer, _ = build_trainer(
        ["algo=sft", "data=jsonl", f"data.train={path}", "train.per_device_train_batch_size=4"]
        + [_images_allowed(shapes_dir)],
        tmp_path / "run",
    )
    # TRL's `{% generation %}` training template marks the assistant turns
    assert trainer.args.assistant_only_loss and not trainer.args.completion_only_loss
    assert "{% generation %}" in trainer.chat_template
    targets = sorted(decoded_targets(trainer, first_batch(trainer)))
    expected = sorted(
        f"{r['suffix']}<|im_end|>\n{r['solution']}<|im_end|>\n"
        for r in shapes_records(shapes_dir, limit=4)
    )
    assert targets == expected


@pytest.mark.parametrize("flag", ["completion_only_loss", "assistant_only_loss"])
def test_turning_the_mask_off_trains_on_the_prompt_too(tmp_path, shapes_dir, tiny_model, flag):
    """The mask is real: without it the prompt (and the image pads) enter the loss."""
    make = prefix_jsonl if flag == "completion_only_loss" else messages_jsonl
    path = make(shapes_dir, tmp_path / "d" / "train.jsonl", limit=2)
    trainer, _ = build_trainer(
        ["algo=sft", "data=jsonl", f"data.train={path}", f"algo.args.{flag}=false"]
        + [_images_allowed(shapes_dir)],
        tmp_path / "run",
    )
    targets = decoded_targets(trainer, first_batch(trainer))
    assert all("<|im_start|>user" in t and "<|image_pad|>" in t for t in targets)
