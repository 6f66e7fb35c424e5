"""data.image_cache: resized once, pixels identical to what the processor makes of the original."""

from __future__ import annotations

import os

import pytest

from tests.helpers import compose
from vlexp import runplan
from vlexp.data import build_datasets
from vlexp.data.image_cache import ImageCache, decode, for_run


@pytest.fixture(scope="module")
def processor(tiny_model):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model)


def _every_size(shapes_dir) -> list[str]:
    """One image of each generated size: below min_pixels, in range and above max_pixels."""
    from vlexp.data.shapes import SIZES

    by_size: dict[tuple[int, int], str] = {}
    for path in sorted((shapes_dir / "images").glob("train-*.png")):
        by_size.setdefault(decode(str(path)).size, str(path))
        if len(by_size) == len(SIZES):
            break
    return list(by_size.values())


@pytest.mark.parametrize(
    "limits",
    [(3136, 12544), (200704, 1003520), (3136, 6272)],
    ids=["tiny-budget", "qwen-budget-upscales", "narrow"],
)
def test_cached_pixels_equal_the_originals_exactly(processor, shapes_dir, tmp_path, limits):
    import torch

    image_processor = processor.image_processor
    image_processor.size = {"shortest_edge": limits[0], "longest_edge": limits[1]}
    cache = ImageCache(image_processor, tmp_path)
    sources = _every_size(shapes_dir)
    assert len(sources) == 7  # every size: the test sees up- and downscaled images
    original = image_processor(images=[decode(p) for p in sources], return_tensors="pt")
    cached = image_processor(images=[decode(cache.get(p)) for p in sources], return_tensors="pt")
    assert torch.equal(original["image_grid_thw"], cached["image_grid_thw"])
    assert torch.equal(original["pixel_values"], cached["pixel_values"])
    # Each cached file is already at its smart_resize size: the processor's resize is a no-op.
    factor = image_processor.patch_size * image_processor.merge_size
    for path in sources:
        width, height = decode(cache.get(path)).size
        assert width % factor == 0 and height % factor == 0
        assert limits[0] <= width * height <= limits[1]


def test_key_follows_mtime_and_pixel_limits(processor, shapes_dir, tmp_path):
    source = tmp_path / "a.png"
    source.write_bytes((shapes_dir / "images" / "train-00000.png").read_bytes())
    image_processor = processor.image_processor
    image_processor.size = {"shortest_edge": 3136, "longest_edge": 12544}
    cache = ImageCache(image_processor, tmp_path / "cache")
    first = cache.get(str(source))
    assert cache.get(str(source)) == first  # a hit: same file, not rewritten
    os.utime(source, ns=(1, 1))
    assert cache.get(str(source)) != first  # edited (new mtime): a new entry
    image_processor.size = {"shortest_edge": 3136, "longest_edge": 6272}
    assert ImageCache(image_processor, tmp_path / "cache").path_for(str(source)) != first


def test_run_datasets_point_at_the_cache_and_keep_every_row(processor, tmp_path, monkeypatch):
    monkeypatch.setenv("VLEXP_CACHE", os.environ["VLEXP_CACHE"])
    cfg = compose([f"cache_dir={tmp_path}"])
    processor.image_processor.size = {
        "shortest_edge": cfg.model.min_pixels,
        "longest_edge": cfg.model.max_pixels,
    }
    transform = for_run(runplan.of(cfg).data, processor)
    plain, _ = build_datasets(cfg.data, "grpo")
    cached, evaluation = build_datasets(cfg.data, "grpo", image_cache=transform)
    assert len(cached) == len(plain) and evaluation is not None
    import datasets

    raw = cached.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))
    paths = [image["path"] for row in raw["images"] for image in row]
    assert paths and all(p.startswith(str(tmp_path / "images")) for p in paths)
    assert (
        cached[0]["prompt"] == plain[0]["prompt"] and cached[0]["solution"] == plain[0]["solution"]
    )
    assert for_run(runplan.of(compose(["data.image_cache=false"])).data, processor) is None
