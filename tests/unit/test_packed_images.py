"""Packed images (MiniCPM-V) through TRL's log-prob loop: each chunk of rows gets exactly the
pixels and target sizes the processor itself packs for those rows' prompts, and the families
that pack say so in the table (the trainers that would cut them stop before loading).

The reference is the processor: `processor(text=..., images=...)` on the chunk's prompts.
"""

from __future__ import annotations

import pytest

from vlexp import families

PACKING = [f.name for f in families.FAMILIES.values() if f.packed_images and f.tiny]


def _processor(name: str):
    from transformers import AutoProcessor

    from vlexp.models import tiny

    return AutoProcessor.from_pretrained(tiny.ensure(name))


def _prompt(processor, images: int) -> str:
    content = [{"type": "image"}] * images + [{"type": "text", "text": "q"}]
    message = [{"role": "user", "content": content}]
    return processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("name", PACKING)
def test_each_chunk_gets_the_images_the_processor_packs_for_its_rows(name):
    import torch
    from PIL import Image

    from vlexp.algorithms.packed_images import WithPackedImages, packed_rows

    processor = _processor(name)
    # Rows of one, none and two images of different sizes (one sliced, one not).
    sizes = [[(224, 168)], [], [(56, 56), (500, 40)], [(97, 311)]]
    images = [[Image.new("RGB", s, (10 * i, 90, 200)) for s in row] for i, row in enumerate(sizes)]
    inputs = [{"prompt": None, "images": row} for row in images]
    seen = []
    model = WithPackedImages(lambda **kw: seen.append(kw), packed_rows(processor, inputs))
    for chunk in ([0, 1], [2, 3]):  # TRL's chunks: consecutive rows, in order
        model(input_ids=torch.zeros(len(chunk), 4, dtype=torch.long))
        with_images = [i for i in chunk if images[i]]
        texts = [_prompt(processor, len(images[i])) for i in with_images]
        expected = processor(text=texts, images=[images[i] for i in with_images])
        assert torch.equal(seen[-1]["pixel_values"], expected["pixel_values"])
        assert torch.equal(seen[-1]["target_sizes"], expected["target_sizes"])


def test_the_packing_family_refuses_trainers_that_cut_images_by_row():
    from trl import DPOTrainer, GRPOTrainer, RLOOTrainer, SFTTrainer
    from trl.experimental.online_dpo import OnlineDPOTrainer

    from vlexp.algorithms.packed_images import refusal

    for name in PACKING:
        family = families.FAMILIES[name]
        assert all(refusal(family, t) is None for t in (GRPOTrainer, RLOOTrainer, SFTTrainer))
        assert refusal(family, DPOTrainer) is None
        assert "cuts or repeats image inputs by row" in refusal(family, OnlineDPOTrainer)
    assert refusal(families.FAMILIES["qwen2_5_vl"], OnlineDPOTrainer) is None


@pytest.mark.parametrize("name", PACKING)
def test_generation_prompts_come_unpadded_as_the_processor_gives_each_alone(name):
    """TRL's generation tokenizes the batch's prompts with `apply_chat_template(tokenize=True)`
    and takes each row's ids as the prompt. MiniCPM-V's processor pads (left) by default, so
    a shorter prompt would carry pad tokens as text; with the processor vlexp loads, each row
    is the ids the processor gives that prompt alone."""
    from PIL import Image

    from tests.helpers import compose, tiny_preset
    from vlexp.models.loading import load_processor

    processor = load_processor(
        compose([f"model={tiny_preset(name)}"]).model, families.FAMILIES[name]
    )
    rows = [((224, 168), "How many shapes?"), ((56, 56), "q")]
    conversations = [
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": Image.new("RGB", size)}]
                + [{"type": "text", "text": text}],
            }
        ]
        for size, text in rows
    ]
    batch = processor.apply_chat_template(
        conversations, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    for conversation, ids in zip(conversations, batch["input_ids"], strict=True):
        alone = processor.apply_chat_template(
            [conversation], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"][0]
        assert list(ids) == list(alone)
