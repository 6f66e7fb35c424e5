"""A cache entry is complete whichever rank of a multi-process run builds it.

Two real torch.distributed (gloo) processes share one fresh cache; for each family one rank
builds the tiny model while the other waits at a barrier, then both load the entry through
the real loading path. The builder alternates down the family table, so both ranks build
(half the families each) and every family is built once: building each family on both ranks
doubled the test's time (200 s on 2 cores) for a code path (`tiny.ensure`, the manifest) that
does not depend on the family. On 2026-12-06 a build on rank 1 left the processor and no
`config.json` or weights (transformers saves those on rank 0 only), and the manifest
recorded that as complete: every later run on the family failed until the cache was
deleted by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, free_port
from vlexp.families import FAMILIES

TINY_BUILDS = [family.name for family in FAMILIES.values() if family.tiny]


def model_preset(name: str) -> str:
    """The `model=` preset of the tiny build `tiny://name` (read from conf/model/)."""
    for path in sorted((REPO / "conf" / "model").glob("tiny*.yaml")):
        if f"name_or_path: tiny://{name}\n" in path.read_text():
            return path.stem
    raise AssertionError(f"no conf/model preset loads tiny://{name}")


WORKER = """
import sys, torch.distributed as dist
from tests.helpers import compose
from vlexp import runplan
from vlexp.models import loading, tiny
from vlexp.paths import cache_problem

builds = [b.split(":") for b in sys.argv[1].split(",")]
dist.init_process_group("gloo")
rank = dist.get_rank()
for index, (name, preset) in enumerate(builds):
    builder = (index + 1) % 2  # rank 1 first: the rank that once saved incomplete entries
    if rank == builder:
        tiny.ensure(name)
    dist.barrier()
    path = tiny.ensure(name)  # the other rank finds the entry whole: no second build
    assert cache_problem(path, tiny.REQUIRED_FILES) is None, (rank, name)
    cfg = compose([f"model={preset}"])
    loading.load_processor(cfg.model, runplan.of(cfg).family)
    model = loading.load_model(cfg.model, cfg.memory)
    print(f"rank {rank} loaded {name}: {model.config.model_type}", flush=True)
"""


@pytest.mark.slow  # every family built once (~5 s each) and loaded on two ranks
def test_every_tiny_model_is_whole_whichever_rank_builds_it(tmp_path):
    env = {**os.environ, "VLEXP_CACHE": str(tmp_path / "cache"), "WORLD_SIZE": "2"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    command = [
        sys.executable,
        "-c",
        WORKER,
        ",".join(f"{n}:{model_preset(n)}" for n in TINY_BUILDS),
    ]
    ranks = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [rank.communicate(timeout=900)[0] for rank in ranks]
    for rank, (proc, output) in enumerate(zip(ranks, outputs, strict=True)):
        assert proc.returncode == 0, f"rank {rank}:\n{output[-4000:]}"
        for name in TINY_BUILDS:
            assert f"rank {rank} loaded {name}: " in output
