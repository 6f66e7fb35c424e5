"""The formats other frameworks write, read as they read them: the images land where the
text puts them (asserted on the rendered chat text and the processor's input_ids)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests import peer_data
from tests.helpers import compose
from vlexp import runplan
from vlexp.data import DataError, build_datasets, load_split

VISION = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def processor(tiny_model):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model)


def data_cfg(*overrides: str):
    cfg = compose(["model=tiny", *overrides])
    runplan.of(cfg)  # start-up resolves the family, which data.boxes.family follows
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))


def render(processor, turns, generation: bool = False) -> str:
    return processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation)


def pad_runs(processor, text: str, images: list) -> list[int]:
    """Lengths of the runs of image pad tokens in the processor's input_ids, in order."""
    ids = processor(text=[text], images=images or None, return_tensors="pt")["input_ids"][0]
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    runs, current = [], 0
    for token in ids.tolist() + [None]:
        if token == pad:
            current += 1
        elif current:
            runs, current = runs + [current], 0
    return runs


def parts(turn: dict) -> list:
    return [p["type"] if p["type"] != "text" else p["text"] for p in turn["content"]]


def test_llamafactory_mllm_demo_by_name_places_each_image_in_its_turn(tmp_path, processor):
    peer_data.llamafactory(tmp_path / "data")
    cfg = data_cfg("data=jsonl", f"data.dataset_info={tmp_path / 'data'}", "data.train=mllm_demo")
    rows = load_split(cfg.train, "sft", cfg)
    text = render(processor, rows[0]["messages"])
    assert "<image>" not in text
    assert f"<|im_start|>user\n{VISION}Who are they?<|im_end|>" in text
    assert f"<|im_start|>user\nWhat are they doing?{VISION}<|im_end|>" in text
    # the second image (3.jpg, 16 tokens) is the second turn's, after the first (1.jpg, 4)
    assert pad_runs(processor, text, rows[0]["images"]) == [4, 16]
    assert parts(rows[1]["messages"][2]) == ["Why is he on the ground?"]  # no image moved in


def test_llamafactory_alpaca_and_sharegpt_preference(tmp_path, processor):
    root = tmp_path / "data"
    peer_data.llamafactory(root)
    cfg = data_cfg("data=jsonl", f"data.dataset_info={root}", "data.train=alpaca_mm")
    row = load_split(cfg.train, "sft", cfg)[0]
    assert [m["role"] for m in row["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert parts(row["messages"][3]) == ["image", "Describe the picture.\nBe brief."]
    assert row["messages"][4]["content"][0]["text"] == "A blue square."
    assert row["images"][0].size == (112, 56)
    cfg = data_cfg("data=jsonl", f"data.dataset_info={root}", "data.train=dpo_mm")
    pair = load_split(cfg.train, "dpo", cfg)[0]
    assert [m["role"] for m in pair["prompt"]] == ["system", "user"]
    assert parts(pair["prompt"][1]) == ["image", "What colour is the square?"]
    assert pair["chosen"][0]["content"][0]["text"] == "It is blue."
    assert pair["rejected"][0]["content"][0]["text"] == "It is red."
    hub = data_cfg("data=jsonl", f"data.dataset_info={root}", "data.train=rlhf_v")
    with pytest.raises(
        DataError, match=r"'rlhf_v' is not a local file .*data.name=llamafactory/RLHF-V"
    ):
        load_split(hub.train, "dpo", hub)


def test_ms_swift_messages_query_response_and_preferences(tmp_path, processor):
    files = peer_data.swift(tmp_path)
    cfg = data_cfg("data=jsonl", f"data.train={files['sft']}")
    rows = load_split(cfg.train, "sft", cfg)
    first = rows[0]["messages"][0]
    assert parts(first) == ["image", "image", "What is the difference between the two images?"]
    text = render(processor, rows[0]["messages"])
    assert pad_runs(processor, text, rows[0]["images"]) == [4, 8]
    history = rows[1]["messages"]
    assert [(m["role"], m["content"][0]["text"]) for m in history] == [
        ("system", "You are a useful and harmless math calculator"),
        ("user", "What is 1 + 1?"),
        ("assistant", "It equals 2"),
        ("user", "What about adding 1?"),
        ("assistant", "It equals 3"),
    ]
    cfg = data_cfg("data=jsonl", f"data.train={files['dpo']}")
    for pair in load_split(cfg.train, "dpo", cfg):
        assert parts(pair["prompt"][0]) == ["image", "What is this?"]
        assert pair["chosen"][0]["content"][0]["text"] == "This is a kitten."
        assert pair["rejected"][0]["content"][0]["text"] == "This is a puppy."
    cfg = data_cfg("data=jsonl", f"data.train={files['grpo']}")
    rows = load_split(cfg.train, "grpo", cfg)
    assert [len(r["prompt"]) for r in rows] == [1, 1]  # the answer turn is not in the prompt
    assert parts(rows[0]["prompt"][0])[0] == "image"  # no tag: the image first (TRL's rule)
    assert parts(rows[1]["prompt"][0]) == ["image", "How many items are there?"]
    assert rows["solution"] == ["<answer> 3 </answer>", "<answer> 5 </answer>"]


def test_qwen_vl_finetune_conversations(tmp_path, processor):
    path = peer_data.qwen_vl(tmp_path)
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    rows = load_split(cfg.train, "sft", cfg)
    assert parts(rows[0]["messages"][0]) == ["image", "\nWhat's the main object in this picture?"]
    assert rows[0]["messages"][1]["role"] == "assistant"
    text = render(processor, rows[1]["messages"])
    assert f"{VISION}\n{VISION}\nWhat are the differences" in text
    assert pad_runs(processor, text, rows[1]["images"]) == [16, 8]


@pytest.mark.parametrize(
    ("writer", "solutions", "questions"),
    [
        (
            peer_data.vlm_r1,
            ["[56, 28, 112, 84]", "0"],
            ["Please provide the bounding box", "What number"],
        ),
        (peer_data.r1v_eval, [4, 9], ["How many different items"] * 2),
        (
            peer_data.easyr1,
            ["2 \\sqrt { 221 }", "\\frac { 5 } { 2 }"],
            ["Find x.", "Find the ratio"],
        ),
        (
            peer_data.visual_rft,
            [
                "<answer>[{'Position': [10, 10, 50, 50], 'Confidence': 1}]</answer>",
                "<answer>[{'Position': [4, 8, 40, 48], 'Confidence': 1}]</answer>",
            ],
            ["Detect all"] * 2,
        ),
    ],
    ids=["vlm_r1", "r1v_eval", "easyr1", "visual_rft"],
)
def test_rl_rows_give_one_image_first_and_their_own_solution(
    tmp_path, processor, writer, solutions, questions
):
    path = writer(tmp_path)
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    rows = load_split(cfg.train, "grpo", cfg)
    assert rows["solution"] == solutions
    for row, question in zip(rows, questions, strict=True):
        user = row["prompt"][-1]
        assert parts(user)[0] == "image" and parts(user)[1].startswith(question)
        assert len(row["images"]) == 1
        text = render(processor, row["prompt"], generation=True)
        assert "<image>" not in text and text.count(VISION) == 1


def test_tag_count_must_match_the_images(tmp_path):
    path = peer_data.write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "<image><image>Same?"},
                    {"role": "assistant", "content": "Yes"},
                ],
                "images": ["a.png"],
            }
        ],
    )
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    with pytest.raises(
        DataError, match=rf"{path}:1: images: 2 <image> tag\(s\) in the turns but 1 image\(s\)"
    ):
        load_split(cfg.train, "sft", cfg)
    problem = peer_data.write_jsonl(
        tmp_path / "p.jsonl", [{"problem": "<image>Find x.", "answer": "3"}]
    )
    cfg = data_cfg("data=jsonl", f"data.train={problem}")
    with pytest.raises(
        DataError, match=r"p.jsonl:1: images: 1 <image> tag\(s\) in the question but 0 image"
    ):
        load_split(cfg.train, "grpo", cfg)


def test_unknown_record_names_the_closest_format(tmp_path):
    path = peer_data.write_jsonl(
        tmp_path / "odd.jsonl", [{"instructions": "Describe.", "output": "A cat."}]
    )
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    with pytest.raises(DataError) as caught:
        load_split(cfg.train, "sft", cfg)
    assert str(caught.value) == (
        f"{path}:1: instruction: no known record format fits the keys ['instructions', 'output']; closest: "
        "instruction/input/output (LLaMA-Factory alpaca), which needs 'instruction'; it does not "
        "read 'instructions' (rename columns with data.columns={old: new}, or set data.format)"
    )


def test_broken_json_array_is_one_error_with_its_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"problem": "a"},\n  {"problem": "b",}\n]\n')
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    with pytest.raises(
        DataError, match=rf"^{path}:3:19: not valid JSON \(.*\); the file is read as one JSON array"
    ):
        load_split(cfg.train, "grpo", cfg)


def test_columns_rename_jsonl_and_name_an_unknown_one(tmp_path):
    path = peer_data.write_jsonl(tmp_path / "t.jsonl", [{"q": "How many?", "gt": "2"}])
    cfg = data_cfg("data=jsonl", f"data.train={path}", "data.columns={q: problem, gt: solution}")
    assert load_split(cfg.train, "grpo", cfg)["solution"] == ["2"]
    cfg = data_cfg(
        "data=jsonl", f"data.train={path}", "data.columns={q: problem, answer: solution}"
    )
    with pytest.raises(
        DataError,
        match=r"renames \['answer'\], which no record of .*t.jsonl has \(its keys: \['gt', 'q'\]\)",
    ):
        load_split(cfg.train, "grpo", cfg)


def test_hf_and_jsonl_give_the_same_examples(tmp_path):
    """The same records through data=jsonl and data=hf (json builder): identical examples."""
    folder = peer_data.images(tmp_path / "img")
    rows = [
        {"image_path": str(folder / "1.jpg"), "question": "How many?", "ground_truth": "4"},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": f"file://{folder / '2.jpg'}"},
                        {"type": "text", "text": "Count."},
                    ],
                }
            ],
            "solution": "2",
        },
    ]
    for kind, picked in (("grpo", rows[:1]), ("grpo", rows[1:])):
        path = peer_data.write_jsonl(
            tmp_path / f"{len(picked)}-{picked[0].keys().__len__()}.jsonl", picked
        )
        jsonl, _ = build_datasets(data_cfg("data=jsonl", f"data.train={path}"), kind)
        hub, _ = build_datasets(
            data_cfg("data=hf", "data.name=json", f"data.data_files={path}"), kind
        )
        assert jsonl.column_names == hub.column_names
        for a, b in zip(jsonl, hub, strict=True):
            assert {k: v for k, v in a.items() if k != "images"} == {
                k: v for k, v in b.items() if k != "images"
            }
            assert [i.size for i in a["images"]] == [i.size for i in b["images"]] != []


def test_video_tags_become_video_parts(tmp_path, processor):
    """LLaMA-Factory's mllm_video_demo, with a video given as its frames."""
    from tests.video_data import write_frames

    frames = write_frames(tmp_path / "mllm_demo_data" / "1", count=4)
    path = peer_data.write_json(
        tmp_path / "mllm_video_demo.json",
        [
            {
                "messages": [
                    {"content": "<video>Why is this video funny?", "role": "user"},
                    {
                        "content": "Because a baby is reading, and he is so cute!",
                        "role": "assistant",
                    },
                ],
                "videos": [[f"mllm_demo_data/{f}" for f in frames]],
            }
        ],
    )
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    row = load_split(cfg.train, "sft", cfg)[0]
    assert parts(row["messages"][0]) == ["video", "Why is this video funny?"]
    text = render(processor, row["messages"])
    assert "<|vision_start|><|video_pad|><|vision_end|>Why is this video funny?" in text


def test_hub_rows_go_through_the_data_check(tmp_path):
    """data=hf rows are checked like JSONL records, before any model loads."""
    import datasets

    from vlexp.data.check import DataCheck
    from vlexp.models.loading import load_processor

    folder = peer_data.images(tmp_path / "img")
    table = {
        "images": [[str(folder / "2.jpg")], [str(folder / "1.jpg")]],
        "problem": ["<image>Find x.", "<image>Find y."],
        "answer": ["3", "4"],
    }
    path = tmp_path / "geo.parquet"
    datasets.Dataset.from_dict(table).cast_column(
        "images", datasets.Sequence(datasets.Image())
    ).to_parquet(str(path))
    overrides = ["algo=grpo", "data=hf", "data.name=parquet", f"data.data_files={path}"]
    cfg = compose(["model=tiny", *overrides])
    check = DataCheck(runplan.of(cfg).data, load_processor(cfg.model, runplan.of(cfg).family))
    train, _ = build_datasets(cfg.data, "grpo", check)
    assert train["solution"] == ["3", "4"] and [i.size for r in train for i in r["images"]] == [
        (112, 56),
        (56, 56),
    ]
    assert check.stats["train"]["image_tokens"] == [8, 4]  # the bytes were measured
    cfg = compose(["model=tiny", *overrides, "data.columns={answer: label}"])
    with pytest.raises(
        DataError,
        match=r"row 0: solution: missing 'solution', which reward 'accuracy' needs .* data.columns=",
    ):
        build_datasets(
            cfg.data,
            "grpo",
            DataCheck(runplan.of(cfg).data, load_processor(cfg.model, runplan.of(cfg).family)),
        )


def test_check_data_show_prints_what_the_trainer_gets(tmp_path, tiny_model, capsys, caplog):
    from vlexp.check_data import main

    root = tmp_path / "data"
    peer_data.llamafactory(root)
    args = [
        "model=tiny",
        "algo=sft",
        "data=jsonl",
        f"data.dataset_info={root}",
        "data.train=mllm_demo",
    ]
    with caplog.at_level("INFO", logger="vlexp"):
        assert main([*args, "--show", "1"]) == 0
    out = capsys.readouterr().out
    label = "conversations from/value (LLaMA-Factory sharegpt, Qwen-VL finetune, VLM-R1)"
    assert f"format: {label}: {root / 'mllm_demo.json'} (2 records)" in caplog.text
    assert (
        "<|im_start|>user\n<|vision_start|><|image_pad|>x4<|vision_end|>Who are they?<|im_end|>"
        in out
    )
    assert "What are they doing?<|vision_start|><|image_pad|>x16<|vision_end|><|im_end|>" in out
    assert "image 0: 56x56 px, resized to 56x56: 4 tokens" in out
    assert "image 1: 112x112 px, resized to 112x112: 16 tokens" in out
    assert 'loss on: "They\'re Kane and Gretzka from Bayern Munich.<|im_end|>\\n"' in out
    assert "loss on: 'They are celebrating on the soccer field.<|im_end|>\\n'" in out
    assert "--- record 1 ---" not in out
    path = peer_data.easyr1(tmp_path / "geo")
    args = ["model=tiny", "algo=grpo", "reward=accuracy", "data=jsonl", f"data.train={path}"]
    assert main([*args, "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "reward accuracy receives: solution='2 \\\\sqrt { 221 }'" in out
    assert "<|im_start|>user\n<|vision_start|><|image_pad|>x8<|vision_end|>Find x." in out
    text = peer_data.write_jsonl(tmp_path / "text.jsonl", [{"problem": "1+1?", "answer": "2"}])
    with caplog.at_level("INFO", logger="vlexp"):
        assert (
            main(["model=tiny", "algo=grpo", "reward=accuracy", "data=jsonl", f"data.train={text}"])
            == 0
        )
    assert "warning: no record of this split has an image or a video" in caplog.text


def test_a_folder_reads_every_json_and_jsonl_file_in_order(tmp_path):
    from vlexp.data.sources import Reader

    folder = tmp_path / "split"
    peer_data.write_json(folder / "a.json", [{"problem": "1+1?", "answer": "2"}])
    peer_data.write_jsonl(folder / "b.jsonl", [{"question": "2+2?", "ground_truth": 4}])
    (folder / "notes.txt").write_text("not data")
    records = Reader().read(folder)
    assert [r.source for r in records] == [f"{folder / 'a.json'}:2", f"{folder / 'b.jsonl'}:1"]
    assert [r.fields["solution"] for r in records] == ["2", 4]
    assert {r.format for r in records} == {"problem"}


def test_each_record_is_converted_once_and_the_check_and_trainer_share_it(tmp_path, monkeypatch):
    """One conversion per record and run: the data check's example is the trainer's row."""
    from collections import Counter

    from vlexp.data import records
    from vlexp.data.check import DataCheck
    from vlexp.models.loading import load_processor

    calls: Counter = Counter()
    real = records.to_example

    def counted(record, *args, **kwargs):
        calls[record.source] += 1
        return real(record, *args, **kwargs)

    monkeypatch.setattr(records, "to_example", counted)
    train = peer_data.easyr1(tmp_path / "train")
    evaluation = peer_data.r1v_eval(tmp_path / "eval")
    overrides = ["algo=grpo", "reward=accuracy", "data=jsonl", f"data.train={train}"]
    cfg = compose(["model=tiny", *overrides, f"data.eval={evaluation}"])
    check = DataCheck(runplan.of(cfg).data, load_processor(cfg.model, runplan.of(cfg).family))
    train_set, eval_set = build_datasets(cfg.data, "grpo", check)
    assert len(train_set) == 2 and len(eval_set) == 2
    assert sorted(calls.values()) == [1, 1, 1, 1] and len(calls) == 4
    assert eval_set["solution"] == [4, 9]


def test_evaluation_opens_hub_rows_that_carry_only_image_bytes(tmp_path, tiny_model):
    """A parquet hub set holds each image as bytes (its `path` only a file name that exists
    nowhere): evaluation's prompts open them, and generation runs on them."""
    import io

    import datasets
    from PIL import Image

    from vlexp.evaluation.generation import generate, load_examples, open_images
    from vlexp.models.loading import load_model, load_processor

    def png(size):
        buffer = io.BytesIO()
        Image.new("RGB", size, (200, 40, 40)).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": f"img_{size[0]}x{size[1]}.png"}

    table = {
        "image": [png((112, 56)), png((56, 56))],
        "problem": ["How many squares?", "How many circles?"],
        "answer": ["1", "2"],
    }
    path = tmp_path / "test.parquet"
    datasets.Dataset.from_dict(table).cast_column("image", datasets.Image()).to_parquet(str(path))
    overrides = ["data=hf", "data.name=parquet", f"data.data_files={path}", "data.eval_split=train"]
    cfg = compose(["model=tiny", "reward=accuracy", f"cache_dir={tmp_path / 'cache'}", *overrides])
    processor = load_processor(cfg.model, runplan.of(cfg).family)
    examples = load_examples(runplan.of(cfg).data, cfg.eval.max_new_tokens, processor)
    assert [ex["solution"] for ex in examples] == ["1", "2"]
    assert [image.size for ex in examples for image in open_images(ex["images"])] == [
        (112, 56),
        (56, 56),
    ]
    assert all(
        p.startswith(str(tmp_path / "cache" / "eval-images"))
        for ex in examples
        for p in ex["images"]
    )
    model = load_model(cfg.model, cfg.memory).eval()
    completions = generate(model, processor, examples, max_new_tokens=2, progress=False)
    assert [len(c) for c in completions] == [1, 1]


def test_check_data_show_counts_video_tokens_and_shows_the_resized_frames(tmp_path, capsys):
    """--show on LLaMA-Factory's mllm_video_demo (the video as its frames) and on an .mp4:
    each video pad with its count, the frames sampled and their size before and after."""
    from tests.video_data import write_frames, write_mp4
    from vlexp.check_data import main

    frames = write_frames(tmp_path / "mllm_demo_data" / "1", count=4, width=112, height=56)
    write_mp4(tmp_path / "clip.mp4", count=16, width=112, height=112, fps=8)
    answer = "Because a baby is reading, and he is so cute!"
    path = peer_data.write_json(
        tmp_path / "mllm_video_demo.json",
        [
            {
                "messages": [
                    {"content": "<video>Why is this video funny?", "role": "user"},
                    {"content": answer, "role": "assistant"},
                ],
                "videos": [[f"mllm_demo_data/{f}" for f in frames]],
            },
            {
                "messages": [
                    {"content": "Where does the square go?<video>", "role": "user"},
                    {"content": "To the right.", "role": "assistant"},
                ],
                "videos": ["clip.mp4"],
            },
        ],
    )
    args = ["model=tiny", "algo=sft", "data=jsonl", f"data.train={path}", "data.video.fps=2"]
    assert (
        main([*args, "data.video.min_pixels=3136", "data.video.max_pixels=12544", "--show", "2"])
        == 0
    )
    out = capsys.readouterr().out
    # 4 frames of 112x56: 2 temporal patches x (8 x 4 patches) / 4 merged = 16 tokens
    assert "video 0: 4 of 4 frames, 112x56 px, resized to 112x56: 16 tokens" in out
    assert "<|vision_start|><|video_pad|>x16<|vision_end|>Why is this video funny?" in out
    # 16 frames at 8 fps, sampled at 2 fps: 4 frames of 112x112, 2 x 64 / 4 = 32 tokens
    assert "video 0: 4 of 16 frames, 112x112 px, resized to 112x112: 32 tokens" in out
    assert "Where does the square go?<|vision_start|><|video_pad|>x32<|vision_end|>" in out
    assert f"loss on: '{answer}<|im_end|>\\n'" in out


def test_open_r1_multimodal_hub_rows_give_the_image_first_and_their_own_solution(
    tmp_path, processor
):
    """lmms-lab/multimodal-open-r1-8k-verified as its parquet: image bytes, no tag."""
    path = peer_data.open_r1(tmp_path)
    cfg = data_cfg("data=hf", "data.name=parquet", f"data.data_files={path}")
    train, _ = build_datasets(cfg, "grpo")
    assert train["solution"] == [
        "<think>AB is the hypotenuse: sqrt(3^2 + 4^2) = 5.</think>\n<answer>5</answer>",
        "<think>Two small ones and the large one.</think>\n<answer>3</answer>",
    ]
    assert train["original_answer"] == ["5", "3"]
    for row, question, tokens in zip(
        train, ["Based on the image", "How many"], [8, 4], strict=True
    ):
        assert parts(row["prompt"][-1])[0] == "image"
        assert parts(row["prompt"][-1])[1].startswith(question)
        text = render(processor, row["prompt"], generation=True)
        assert pad_runs(processor, text, row["images"]) == [tokens]


def test_trl_llava_instruct_mix_rows_keep_each_image_part_where_it_is(tmp_path, processor):
    """HuggingFaceH4/llava-instruct-mix-vsft's parquet (null `text`/`index` in parts)."""
    path = peer_data.trl_llava(tmp_path)
    cfg = data_cfg("data=hf", "data.name=parquet", f"data.data_files={path}")
    train, _ = build_datasets(cfg, "sft")
    first, second = train[0]["messages"], train[1]["messages"]
    assert parts(first[0]) == ["image", "What colour is the square?"]
    assert parts(second[0]) == ["Describe the picture.", "image"]
    text = render(processor, second)
    assert f"<|im_start|>user\nDescribe the picture.{VISION}<|im_end|>" in text
    assert pad_runs(processor, text, train[1]["images"]) == [8]
    assert [m["content"][0]["text"] for m in first if m["role"] == "assistant"] == [
        "The square is blue.",
        "It is white.",
    ]


def test_every_unrecognised_record_names_the_closest_format_and_why(tmp_path):
    """Missing keys, keys no format reads, and a prompt of a type neither TRL form has."""
    from vlexp.data.sources import Reader

    rows = [{"input": "a", "output": "b"}, {"text": "hi"}, {"prompt": 3, "completion": "x"}]
    path = peer_data.write_jsonl(tmp_path / "odd.jsonl", rows)
    bad: list = []
    assert Reader().read(path, bad) == []
    messages = [str(b) for b in bad]
    assert messages[0].startswith(f"{path}:1: instruction: no known record format fits")
    assert (
        "closest: instruction/input/output (LLaMA-Factory alpaca), which needs 'instruction'"
        in messages[0]
    )
    assert "closest: conversations from/value" in messages[1]
    assert "which needs 'conversations'; it does not read 'text'" in messages[1]
    assert messages[2] == (
        f"{path}:3: prompt: no known record format fits the keys ['completion', 'prompt']; "
        "closest: prompt + completion / chosen + rejected turns (TRL); 'prompt' is int: a string (TRL "
        "standard) or a list of turns (TRL conversational) is read"
    )
