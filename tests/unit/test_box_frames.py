"""Gold boxes reach the rewards once, in the model family's frame, scaled from the image the
model sees.

Every gold spelling (a `box` column, `"bbox_2d"` JSON, `<|box_start|>(x1,y1),(x2,y2)`,
`data-bbox`, a bare list) x every family in `vlexp.families.FAMILIES` x images as phones and
scanners write them (EXIF orientations 3/5/6/7/8, CMYK, palette, LA, 16-bit grey), compared
with coordinates computed here by an independent formula: the image's size is the size of the
image in the data set row the trainer gets (decoded by `datasets.Image`); "pixels" scales by
the processor's own resize (its `image_grid_thw` x patch size on that image), "relative_1000"
is x / width * 1000, "original" leaves the box as written.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import peer_data
from tests.helpers import REPO, compose
from vlexp import families, runplan

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?!\w)")  # not the 2 of bbox_2d
SIZE = (640, 480)  # stored size of every test image; a quarter-turn EXIF makes it 480x640


def write_images(folder: Path) -> dict[str, Path]:
    """Images in the forms real photographs and scans come in, all stored at SIZE."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    width, height = SIZE
    ramp = np.linspace(0, 255, width * height, dtype=np.float64).reshape(height, width)
    rgb = Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], -1).astype("uint8"))
    paths = {"rgb.png": rgb, "cmyk.jpg": rgb.convert("CMYK"), "palette.png": rgb.convert("P")}
    paths |= {"la.png": rgb.convert("LA")}
    paths |= {"grey16.png": Image.fromarray((ramp * 257).astype(np.uint16))}  # mode I;16
    for name, image in paths.items():
        image.save(folder / name)
    # Phone photos: the sensor's pixels stored as they are, the EXIF tag says how to turn them.
    # Pillow's TIFF reader turns the image itself; MPO is the multi-picture JPEG of cameras.
    jpegs = ((3, "jpg"), (5, "jpg"), (6, "jpg"), (7, "jpg"), (8, "jpg"))
    for orientation, suffix in jpegs + ((6, "png"), (8, "webp"), (6, "tif"), (8, "mpo")):
        exif = Image.Exif()
        exif[0x0112] = orientation  # Orientation
        name = f"exif{orientation}.{suffix}"
        extra = {"save_all": True, "append_images": [rgb]} if suffix == "mpo" else {}
        rgb.save(folder / name, exif=exif, **extra)
        paths[name] = rgb
    return {name: folder / name for name in paths}


def model_seen_size(path: Path) -> tuple[int, int]:
    """The reference size: the image as the data set decodes it for the trainer."""
    import datasets

    return datasets.Image().decode_example({"path": str(path), "bytes": None}).size


def test_decoded_size_is_the_size_of_the_image_the_model_receives(tmp_path):
    from vlexp.data.image_size import decoded_size

    images = write_images(tmp_path)
    turned = {n for n in images if re.match(r"exif[5-8]\.", n)}
    for name, path in images.items():
        expected = model_seen_size(path)
        assert expected == (SIZE[::-1] if name in turned else SIZE), name  # the test's premise
        assert decoded_size(path) == expected, name
        assert decoded_size({"bytes": path.read_bytes(), "path": None}) == expected, name


def gold_forms(box: list[int]) -> dict[str, dict]:
    """The record columns of each gold spelling of one box (in the decoded image's pixels)."""
    x1, y1, x2, y2 = box
    return {
        "box column": {"box": box},
        "bbox_2d": {"solution": json.dumps([{"bbox_2d": box, "label": "dog"}])},
        "box_start": {"solution": f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"},
        "data-bbox": {"solution": f"<p data-bbox='{x1} {y1} {x2} {y2}'>Dog</p>"},
        "bare list": {"solution": json.dumps(box)},
    }


def model_conf(family: families.Family) -> str:
    """The conf/model file of `family`: its tiny build's when it has one."""
    mine = [conf for conf, of in conf_families().items() if of == family.name]
    assert mine, f"no conf/model file for family {family.name}"
    return next((n for n in mine if n.startswith("tiny")), mine[0])


@functools.cache
def conf_families() -> dict[str, str | None]:
    """conf/model file -> its family's name (None: not told offline)."""
    from omegaconf import OmegaConf

    found = {}
    for path in sorted((REPO / "conf" / "model").glob("*.yaml")):
        model = SimpleNamespace(name_or_path=OmegaConf.load(path).get("name_or_path"))
        try:
            family = families.of_model_cfg(model) if model.name_or_path else None
        except families.UnknownFamily:
            family = None
        found[path.stem] = family.name if family else None
    return found


def frame_size(family: families.Family, processor, image) -> tuple[int, int]:
    """(width, height) of the family's box frame for `image`, from the real processor."""
    if family.box_frame == "relative_1000":
        return 1000, 1000
    if family.box_frame == "original":
        return image.size
    grid = processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
    return int(grid[2]) * processor.patch_size, int(grid[1]) * processor.patch_size


def real_image_processor(family: families.Family, model_cfg):
    """The image processor training uses (the tiny build's, with the run's pixel budget); for
    a family without a tiny build, transformers' own class for its model_type, its defaults."""
    import transformers
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    if family.tiny:
        from vlexp.models.loading import load_processor

        return load_processor(model_cfg, family).image_processor
    name = IMAGE_PROCESSOR_MAPPING_NAMES[family.model_types[0]]["torchvision"]
    processor = getattr(transformers, name)()
    processor.size = {"shortest_edge": model_cfg.min_pixels, "longest_edge": model_cfg.max_pixels}
    return processor


@pytest.mark.parametrize("name", list(families.FAMILIES))
def test_every_gold_form_reaches_the_reward_once_in_the_familys_frame(tmp_path, name):
    from vlexp.data import load_split

    family = families.FAMILIES[name]
    images = write_images(tmp_path / "images")
    rows, expected = [], []
    for image_name, path in images.items():
        width, height = model_seen_size(path)
        box = [round(width * 0.1), round(height * 0.2), round(width * 0.7), round(height * 0.9)]
        for form, columns in gold_forms(box).items():
            rows.append({"image": f"images/{image_name}", "problem": "Where?", **columns})
            expected.append((image_name, form, box))
    path = peer_data.write_jsonl(tmp_path / "rec.jsonl", rows)
    cfg = compose([f"model={model_conf(family)}", "algo=grpo", "data=jsonl"])
    cfg.data.train = str(path)
    runplan.of(cfg)  # start-up: the family resolved once, recorded where boxes read it
    data = load_split(cfg.data.train, "grpo", cfg.data)
    assert data.num_rows == len(rows)
    pixels = family.box_frame == "pixels"
    processor = real_image_processor(family, cfg.model) if pixels else None
    frames = {}
    for index, (image_name, form, box) in enumerate(expected):
        row = data[index]
        image = row["images"][0]  # what the trainer gets: the decoded image
        if image_name not in frames:
            frames[image_name] = frame_size(family, processor, image)
        fw, fh = frames[image_name]
        sx, sy = fw / image.size[0], fh / image.size[1]
        want = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        gold = row["box"] if form == "box column" else row["solution"]
        got = [float(n) for n in NUMBER.findall(gold)]
        where = f"{name} {image_name} {form}: {gold} vs {want}"
        assert len(got) == 4 and all(
            abs(g - w) <= 0.5 + 1e-9 for g, w in zip(got, want, strict=True)
        ), where
        written = json.dumps(box) if form == "box column" else rows[index]["solution"]
        assert NUMBER.sub("#", gold) == NUMBER.sub("#", written), where  # only the numbers move


def write_record(folder: Path, columns: dict) -> Path:
    """The issue's record: a 1000x800 image with one gold box."""
    from PIL import Image

    Image.new("RGB", (1000, 800), "white").save(folder / "big.png")
    row = {"image": "big.png", "problem": "Where is the sky?", **columns}
    return peer_data.write_jsonl(folder / "rec.jsonl", [row])


@pytest.mark.parametrize(
    ("reward", "columns", "printed"),
    [
        (
            "accuracy",
            {"solution": json.dumps([{"bbox_2d": [100, 40, 500, 80]}])},
            """reward accuracy receives: solution='[{"bbox_2d": [100, 50, 500, 100]}]'""",
        ),
        ("iou", {"box": [100, 40, 500, 80]}, "reward iou receives: box='[100, 50, 500, 100]'"),
    ],
)
def test_check_data_show_prints_the_box_each_reward_receives(
    tmp_path, capsys, reward, columns, printed
):
    """Qwen3-VL writes boxes in 0-1000 of the image: (100, 40) of 1000x800 is (100, 50)."""
    from vlexp.check_data import main

    path = write_record(tmp_path, columns)
    args = ["data=jsonl", f"data.train={path}", "model=tiny_qwen3_vl", "algo=grpo"]
    assert main([*args, f"reward=[{reward}]", "--show", "1"]) == 0
    assert printed in capsys.readouterr().out.splitlines()


def test_a_pixels_frame_without_pixel_limits_says_what_to_set():
    from vlexp.data.boxes import BoxFrame

    with pytest.raises(ValueError, match="set model.min_pixels and model.max_pixels"):
        BoxFrame("pixels", 28, 0, 0)
    cfg = compose(["model=tiny", "model.min_pixels=null", "model.max_pixels=null"])
    with pytest.raises(ValueError, match="set model.min_pixels and model.max_pixels"):
        runplan.of(cfg).box_frame()


def overrides(model: str) -> list[str]:
    return ["model=tiny", "algo=grpo", "data=jsonl", f"model.name_or_path={model}"]


def test_a_model_without_a_family_gets_no_default_frame(tmp_path):
    """A model whose family cannot be told stops at start-up (the run plan), naming why;
    boxes read without a resolved family are a bad record, and box rewards that must map
    answers stop without the run's frame: neither picks a frame of its own."""
    from vlexp.config import reward as reward_config
    from vlexp.data import DataError, load_split
    from vlexp.rewards.guard import guarded

    unknown = tmp_path / "llava"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "llava"}))
    path = write_record(tmp_path, {"box": [100, 40, 500, 80]})
    no_family = ((str(unknown), "'llava' model, which no vlexp family claims"),)
    no_family += (("org/absent", "config.json is not here"),)
    for model, error in no_family:
        cfg = compose(overrides(model))
        with pytest.raises(families.UnknownFamily, match=f"model.name_or_path=.*{error}"):
            runplan.of(cfg)
        with pytest.raises(DataError, match="rec.jsonl:1: .*data.boxes.family=None"):
            load_split(str(path), "grpo", cfg.data)
        cfg = compose([*overrides(model), "reward=[iou]", "data.boxes.gold=false"])
        with pytest.raises(ValueError, match="reward iou scores boxes in the model family's"):
            guarded(reward_config.of(cfg))  # gold in the record's pixels: no frame, no guess
    plain = compose(["model=tiny", "data=jsonl", f"model.name_or_path={unknown}"])
    (tmp_path / "plain").mkdir()
    no_boxes = write_record(tmp_path / "plain", {"solution": "3"})
    assert load_split(str(no_boxes), "grpo", plain.data)["solution"] == ["3"]  # nothing to scale
    # The family declared (or resolved at start-up) in model.family is the one boxes use.
    declared = compose([*overrides(str(unknown)), "model.family=qwen3_vl"])
    assert load_split(str(path), "grpo", declared.data)["box"] == ["[100, 50, 500, 100]"]


def test_evaluation_sees_the_image_training_sees(tmp_path):
    from vlexp.evaluation.generation import open_images

    images = write_images(tmp_path)
    for name in ("exif6.jpg", "exif8.webp", "cmyk.jpg", "grey16.png"):
        (image,) = open_images([str(images[name])])
        assert image.size == model_seen_size(images[name]), name
        assert image.mode == "RGB", name


# How a peer project writes each family's boxes: ms-swift's templates
# (modelscope/ms-swift, swift/llm/template/template/qwen.py): Qwen2VLTemplate keeps the base
# Template's `norm_bbox = 'norm1000'` (0..1000 of the image), Qwen2_5VLTemplate sets
# `norm_bbox = 'none'` (absolute pixels of the resized image).
PEER_FRAMES = {"qwen2_vl": "relative_1000", "qwen2_5_vl": "pixels"}


@pytest.mark.parametrize("model_type", sorted(PEER_FRAMES))
def test_the_family_frame_is_the_one_the_peers_write(model_type):
    assert families.of_model_type(model_type).box_frame == PEER_FRAMES[model_type]


def test_iou_maps_answers_onto_the_record_pixels_through_the_image_cache(tmp_path):
    """data.boxes.gold=false: iou maps the answer from the model's frame onto the record's
    pixels with the image's size. With data.image_cache (the default) the trainer's image is
    the cached, resized copy: the size must still be the source image's."""
    from vlexp.data import image_cache, to_dataset
    from vlexp.data.sources import Reader
    from vlexp.models.loading import load_processor

    path = write_record(tmp_path, {"box": [100, 40, 500, 80]})
    overrides = ["model=tiny_qwen3_vl", "algo=grpo", "reward=[iou]", "data=jsonl"]
    cfg = compose([*overrides, f"data.train={path}", "data.boxes.gold=false"])
    cfg.cache_dir = str(tmp_path / "cache")
    cache = image_cache.for_run(
        runplan.of(cfg).data, load_processor(cfg.model, runplan.of(cfg).family)
    )
    assert cache is not None
    rows = to_dataset(Reader(cfg.data).read(str(path)), "grpo", cfg.data, image_cache=cache)
    image = rows[0]["images"][0]
    assert image.size == (128, 96)  # the cached copy, resized for the tiny budget
    perfect = "<answer>[100, 50, 500, 100]</answer>"  # 0..1000 of the 1000x800 image
    scores = runplan.of(cfg).reward_functions()["iou"](
        [perfect, "<answer>[100, 40, 500, 80]</answer>"],
        box=list(rows["box"]) * 2,
        images=[[image]] * 2,
    )
    assert scores[0] == pytest.approx(1.0) and scores[1] < 0.9, scores
