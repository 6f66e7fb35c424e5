"""Where the root config travels: a reader follows `cfg` from `recipe/run.py:build`.

Static, from the source (no import): starting in `vlexp.recipe.run.build`, every call that
passes the root config itself (the bare name holding it, positionally or by keyword) to a
vlexp function is followed into that function, under the name of the parameter that
receives it, depth first, each function once; a call returns to its caller. The reader's
trail is the module of each step (entering a callee, returning to the caller).

- `modules`: the modules the root config enters;
- `returns`: steps onto a module the trail had left before (not the one it is in);
- `climbs`: steps onto a module of a higher layer than the step before
  (tests/unit/test_seams.py's LAYERS): the reader climbing back up.

Calls are resolved by name: a module alias (`algorithm.of`), a name imported from a vlexp
module, a function or class of the same module (a class call enters `__init__`,
`Class.method` the method), and `obj.method(...)` when a class of the same module has that
method. Calls through other objects are not followed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Trail:
    steps: list[str] = field(default_factory=list)  # module of each step
    entered: list[str] = field(default_factory=list)  # module:function, in visiting order

    @property
    def modules(self) -> int:
        return len(set(self.steps))

    def returns(self) -> int:
        seen, count = set(), 0
        for before, step in zip(self.steps, self.steps[1:], strict=False):
            seen.add(before)
            count += step != before and step in seen
        return count

    def climbs(self, rank: dict[str, int]) -> int:
        ranks = [rank.get(_part(step), 0) for step in self.steps]
        return sum(after > before for before, after in zip(ranks, ranks[1:], strict=False))


def _part(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else bits[0]


class _Module:
    """One parsed module: its functions, classes and what its names refer to."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        body = self.tree.body
        self.functions = {n.name: n for n in body if isinstance(n, ast.FunctionDef)}
        self.classes = {n.name: n for n in body if isinstance(n, ast.ClassDef)}
        self.aliases: dict[str, str] = {}  # local name -> vlexp module or module.attr
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name

    def method(self, cls: str, name: str) -> ast.FunctionDef | None:
        for node in self.classes[cls].body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node
        return None


class Reader:
    def __init__(self, src: Path) -> None:
        root = src.parent
        self.modules: dict[str, Path] = {}
        for path in src.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            self.modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        self.parsed: dict[str, _Module] = {}
        self.trail = Trail()
        self.visited: set[tuple[str, str]] = set()

    def module(self, name: str) -> _Module | None:
        if name not in self.modules:
            return None
        if name not in self.parsed:
            self.parsed[name] = _Module(name, self.modules[name])
        return self.parsed[name]

    def target(self, module: _Module, func: ast.expr):
        """(module, function node, skips `self`) a call's `func` names, or None."""
        if isinstance(func, ast.Name):
            return self._named(module, func.id)
        if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
            return None
        owner, attr = func.value.id, func.attr
        if owner in module.classes:
            node = module.method(owner, attr)
            return (module, node, False) if node is not None else None
        full = module.aliases.get(owner)
        if full is not None and self.module(full) is not None:
            return self._named(self.module(full), attr)
        for cls in module.classes:  # obj.method(...) on an object of this module's class
            node = module.method(cls, attr)
            if node is not None:
                return module, node, True
        return None

    def _named(self, module: _Module, name: str):
        if name in module.functions:
            return module, module.functions[name], False
        if name in module.classes:
            node = module.method(name, "__init__")
            return (module, node, True) if node is not None else None
        full = module.aliases.get(name)
        if full is None or not full.startswith("vlexp"):
            return None
        owner, _, attr = full.rpartition(".")
        there = self.module(owner)
        return self._named(there, attr) if there is not None and there is not module else None

    def follow(self, module: _Module, func: ast.FunctionDef, holder: str) -> None:
        """Walk `func`'s calls in source order; enter those that pass `holder`."""
        calls = sorted(
            (n for n in ast.walk(func) if isinstance(n, ast.Call)),
            key=lambda n: (n.lineno, n.col_offset),
        )
        for call in calls:
            received = self._receiver(module, call, holder)
            if received is None:
                continue
            there, node, name = received
            key = (there.name, node.name + str(node.lineno))
            if key in self.visited:
                continue
            self.visited.add(key)
            self.trail.steps.append(there.name)
            self.trail.entered.append(f"{there.name}:{node.name}")
            self.follow(there, node, name)
            self.trail.steps.append(module.name)

    def _receiver(self, module: _Module, call: ast.Call, holder: str):
        """(module, function, parameter name) that receives `holder` in `call`, or None."""
        found = self.target(module, call.func)
        if found is None:
            return None
        there, node, bound = found
        params = [a.arg for a in node.args.posonlyargs + node.args.args]
        if params and params[0] in ("self", "cls") and (bound or params[0] == "cls"):
            params = params[1:]
        for index, arg in enumerate(call.args):
            if isinstance(arg, ast.Name) and arg.id == holder and index < len(params):
                return there, node, params[index]
        for keyword in call.keywords:
            if isinstance(keyword.value, ast.Name) and keyword.value.id == holder:
                return there, node, keyword.arg
        return None


def trail_of(src: Path, module: str = "vlexp.recipe.run", function: str = "build") -> Trail:
    """The trail of the root config from `module.function` (its parameter `cfg`)."""
    reader = Reader(src)
    start = reader.module(module)
    reader.trail.steps.append(module)
    reader.follow(start, start.functions[function], "cfg")
    return reader.trail
