"""Training equals inference (issue 24, item 1): for every forward an algorithm trains through
(the algo files of conf/algo, grouped by the trainer and config classes they name) and every
model family with a tiny build (vlexp.families.FAMILIES), on images and, where the family
and the algorithm take them, on videos: one batch from vlexp's own data path and the trainer's
own dataloader, through the trainer's own `training_step`, gives the per-token log-probabilities
(value heads: the per-token values and the score) that the model's own forward gives on
`processor(text=processor.apply_chat_template(conversation), images=...)`, in fp32.

How both sides are read, and which rows are compared with which conversation: tests/parity.py.
"""

from __future__ import annotations

import pytest

from tests import parity
from vlexp import families

ATOL = 1e-4  # fp32; same inputs give differences around 1e-6 (padding, batch shapes)
GROUPS = parity.forward_groups()
SMALL = [
    "data.prepare.num_train=8",
    "data.eval=null",
    "train.per_device_train_batch_size=2",
    "train.save_steps=1000",
]


def model_option(family: families.Family) -> str:
    """The conf/model file whose model is the family's tiny build."""
    from omegaconf import OmegaConf

    for path in sorted((parity.REPO / "conf" / "model").glob("*.yaml")):
        if OmegaConf.load(path).get("name_or_path") == f"tiny://{family.name}":
            return path.stem
    raise AssertionError(f"no conf/model file has name_or_path: tiny://{family.name}")


def cases() -> list:
    """Every (algo group, family with a tiny build, medium). A diagonal of them is in the fast
    set, each group on one family and each family under several groups (rotating, so a new row
    lands somewhere by itself); the rest of the matrix is marked slow (about 10 s a case on
    2 CPU cores: the whole matrix takes minutes)."""
    rows = []
    tiny = [f for f in families.FAMILIES.values() if f.tiny is not None]
    for number, (label, names) in enumerate(GROUPS.items()):
        node = parity.algo_node(parity.ALGO_DIR / f"{names[0]}.yaml")
        for family in families.FAMILIES.values():
            for medium in ("image", "video"):
                takes = [f for f in tiny if f.video] if medium == "video" else tiny
                marks = (
                    [pytest.mark.skip(reason=reason)]
                    if (reason := unsupported(node, family, medium))
                    else []
                )
                if not marks and takes[(number + (medium == "video")) % len(takes)] != family:
                    marks = [pytest.mark.slow]
                case_id = f"{label}-{family.name}-{medium}"
                rows.append(pytest.param(names, family, medium, marks=marks, id=case_id))
    return rows


def unsupported(node, family: families.Family, medium: str) -> str | None:
    """Why the registries say this combination cannot run, or None."""
    if family.tiny is None:
        return f"{family.name} has no tiny build (vlexp.families: tiny=None)"
    if medium == "video" and not family.video:
        return f"{family.name} takes no videos (vlexp.families: video=False)"
    if family.packed_images:
        from hydra.utils import get_class

        from vlexp.algorithms.packed_images import refusal

        if reason := refusal(family, get_class(node.trainer._target_)):
            return reason
    if medium == "video" and node.get("videos") is False:
        return f"algo={node.name} takes no videos (its algo file: videos: false)"
    if medium == "video" and node.get("one_image"):
        return f"algo={node.name} takes one image per prompt (its algo file: one_image: true)"
    return None


def overrides(names: list[str], family: families.Family, medium: str) -> list[str]:
    """The command a user would run for the group's first algorithm, made small."""
    from omegaconf import OmegaConf

    node = parity.algo_node(parity.ALGO_DIR / f"{names[0]}.yaml")
    args = node.args
    found = [f"algo={names[0]}", f"model={model_option(family)}", *SMALL]
    found.append("data=shapes_video" if medium == "video" else "data=shapes")
    if node.get("groups"):
        found.append("algo.args.num_generations=2")
    for key in ("max_completion_length", "max_new_tokens"):
        if node.get("generates") and key in args:
            found.append(f"algo.args.{key}=8")  # a few sampled tokens are enough to compare
    if "ppo_epochs" in args:
        found.append("algo.args.ppo_epochs=1")
    if "teacher" in OmegaConf.load(parity.ALGO_DIR / f"{names[0]}.yaml"):
        from vlexp.models import tiny

        found.append(f"teacher.name_or_path={tiny.ensure(family.name)}")
    return found


def references(cfg, processor, family) -> list[parity.Reference]:
    """Every conversation of the training data, as vlexp's reader gives it (before any trainer
    formatting), through the processor alone."""
    from vlexp.data import build_datasets

    rows, _ = build_datasets(cfg.data, cfg.algo.kind)
    refs = []
    for row in rows:
        videos = parity.video_inputs(cfg, row, family.patch_size) if row.get("videos") else None
        for messages, prompt in parity.conversations(row):
            refs.append(parity.reference(processor, messages, row["images"], videos, prompt))
    return refs


@pytest.mark.parametrize("names, family, medium", cases())
def test_parity(names, family, medium, tmp_path, vlexp_cache):
    from tests.helpers import build_trainer

    trainer, cfg = build_trainer(overrides(names, family, medium), tmp_path / "run")
    probes = parity.probes_of(trainer)
    parity.run_one_step(trainer, probes)
    refs = references(cfg, _processor(trainer), family)
    for probe in probes:
        assert probe.calls, f"{type(trainer).__name__}: no forward through {probe.head}"
        result = parity.compare(probe, refs, ATOL)
        where = f"{'+'.join(names)} on {family.name} ({medium}, {probe.head})"
        assert result.rows >= 2, f"{where}: only {result.rows} trainer rows matched a conversation"
        assert not result.problems, f"{where}: trainer differs from inference:\n" + "\n".join(
            result.problems
        )


def _processor(trainer):
    """The model's processor (trainers may hold a wrapper of it as `processing_class`)."""
    held = trainer.processing_class
    return getattr(held, "processor", held)
