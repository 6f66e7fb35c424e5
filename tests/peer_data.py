"""Sample files in the formats other frameworks document, written as their docs and example
files write them (sources named per function), with small images of distinct sizes so a test
can tell which image landed where: 56x56 px is 4 image tokens for the tiny model, 112x56 is 8,
112x112 is 16.
"""

from __future__ import annotations

import json
from pathlib import Path

SIZES = {"1.jpg": (56, 56), "2.jpg": (112, 56), "3.jpg": (112, 112)}
TOKENS = {"1.jpg": 4, "2.jpg": 8, "3.jpg": 16}  # tiny model: min 3136, max 12544 pixels


def images(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, size in SIZES.items():
        Image.new("RGB", size, (30 * len(name), 90, 160)).save(folder / name, format="JPEG")
    return folder


def write_json(path: Path, rows: list[dict]) -> Path:
    """A JSON array, indented as LLaMA-Factory and Qwen-VL ship theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def llamafactory(root: Path) -> Path:
    """LLaMA-Factory's data/ folder: mllm_demo.json (the second image tag ends a later turn),
    an alpaca file with history, a sharegpt preference file, and dataset_info.json
    (hiyouga/LLaMA-Factory data/mllm_demo.json, data/dpo_en_demo.json, data/README.md)."""
    images(root / "mllm_demo_data")
    write_json(
        root / "mllm_demo.json",
        [
            {
                "messages": [
                    {"content": "<image>Who are they?", "role": "user"},
                    {
                        "content": "They're Kane and Gretzka from Bayern Munich.",
                        "role": "assistant",
                    },
                    {"content": "What are they doing?<image>", "role": "user"},
                    {"content": "They are celebrating on the soccer field.", "role": "assistant"},
                ],
                "images": ["mllm_demo_data/1.jpg", "mllm_demo_data/3.jpg"],
            },
            {
                "messages": [
                    {"content": "<image>Who is he?", "role": "user"},
                    {"content": "He's Thomas Muller from Bayern Munich.", "role": "assistant"},
                    {"content": "Why is he on the ground?", "role": "user"},
                    {
                        "content": "Because he's sliding on his knees to celebrate.",
                        "role": "assistant",
                    },
                ],
                "images": ["mllm_demo_data/2.jpg"],
            },
        ],
    )
    write_json(
        root / "alpaca_mm.json",
        [
            {
                "instruction": "<image>Describe the picture.",
                "input": "Be brief.",
                "output": "A blue square.",
                "system": "You describe images.",
                "history": [["Hello", "Hi! Send me a picture."]],
                "images": ["mllm_demo_data/2.jpg"],
            }
        ],
    )
    write_json(
        root / "dpo_mm.json",
        [
            {
                "conversations": [
                    {"from": "system", "value": "You are a careful assistant."},
                    {"from": "human", "value": "<image>What colour is the square?"},
                ],
                "chosen": {"from": "gpt", "value": "It is blue."},
                "rejected": {"from": "gpt", "value": "It is red."},
                "images": ["mllm_demo_data/1.jpg"],
            }
        ],
    )
    info = {
        "mllm_demo": {
            "file_name": "mllm_demo.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        },
        "alpaca_mm": {
            "file_name": "alpaca_mm.json",
            "columns": {
                "prompt": "instruction",
                "query": "input",
                "response": "output",
                "system": "system",
                "history": "history",
                "images": "images",
            },
        },
        "dpo_mm": {
            "file_name": "dpo_mm.json",
            "ranking": True,
            "formatting": "sharegpt",
            "columns": {
                "messages": "conversations",
                "chosen": "chosen",
                "rejected": "rejected",
                "images": "images",
            },
        },
        "rlhf_v": {"hf_hub_url": "llamafactory/RLHF-V", "ranking": True, "formatting": "sharegpt"},
    }
    path = root / "dataset_info.json"
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def swift(root: Path) -> dict[str, Path]:
    """ms-swift's documented records (docs/source_en/Customization/Custom-dataset.md,
    BestPractices/GRPO-Multi-Modal-Training.md), image paths absolute as its docs advise."""
    folder = images(root / "img")
    one, two = str(folder / "1.jpg"), str(folder / "2.jpg")
    kitten = [
        {"role": "user", "content": "<image>What is this?"},
        {"role": "assistant", "content": "This is a kitten."},
    ]
    puppy = [kitten[0], {"role": "assistant", "content": "This is a puppy."}]
    return {
        "sft": write_jsonl(
            root / "sft.jsonl",
            [
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": "<image><image>What is the difference between the two images?",
                        },
                        {
                            "role": "assistant",
                            "content": "The first one is a kitten, and the second one is a puppy.",
                        },
                    ],
                    "images": [one, two],
                },
                {
                    "system": "You are a useful and harmless math calculator",
                    "query": "What about adding 1?",
                    "response": "It equals 3",
                    "history": [["What is 1 + 1?", "It equals 2"]],
                },
            ],
        ),
        "dpo": write_jsonl(
            root / "dpo.jsonl",
            [
                {"messages": kitten, "images": [one], "rejected_response": "This is a puppy."},
                {
                    "messages": kitten,
                    "images": [one],
                    "rejected_messages": puppy,
                    "rejected_images": [one],
                },
            ],
        ),
        "grpo": write_jsonl(
            root / "grpo.jsonl",
            [
                {
                    "images": [two],
                    "messages": [
                        {
                            "role": "user",
                            "content": "How many items are there in the image? Output the thinking process in <think> </think> and\n final answer (number) in <answer> </answer> tags.",
                        },
                        {"role": "assistant", "content": "<answer> 3 </answer>"},
                    ],
                    "solution": "<answer> 3 </answer>",
                },
                {
                    "images": [one],
                    "messages": [{"role": "user", "content": "<image>How many items are there?"}],
                    "solution": "<answer> 5 </answer>",
                },
            ],
        ),
    }


def qwen_vl(root: Path) -> Path:
    """Qwen-VL finetune's JSON (QwenLM/Qwen3-VL qwen-vl-finetune/README.md): `conversations`
    from human/gpt, `image` a path or `images` a list, `<image>\\n` tags."""
    images(root / "images")
    return write_json(
        root / "annotations.json",
        [
            {
                "image": "images/1.jpg",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat's the main object in this picture?"},
                    {"from": "gpt", "value": "A red apple on a wooden table"},
                ],
            },
            {
                "images": ["images/3.jpg", "images/2.jpg"],
                "conversations": [
                    {
                        "from": "human",
                        "value": "<image>\n<image>\nWhat are the differences between these two cats?",
                    },
                    {
                        "from": "gpt",
                        "value": "The first cat is an orange tabby, the second a gray Siamese.",
                    },
                ],
            },
        ],
    )


def vlm_r1(root: Path) -> Path:
    """VLM-R1's REC jsonl (om-ai-lab/VLM-R1 README, "For your own data"): the gold box, in
    pixels of the original image, is the gpt turn; grpo_jsonl.py makes it the solution."""
    images(root / "coco")
    return write_jsonl(
        root / "rec.jsonl",
        [
            {
                "id": 1,
                "image": "coco/3.jpg",
                "conversations": [
                    {
                        "from": "human",
                        "value": "<image>Please provide the bounding box coordinate of the region this sentence describes: giraffe on right.",
                    },
                    {"from": "gpt", "value": "[56, 28, 112, 84]"},
                ],
            },
            {
                "id": 2,
                "image": "coco/2.jpg",
                "conversations": [
                    {
                        "from": "human",
                        "value": "<image>What number of purple metallic balls are there?",
                    },
                    {"from": "gpt", "value": "0"},
                ],
            },
        ],
    )


def r1v_eval(root: Path) -> Path:
    """R1-V's evaluation prompts (Deep-Agent/R1-V src/eval/prompts/*.jsonl)."""
    images(root / "images")
    return write_jsonl(
        root / "superclevr_test200_counting_problems.jsonl",
        [
            {
                "image_path": "./images/1.jpg",
                "question": "How many different items are there in the image?",
                "ground_truth": 4,
            },
            {
                "image_path": "./images/2.jpg",
                "question": "How many different items are there in the image?",
                "ground_truth": 9,
            },
        ],
    )


def easyr1(root: Path) -> Path:
    """EasyR1's geometry3k rows (hiyouga/EasyR1 examples/config.yaml: prompt_key problem,
    answer_key answer, image_key images; the problem holds the <image> tag)."""
    images(root / "geo")
    return write_jsonl(
        root / "geometry3k.jsonl",
        [
            {
                "images": ["geo/2.jpg"],
                "problem": "<image>Find x. Round to the nearest tenth if necessary.",
                "answer": "2 \\sqrt { 221 }",
            },
            {
                "images": ["geo/1.jpg"],
                "problem": "<image>Find the ratio of the sides.",
                "answer": "\\frac { 5 } { 2 }",
            },
        ],
    )


def visual_rft(root: Path) -> Path:
    """Visual-RFT's JSON input (Liuziyu77/Visual-RFT dataset/build_dataset.ipynb): image_path,
    problem, solution."""
    folder = images(root / "images")
    return write_json(
        root / "your_dataset_json_file.json",
        [
            {
                "image_path": str(folder / "3.jpg"),
                "problem": "Detect all objects belonging to the category 'square' in the image.",
                "solution": "<answer>[{'Position': [10, 10, 50, 50], 'Confidence': 1}]</answer>",
            },
            {
                "image_path": str(folder / "2.jpg"),
                "problem": "Detect all objects belonging to the category 'circle' in the image.",
                "solution": "<answer>[{'Position': [4, 8, 40, 48], 'Confidence': 1}]</answer>",
            },
        ],
    )


def _image_bytes(name: str) -> dict:
    """One of `images`' pictures as a `datasets` Image value: its bytes, `path` only the file
    name (as parquet hub sets store them: no file to read)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", SIZES[name], (60, 90, 160)).save(buffer, format="JPEG")
    return {"bytes": buffer.getvalue(), "path": name}


def _parquet(path: Path, table: dict, features: dict) -> Path:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = datasets.Dataset.from_dict(table)
    for column, feature in features.items():
        dataset = dataset.cast_column(column, feature)
    dataset.to_parquet(str(path))
    return path


def open_r1(root: Path) -> Path:
    """open-r1-multimodal's hub rows (lmms-lab/multimodal-open-r1-8k-verified, read by its
    grpo.py: `image` a datasets Image, `problem`, `solution` with the answer in <answer>
    tags, the source columns kept), as the parquet file the hub serves."""
    import datasets

    table = {
        "image": [_image_bytes("2.jpg"), _image_bytes("1.jpg")],
        "problem": [
            "Based on the image, what is the length of side AB?",
            "How many triangles are in the figure?",
        ],
        "solution": [
            "<think>AB is the hypotenuse: sqrt(3^2 + 4^2) = 5.</think>\n<answer>5</answer>",
            "<think>Two small ones and the large one.</think>\n<answer>3</answer>",
        ],
        "original_question": ["Find AB.", "Count the triangles."],
        "original_answer": ["5", "3"],
    }
    return _parquet(root / "train-00000-of-00001.parquet", table, {"image": datasets.Image()})


def trl_llava(root: Path) -> Path:
    """TRL's VLM SFT data set (HuggingFaceH4/llava-instruct-mix-vsft, TRL's sft_vlm example):
    `messages` whose content parts carry `index`/`text`/`type` (Arrow fills the absent ones
    with null) and `images` a list of datasets Images."""
    import datasets

    def text(value: str) -> dict:
        return {"index": None, "text": value, "type": "text"}

    image = {"index": 0, "text": None, "type": "image"}
    table = {
        "messages": [
            [
                {"content": [image, text("What colour is the square?")], "role": "user"},
                {"content": [text("The square is blue.")], "role": "assistant"},
                {"content": [text("And the background?")], "role": "user"},
                {"content": [text("It is white.")], "role": "assistant"},
            ],
            [
                {"content": [text("Describe the picture."), image], "role": "user"},
                {"content": [text("A wide blue rectangle.")], "role": "assistant"},
            ],
        ],
        "images": [[_image_bytes("1.jpg")], [_image_bytes("2.jpg")]],
    }
    features = {"images": datasets.Sequence(datasets.Image())}
    return _parquet(root / "train-00000-of-00001.parquet", table, features)
