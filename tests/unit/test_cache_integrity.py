"""Damaged cache entries (tiny model, generated data, image cache) are found and rebuilt."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest


def test_a_damaged_tiny_model_is_rebuilt(tmp_path, monkeypatch, caplog):
    from vlexp.models import tiny

    builds = []

    def build(out, name="qwen2_5_vl"):  # the real build is its own process; its output is files
        out.mkdir(parents=True)
        for required in tiny.REQUIRED_FILES:
            (out / required).write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights" * 1000)
        (out / "tokenizer.json").write_text('{"model": {}}')
        builds.append(out)

    monkeypatch.setattr(tiny, "build_whole", build)
    monkeypatch.setenv("VLEXP_CACHE", str(tmp_path))
    path = tiny.ensure()
    assert len(builds) == 1 and tiny.ensure() == path and len(builds) == 1  # whole: reused
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING, logger="vlexp"):
        assert tiny.ensure() == path
    assert len(builds) == 2 and weights.stat().st_size == 7000
    assert (
        f"tiny model cache {path} is damaged (model.safetensors is 100 bytes, 7000 when built)"
        in caplog.text
    )
    (path / "tokenizer.json").unlink()
    tiny.ensure()
    assert len(builds) == 3 and (path / "tokenizer.json").is_file()


def test_damaged_generated_data_is_generated_again(tmp_path, caplog):
    from vlexp.data import shapes

    out = shapes.generate(tmp_path / "shapes", num_train=6, num_eval=2, seed=0)
    image = out / "images" / "train-00003.png"
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="vlexp"):
        shapes.generate(out, num_train=6, num_eval=2, seed=0)
    assert image.read_bytes() == good  # seeded: the same image again
    assert "images/train-00003.png is" in caplog.text and "generating it again" in caplog.text


@pytest.fixture(scope="module")
def processor(tiny_model):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model)


def test_a_truncated_image_cache_file_is_made_again(processor, shapes_dir, tmp_path):
    from vlexp.data.image_cache import ImageCache
    from vlexp.paths import whole_png

    cache = ImageCache(processor.image_processor, tmp_path)
    source = str(shapes_dir / "images" / "train-00000.png")
    cached = Path(cache.get(source))
    good = cached.read_bytes()
    cached.write_bytes(good[:-40])
    assert not whole_png(cached)
    assert cache.get(source) == str(cached) and cached.read_bytes() == good


def test_an_entry_without_its_model_is_never_recorded_as_built(tmp_path, monkeypatch):
    """The 2-rank race of 2026-12: rank 1 built, `save_pretrained` skipped config and weights
    there, and the manifest recorded the rest as a complete entry for good."""
    from vlexp.models import tiny
    from vlexp.paths import cache_problem, write_manifest

    def build_without_the_model(out, name="qwen2_5_vl"):
        out.mkdir(parents=True)
        (out / "processor_config.json").write_text("{}")
        (out / "tokenizer.json").write_text('{"model": {}}')

    monkeypatch.setattr(tiny, "build_whole", build_without_the_model)
    monkeypatch.setenv("VLEXP_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="built without config.json, model.safetensors"):
        tiny.ensure()
    assert not tiny.default_path().exists()  # nothing half-built took the entry's name
    # An entry recorded by an older vlexp over such a build (manifest without `required`)
    # is rejected and rebuilt rather than trusted.
    old = tmp_path / "old"
    build_without_the_model(old)
    write_manifest(old)
    assert cache_problem(old) is None
    assert cache_problem(old, tiny.REQUIRED_FILES) == (
        "config.json is missing (the entry was never complete)"
    )
