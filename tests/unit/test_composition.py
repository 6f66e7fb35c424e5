"""Build once, never patch after (STYLE.md 20): vlexp's behaviour is composed into the
trainer's and the policy's classes before they exist (vlexp.recipe.trainers,
vlexp.rollout.policy_class), never assigned onto a built trainer, model or policy.

The method names come from the classes themselves: transformers' Trainer and every
algorithm's trainer class (conf/algo), torch's Module, and transformers' own classes for
every model family vlexp knows (`vlexp.families.FAMILIES`), so a new algorithm or family is
covered without editing this file.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from tests.helpers import build_trainer, compose
from vlexp import families
from vlexp.config import algo as algorithm
from vlexp.paths import config_dir

SRC = Path(__file__).resolve().parents[2] / "src" / "vlexp"
ALGOS = sorted(p.stem for p in (config_dir() / "algo").glob("*.yaml"))
# Names a module, trainer, model or policy object goes by in src/ where a dynamic
# `setattr(obj, name, ...)` would be an instance patch.
INSTANCE_NAMES = {"self", "trainer", "model", "policy", "unwrapped", "peft_model", "module"}


def _reference_classes() -> list[type]:
    import torch
    from transformers import Trainer
    from transformers.models.auto import modeling_auto

    classes: list[type] = [Trainer, torch.nn.Module]
    classes += [algorithm.trainer_class(compose([f"algo={name}"])) for name in ALGOS]
    import transformers

    for family in families.FAMILIES.values():
        for model_type in family.model_types:
            for mapping in (
                modeling_auto.MODEL_MAPPING_NAMES,
                modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
            ):
                if model_type in mapping:
                    classes.append(getattr(transformers, mapping[model_type]))
    return classes


def _method_names() -> set[str]:
    found = set()
    for cls in _reference_classes():
        for name, value in inspect.getmembers(cls):
            if callable(value) and not isinstance(value, type):
                found.add(name)
    return found - {"__class__"}


def _is_class_name(node: ast.expr) -> bool:
    """`cls`, a CapWords name (a class), or `type(x)`: patching a class is patches.py's, with a
    contract test, not an instance patch."""
    if isinstance(node, ast.Name):
        return node.id == "cls" or node.id[:1].isupper()
    return isinstance(node, ast.Call) and getattr(node.func, "id", None) == "type"


def _patches(target: ast.Attribute, value: ast.expr, methods: set[str]) -> bool:
    """Whether `target = value` puts a function onto an object: a lambda anywhere; a method
    name on any object but `self`; on `self` (a class's own attributes, e.g. `self.cuda` of a
    callback, may share a name with a Module method) a wrapper of the same method."""
    if isinstance(value, ast.Lambda):
        return True
    if not (isinstance(target.value, ast.Name) and target.value.id == "self"):
        return target.attr in methods
    wrapped = f"self.{target.attr}"
    return target.attr in methods and wrapped in ast.unparse(value)


def _instance_patches(path: Path, methods: set[str]) -> list[str]:
    """`obj.<method> = ...`, `setattr(obj, "<method>", ...)`, an attribute set to a lambda, and
    `setattr(<trainer/model/policy>, name, ...)` with a computed name, on an object that is
    not a class."""
    found = []
    where = path.relative_to(SRC.parent) if path.is_relative_to(SRC.parent) else path.name
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if not isinstance(target, ast.Attribute) or _is_class_name(target.value):
                    continue
                if _patches(target, node.value, methods):
                    found.append(f"{where}:{node.lineno}: {ast.unparse(target)} = ...")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
            obj, name = node.args[0], node.args[1]
            if _is_class_name(obj):
                continue
            if isinstance(name, ast.Constant):
                patched = name.value in methods
            else:
                patched = isinstance(obj, ast.Name) and obj.id in INSTANCE_NAMES
            if patched:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_assigns_a_method_onto_a_trainer_model_or_policy():
    methods = _method_names()
    assert {"generate", "training_step", "_save_checkpoint", "get_image_features"} <= methods
    found = [hit for path in sorted(SRC.rglob("*.py")) for hit in _instance_patches(path, methods)]
    assert found == [], "\n".join(found)


def test_the_scan_finds_the_patches_it_is_for(tmp_path):
    """The scan itself: each way of patching an instance is found, a class patch is not."""
    module = tmp_path / "probe.py"
    module.write_text(
        "def f(trainer, model, cls, name):\n"
        "    trainer.training_step = wrap(trainer.training_step)\n"
        "    model.generate = engine\n"
        "    setattr(trainer, '_save_checkpoint', save)\n"
        "    setattr(model, name, value)\n"
        "    trainer.anything = lambda: None\n"
        "    cls.generate = generate\n"
        "    Transpose.convert = convert\n"
        "    trainer.data = 1\n"
        "    self.generate = 2\n"
        "    self.training_step = timed(self.training_step)\n",
        encoding="utf-8",
    )
    hits = _instance_patches(module, {"generate", "training_step", "_save_checkpoint"})
    lines = sorted(int(hit.split(": ", 1)[0].rsplit(":", 1)[1]) for hit in hits)
    assert lines == [2, 3, 4, 5, 6, 11]


def _vlexp_code(value) -> bool:
    """Whether `value` is vlexp's code: a function or method defined in vlexp, or an instance
    of a vlexp class that is callable (a wrapper object such as the rollout engine)."""
    if inspect.isfunction(value) or inspect.ismethod(value):
        return getattr(value, "__module__", "").startswith("vlexp")
    return callable(value) and type(value).__module__.startswith("vlexp")


def _functions_in_dict(obj) -> list[str]:
    """vlexp's functions held by `obj` itself: a vlexp function anywhere in its __dict__, or a
    vlexp callable in the place of one of its class's methods. (TRL's own instance patches,
    e.g. SFTTrainer's fused-LM-head `forward`, are TRL's: not counted.)"""
    found = []
    for name, value in vars(obj).items():
        shadows = callable(getattr(type(obj), name, None))
        if _vlexp_code(value) and (shadows or inspect.isfunction(value)):
            found.append(name)
    return sorted(found)


@pytest.mark.parametrize(
    "overrides",
    [
        ["rollout=hf_fast", "memory=lora"],  # GRPO: phase timers, the engine, LoRA merged
        ["algo=sft"],
    ],
    ids=["grpo-hf_fast-lora", "sft"],
)
def test_a_built_trainer_and_its_model_hold_no_methods_of_their_own(
    overrides, tmp_path, shapes_dir, tiny_model
):
    small = ["data.prepare.num_train=32", "data.prepare.num_eval=16", "train.max_steps=1"]
    trainer, _ = build_trainer([*small, *overrides], tmp_path)
    assert _functions_in_dict(trainer) == []
    policy = getattr(trainer.model, "policy", trainer.model)
    patched = {
        name or "<model>": _functions_in_dict(module)
        for name, module in policy.named_modules()
        if _functions_in_dict(module)
    }
    assert patched == {}
    # vlexp's callbacks went in through the constructor; transformers' bar was never added.
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from vlexp.recipe.console import LiveView

    kinds = [type(c) for c in trainer.callback_handler.callbacks]
    assert LiveView in kinds and not {ProgressCallback, PrinterCallback} & set(kinds)
