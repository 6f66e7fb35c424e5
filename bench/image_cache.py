"""What `data.image_cache` saves per epoch: decode + processor time over a shapes set.

    python bench/image_cache.py                       # 3000 shapes images, tiny model budget
    python bench/image_cache.py --num-train 3000 --max-pixels 1003520 --min-pixels 200704

For each pixel budget it times one pass over the train split the way a trainer sees it
(the `datasets.Image` column decoded, then the model's image processor on each record):
without the cache, the first pass with it (decode + resize + write once), and later passes
(cache hits). Results go to bench/results/image_cache-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from machine import describe  # noqa: E402


def one_pass(dataset, image_processor) -> tuple[float, float]:
    """(wall, CPU) seconds of one epoch: decode each record's images, run the processor.

    CPU time (this process, all threads) is the steadier figure on a shared machine.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    for row in dataset:
        image_processor(images=row["images"], return_tensors="pt")
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--min-pixels", type=int, default=3136)
    parser.add_argument("--max-pixels", type=int, default=12544)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    opts = parser.parse_args()

    from transformers import AutoProcessor

    from tests.helpers import compose
    from vlexp import runplan
    from vlexp.data import build_datasets
    from vlexp.data.image_cache import for_run
    from vlexp.models import tiny

    processor = AutoProcessor.from_pretrained(tiny.ensure())
    processor.image_processor.size = {
        "shortest_edge": opts.min_pixels,
        "longest_edge": opts.max_pixels,
    }
    image_processor = processor.image_processor
    cache_root = Path(tempfile.mkdtemp(prefix="vlexp-imgcache-"))
    cfg = compose([f"data.prepare.num_train={opts.num_train}", "data.eval=null"])
    plain, _ = build_datasets(cfg.data, "grpo")  # also generates the set (not timed)

    cached_cfg = compose([f"data.prepare.num_train={opts.num_train}", f"cache_dir={cache_root}"])
    start = time.perf_counter()
    cached, _ = build_datasets(
        cfg.data, "grpo", image_cache=for_run(runplan.of(cached_cfg).data, processor)
    )
    build_s = time.perf_counter() - start

    plain_runs = [one_pass(plain, image_processor) for _ in range(opts.passes)]
    cached_runs = [one_pass(cached, image_processor) for _ in range(opts.passes)]
    plain_s, plain_cpu = [w for w, _ in plain_runs], [c for _, c in plain_runs]
    cached_s, cached_cpu = [w for w, _ in cached_runs], [c for _, c in cached_runs]
    start = time.perf_counter()
    build_datasets(cfg.data, "grpo", image_cache=for_run(runplan.of(cached_cfg).data, processor))
    rebuild_s = time.perf_counter() - start
    shutil.rmtree(cache_root, ignore_errors=True)

    result = {
        "machine": describe(),
        "records": len(plain),
        "pixels": [opts.min_pixels, opts.max_pixels],
        "epoch_s_without_cache": plain_s,
        "epoch_s_with_cache": cached_s,
        "epoch_cpu_s_without_cache": plain_cpu,
        "epoch_cpu_s_with_cache": cached_cpu,
        "cache_build_s": build_s,
        "cache_hit_dataset_build_s": rebuild_s,
        "speedup_median": statistics.median(plain_s) / statistics.median(cached_s),
        "cpu_speedup_median": statistics.median(plain_cpu) / statistics.median(cached_cpu),
    }
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"image_cache-{opts.min_pixels}-{opts.max_pixels}-{result['machine']['host']}.json"
    (out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{len(plain)} records, pixels {opts.min_pixels}..{opts.max_pixels}: epoch "
        f"{statistics.median(plain_s):.2f} s without cache, {statistics.median(cached_s):.2f} s "
        f"with ({result['speedup_median']:.2f}x; CPU time {result['cpu_speedup_median']:.2f}x); cache built in {build_s:.2f} s once, "
        f"found again in {rebuild_s:.2f} s"
    )


if __name__ == "__main__":
    main()
