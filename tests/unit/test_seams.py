"""The seams: behaviour follows what an algorithm declares and what its trainer class is,
model facts come from the family table, each config node has one reader, and the package
layers import only downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import compose
from vlexp import families
from vlexp.config import algo as algorithm
from vlexp.config import memory
from vlexp.paths import config_dir
from vlexp.validate import ConfigError, validate

ALGOS = sorted(p.stem for p in (config_dir() / "algo").glob("*.yaml"))
SRC = Path(__file__).resolve().parents[2] / "src" / "vlexp"


def _problems(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        validate(compose(list(overrides)), machine=False)
    return str(caught.value)


@pytest.mark.parametrize("name", ALGOS)
def test_every_algo_file_declares_its_facts(name):
    cfg = compose([f"algo={name}"])
    assert algorithm.problems(cfg) == []
    facts = algorithm.of(cfg)
    assert facts.groups <= facts.generates  # groups are of generated completions


def test_declared_facts_of_the_shipped_algorithms():
    facts = {name: algorithm.of(compose([f"algo={name}"])) for name in ALGOS}
    grouped = {"dapo", "dr_grpo", "grpo", "gspo", "bnpo", "cispo", "sapo", "luspo", "vespo"}
    grouped |= {"rloo", "reinforce_pp"}
    assert {n for n, f in facts.items() if f.groups} == grouped
    assert {n for n, f in facts.items() if f.generates} == grouped | {
        "ppo",
        "online_dpo",
        "distill",
    }
    assert {n for n, f in facts.items() if f.generates and not f.rewards} == {"distill"}
    assert {n for n, f in facts.items() if f.one_image} == {"online_dpo"}
    assert facts["grpo"].uses_reference() and not facts["dapo"].uses_reference()  # beta 0.04 / 0
    assert facts["dpo"].uses_reference() and facts["ppo"].uses_reference()
    assert facts["dpo"].sequences_per_record() == 2 == facts["reward_model"].sequences_per_record()


def test_a_missing_declaration_is_named_with_the_fix():
    message = _problems("~algo.generates")
    assert "algo.generates not declared" in message and "conf/algo/grpo.yaml" in message


@pytest.mark.parametrize("name", ["ppo", "my_ppo"])
def test_a_renamed_ppo_gets_the_ppo_checks_and_no_grpo_ones(name):
    message = _problems("algo=ppo", f"algo.name={name}", "algo.args.num_mini_batches=3")
    assert "algo.args.num_mini_batches (3)" in message
    assert "num_generations" not in message  # a key PPO does not have


@pytest.mark.parametrize("name", ["grpo", "my_grpo"])
def test_a_renamed_grpo_gets_the_group_batch_check(name):
    message = _problems(f"algo.name={name}", "train.per_device_train_batch_size=3")
    assert "is not a multiple of algo.args.num_generations = 4" in message


def test_rewards_are_required_wherever_completions_are_generated():
    assert "GRPO needs at least one reward" in _problems("reward=[]")
    assert "(it generates completions) needs at least one reward" in _problems(
        "algo=ppo", "algo.name=my_ppo", "reward=[]"
    )


def test_memory_optim_wins_over_the_algorithm_s_optimizer():
    held = memory.of(compose(["memory=adamw_8bit", "+algo.args.optim=adamw_torch"]))
    assert held.optim == "adamw_bnb_8bit" and held.eight_bit_optimizer
    assert memory.of(compose([])).optim == memory.DEFAULT_OPTIM


def test_the_planner_prices_adamw_8bit_at_8_bit_size():
    from vlexp.plan import PLAN_DEFAULTS
    from vlexp.recipe.estimate import estimate

    base = ["model=qwen2_5_vl_3b", "algo=sft"]
    full = estimate(compose(base), PLAN_DEFAULTS)
    eight = estimate(compose([*base, "memory=adamw_8bit"]), PLAN_DEFAULTS)
    numel = full.counts.trainable_numel
    gib = 1024**3
    assert full.parts["optimizer"] / gib == pytest.approx(13.99, abs=0.01)  # two bf16 moments
    assert eight.parts["optimizer"] == int(numel * (2 + 8 / 256))  # two uint8 moments + absmax
    assert eight.parts["optimizer"] / gib == pytest.approx(7.2, abs=0.1)


def test_families_answer_by_model_type_tiny_name_and_bundled_config():
    assert families.of_model_type("qwen2_5_vl").pixels_per_token == 28
    assert families.of_tiny("qwen2_5_vl").box_frame == "pixels"
    for hub_id in ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"):
        assert families.model_type_of(hub_id) in ("qwen2_5_vl", "qwen2_vl")
    with pytest.raises(families.UnknownFamily, match="known: qwen2_5_vl"):
        families.of_model_type("llava")
    with pytest.raises(families.UnknownFamily, match="tiny://qwen2_5_vl"):
        families.of_tiny("nope")


def test_value_heads_keep_their_saved_class_names():
    from vlexp.algorithms.reward_model import is_value_model, reward_class

    assert reward_class("qwen2_5_vl").__name__ == "Qwen2_5_VLForRewardModel"
    assert reward_class("qwen2_vl").__name__ == "Qwen2VLForRewardModel"
    assert reward_class("qwen2_5_vl") is reward_class("qwen2_5_vl")  # built once per family
    assert not is_value_model(__import__("torch").nn.Linear(2, 2))


# Package layers, bottom first: a module may import its own layer and those below it.
LAYERS = [
    {"paths", "patches", "config", "families", "__init__"},
    {"data"},
    {"models", "rewards", "environments"},
    {"algorithms", "evaluation"},
    {"recipe", "validate", "rollout", "runplan"},
    {"app", "worker", "plan", "evaluate", "compare", "check_data", "overrides", "__main__"}
    | {"light_exit"},  # how the commands end
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if bits[0] == "vlexp" and len(bits) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every vlexp module `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vlexp"):
            found |= (
                {node.module} if node.module != "vlexp" else {f"vlexp.{a.name}" for a in node.names}
            )
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vlexp")}
    return found


def test_layers_import_only_downwards():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        own = rel.parts[0]
        for module in _imports(path):
            part = _part(module)
            if part in RANK and RANK[part] > RANK[own]:
                upward.append(f"{'/'.join(rel.parts)} imports {module}")
    assert upward == [], "\n".join(upward)


def test_every_package_sits_in_a_layer():
    parts = {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert parts <= set(RANK), parts - set(RANK)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """vlexp module -> the vlexp modules it imports, at module level or inside functions.

    `from vlexp.data import schema` is an edge to the submodule `vlexp.data.schema`; the
    parent packages Python imports on the way are not edges (every submodule would then form
    a cycle with its package's __init__, which Python handles)."""
    modules = {_module_name(path): path for path in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names}
        graph[name] = {edge for edge in edges if edge in modules}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a self-import
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_inside_a_package():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}, "q": {"q"}}
    assert sorted(_cycles(graph)) == [["p.a", "p.b", "p.c"], ["q"]]


def test_no_import_cycles_between_modules_even_through_imports_inside_functions():
    """A cycle works only while every import in it but one stays inside a function (or at
    the end of a module): moving one import up breaks the package at import time."""
    cycles = _cycles(_import_graph())
    assert cycles == [], "\n".join(" <-> ".join(cycle) for cycle in cycles)
