"""The data check over a corpus of bad records: each named, nothing else dropped."""

from __future__ import annotations

import json

import pytest

from tests.bad_data import EXPECTED, kept_ids, line_of, write_corpus
from tests.helpers import compose
from vlexp import runplan
from vlexp.families import FAMILIES


@pytest.fixture(scope="module")
def processor(tiny_model):
    from omegaconf import OmegaConf

    from vlexp.models.loading import load_processor

    return load_processor(
        OmegaConf.create(
            {"name_or_path": "tiny://qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12544}
        ),
        FAMILIES["qwen2_5_vl"],
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "data")


def _cfg(train, kind: str, *extra: str):
    return compose(
        [
            f"algo={kind}",
            "data=jsonl",
            f"data.train={train}",
            f"data.eval={train.parent / 'eval.jsonl'}",
            *extra,
        ]
    )


def _check(cfg, processor, run_dir=None):
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck

    check = DataCheck(runplan.of(cfg).data, processor, run_dir)
    return check, build_datasets(cfg.data, cfg.algo.kind, check)


@pytest.mark.parametrize("kind", ["sft", "dpo", "grpo"])
def test_raise_names_every_bad_record_with_field_and_reason(kind, corpus, processor, tmp_path):
    from vlexp.data.records import DataError

    cfg = _cfg(corpus, kind)
    with pytest.raises(DataError) as caught:
        _check(cfg, processor, tmp_path)
    message = str(caught.value)
    expected = EXPECTED[kind]
    assert message.startswith(f"{len(expected)} bad record(s) (data.on_bad_record=raise):")
    listed = [line.strip() for line in message.splitlines()[1:-1]]
    assert len(listed) == len(expected)
    for rid, (field, _reason) in expected.items():
        prefix = f"{corpus}:{line_of(corpus, rid)}: {field}: "
        assert any(line.startswith(prefix) for line in listed), (rid, prefix, message)
    assert "data.on_bad_record=skip" in message.splitlines()[-1]
    # The full list, with reasons, is in the run dir as well.
    rows = [json.loads(line) for line in (tmp_path / "bad_records.jsonl").read_text().splitlines()]
    by_line = {int(row["source"].rsplit(":", 1)[1]): row for row in rows}
    for rid, (field, reason) in expected.items():
        row = by_line[line_of(corpus, rid)]
        assert (row["field"], row["reason"], row["split"]) == (field, reason, "train"), rid


@pytest.mark.parametrize("kind", ["sft", "dpo", "grpo"])
def test_skip_drops_exactly_the_bad_records(kind, corpus, processor, tmp_path, caplog):
    cfg = _cfg(corpus, kind, "data.on_bad_record=skip")
    with caplog.at_level("INFO", logger="vlexp"):
        check, (train, evaluation) = _check(cfg, processor, tmp_path)
    kept = kept_ids(kind)
    assert len(train) == len(kept) and len(evaluation) == 4
    if kind == "grpo":  # grpo keeps the id column: check the exact survivors
        assert train["id"] == kept
    bad_lines = (tmp_path / "bad_records.jsonl").read_text().splitlines()
    assert len(bad_lines) == len(EXPECTED[kind])
    summary = caplog.text
    read = len(kept) + len(EXPECTED[kind])
    assert f"data check train: {read} read, {len(kept)} kept, {len(EXPECTED[kind])} bad" in summary
    assert "image unreadable: 3" in summary and "image tokens per record: p50 " in summary


def test_clean_data_passes_and_reports_token_percentiles(shapes_dir, processor, caplog):
    cfg = compose([])
    with caplog.at_level("INFO", logger="vlexp"):
        check, (train, evaluation) = _check(cfg, processor)
    assert check.bad == [] and len(train) == 512 and len(evaluation) == 64
    # shapes images span 56x56 .. 224x168: 4 to 16 tokens under min/max_pixels of the tiny model.
    assert "512 read, 512 kept, 0 bad" in caplog.text
    tokens = check.stats["train"]["image_tokens"]
    assert min(tokens) == 4 and max(tokens) == 16


def test_token_count_equals_the_processor(corpus, processor):
    """The prompt length the check computes is what the processor really produces."""
    from PIL import Image

    from vlexp.data.images import image_tokens, processor_geometry
    from vlexp.data.lengths import count_tokens
    from vlexp.data.records import to_example
    from vlexp.data.sources import Reader

    records = [r for r in Reader().read(corpus.parent / "eval.jsonl")]
    from vlexp.families import FAMILIES

    geometry = processor_geometry(processor, FAMILIES["qwen2_5_vl"])
    assert geometry == (28, 3136, 12544)
    for size in ((56, 56), (224, 168), (30, 200), (500, 40)):
        example = to_example(records[0], "grpo", "{question}", "Answer briefly.")
        image = Image.new("RGB", size)
        tokens = [image_tokens(*size, *geometry)]
        prompt, _ = count_tokens(processor, example, tokens)
        text = processor.apply_chat_template(
            example["prompt"], tokenize=False, add_generation_prompt=True
        )
        real = processor(text=[text], images=[image], return_tensors="pt")["input_ids"].shape[1]
        assert prompt == real, size


def test_length_limit_rejects_prompts_that_would_lose_image_tokens(corpus, processor):
    from vlexp.data.records import DataError

    # These prompts are 32 tokens (4 of them image tokens), prompt + completion 51.
    cfg = _cfg(corpus.parent / "eval.jsonl", "sft", "algo.args.max_length=30")
    with pytest.raises(
        DataError, match=r"eval.jsonl:1: prompt: prompt is 32 tokens \(4 of them image"
    ):
        _check(cfg, processor)
    cfg = _cfg(corpus.parent / "eval.jsonl", "sft", "algo.args.max_length=45")
    check, (train, _) = _check(cfg, processor)
    assert len(train) == 4 and check.stats["train"]["truncated"] == 4  # completions cut, not images


def test_remote_images_are_fetched_only_when_allowed(tmp_path, processor):
    import functools
    import http.server
    import threading

    from PIL import Image

    from vlexp.data.records import DataError

    served = tmp_path / "served"
    served.mkdir()
    Image.new("RGB", (64, 64), (0, 0, 255)).save(served / "blue.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/blue.png"
        data = tmp_path / "data"
        data.mkdir()
        (data / "train.jsonl").write_text(
            json.dumps({"id": "r", "image": url, "prefix": "?", "solution": "1"}) + "\n"
        )
        cfg = _cfg(
            data / "train.jsonl", "grpo", "data.eval=null", f"cache_dir={tmp_path / 'cache'}"
        )
        with pytest.raises(
            DataError,
            match=r"train.jsonl:1: image: .*blue.png is a URL: set data.allow_remote_images=true",
        ):
            _check(cfg, processor)
        cfg = _cfg(
            data / "train.jsonl",
            "grpo",
            "data.eval=null",
            f"cache_dir={tmp_path / 'cache'}",
            "data.allow_remote_images=true",
        )
        _, (train, _) = _check(cfg, processor)
        assert train[0]["images"][0].size == (64, 64)  # decoded from the cached copy
        assert len(list((tmp_path / "cache" / "remote-images").iterdir())) == 1
    finally:
        server.shutdown()


def test_empty_file_is_an_error_under_both_policies(tmp_path, processor):
    from vlexp.data.records import DataError

    (tmp_path / "train.jsonl").write_text("")
    for policy in ("raise", "skip"):
        cfg = _cfg(
            tmp_path / "train.jsonl", "sft", "data.eval=null", f"data.on_bad_record={policy}"
        )
        with pytest.raises(DataError, match=r"train.jsonl: no records \(the file is empty\)"):
            _check(cfg, processor)


def test_check_sample_limits_image_decoding(shapes_dir, processor):
    cfg = compose(["data.check_sample=50"])
    check, (train, _) = _check(cfg, processor)
    assert check.stats["train"]["checked"] == 50 and len(train) == 512
    assert check.stats["eval"]["checked"] == 50


def test_mixed_column_types_are_bad_records_not_an_arrow_crash(tmp_path, processor):
    rows = [{"id": i, "prefix": "?", "solution": "2"} for i in range(3)] + [
        {"id": 3, "prefix": "?", "solution": 2}
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path / "train.jsonl", "grpo", "data.eval=null", "data.on_bad_record=skip")
    check, (train, _) = _check(cfg, processor)
    assert train["id"] == [0, 1, 2]
    assert [str(b) for _, b in check.bad] == [
        f"{tmp_path / 'train.jsonl'}:4: solution: 'solution' is int here but str in 3 other records: one column needs one type"
    ]


def test_conversational_records_need_one_image_per_image_part(tmp_path, processor):
    from PIL import Image

    Image.new("RGB", (56, 56)).save(tmp_path / "a.png")
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}
    rows = [
        {"id": "ok", "prompt": [user], "images": ["a.png"], "solution": "1"},
        {"id": "two-images", "prompt": [user], "images": ["a.png", "a.png"], "solution": "1"},
        {"id": "not-messages", "prompt": ["How many?"], "images": ["a.png"], "solution": "1"},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path / "train.jsonl", "grpo", "data.eval=null", "data.on_bad_record=skip")
    check, (train, _) = _check(cfg, processor)
    assert train["id"] == ["ok"]
    assert [(b.field, b.reason, b.detail) for _, b in check.bad] == [
        (
            "images",
            "image count mismatch",
            "1 image part(s) in the messages but 2 image(s) in 'images'",
        ),
        ("prompt", "wrong type", "'prompt' must be a list of {role, content} messages"),
    ]


def test_skip_with_nothing_left_is_an_error(tmp_path, processor):
    from vlexp.data.records import DataError

    (tmp_path / "train.jsonl").write_text('{"id": 1}\nnot json\n')
    cfg = _cfg(tmp_path / "train.jsonl", "sft", "data.eval=null", "data.on_bad_record=skip")
    with pytest.raises(DataError, match=r"^data.train: no usable records left \(.*train.jsonl\)$"):
        _check(cfg, processor, tmp_path)
    assert len((tmp_path / "bad_records.jsonl").read_text().splitlines()) == 2
