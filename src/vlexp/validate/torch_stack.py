"""torch and torchvision that do not match, found at start-up instead of as 60 lines about
`TrainerCallback`.

transformers imports torchvision (its fast image and video processors) when it is installed;
a torchvision built for another torch (easy to get when the CPU index was unreachable and pip
took the PyPI build) then fails inside that import, e.g. `operator torchvision::nms does not
exist`, and transformers reports it as the failed import of `transformers.trainer_callback`.

torchvision 0.N is built for torch 2.(N-15) (the compatibility table in torchvision's README:
0.15 <-> 2.0, ..., 0.29 <-> 2.14), and both packages' `version.py` name their build (`+cpu`,
`+cu130`, `+rocm6.2`). Both are read as files, without importing either.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
from pathlib import Path

# torchvision's minor version minus torch's, for torch 2.x.
MINOR_OFFSET = 15
INDEX = "https://download.pytorch.org/whl"


def installed_version(package: str) -> str | None:
    """`2.14.1+cu130`: the version the package that imports would report, read from its
    `version.py` (the build label is there, not in the wheel's metadata); None if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "version.py"
        if path.is_file():
            found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", path.read_text("utf-8"))
            if found:
                return found.group(1)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release_and_build(version: str) -> tuple[int | None, int | None, str]:
    """`2.14.1+cu130` -> (2, 14, "cu130")."""
    release, _, label = version.partition("+")
    numbers = [int(n) for n in re.findall(r"\d+", release)[:2]] + [None, None]
    return numbers[0], numbers[1], label


def _build_kind(label: str) -> str:
    """`cpu`, `cuda13` (the CUDA major version decides what links), `rocm6.2`, or `` if none."""
    cuda = re.fullmatch(r"cu(\d+)\d", label)
    return f"cuda{cuda.group(1)}" if cuda else label


def mismatch(torch_version: str, torchvision_version: str) -> str | None:
    """Why these two builds do not work together, or None when they do (or cannot tell)."""
    torch_major, torch_minor, torch_label = _release_and_build(torch_version)
    _, vision_minor, vision_label = _release_and_build(torchvision_version)
    if torch_major == 2 and torch_minor is not None and vision_minor is not None:
        wanted = torch_minor + MINOR_OFFSET
        if vision_minor != wanted:
            return (
                f"torchvision 0.{vision_minor} is built for torch 2.{vision_minor - MINOR_OFFSET}, "
                f"torch 2.{torch_minor} needs 0.{wanted}"
            )
    torch_kind, vision_kind = _build_kind(torch_label), _build_kind(vision_label)
    if torch_kind and vision_kind and torch_kind != vision_kind:
        return f"torch is a {torch_kind} build, torchvision a {vision_kind} build"
    return None


def fix(torch_version: str) -> str:
    """The pip command that installs the torchvision built for this torch, from its index."""
    major, minor, label = _release_and_build(torch_version)
    pin = (
        f"torchvision==0.{minor + MINOR_OFFSET}.*"
        if major == 2 and minor is not None
        else "torchvision"
    )
    # The index is named by the build: +cpu -> whl/cpu, +cu130 -> whl/cu130, +rocm6.2 as is.
    label = label if label.startswith("rocm") else label.split(".")[0]
    index = f" --index-url {INDEX}/{label}" if label else ""
    return f'pip install "{pin}"{index}'


def problem() -> str | None:
    """One line when torchvision fails to import with this torch, else None (also when it is
    not installed: transformers then never imports it).

    Imported here, as transformers would import it minutes later: whether a torchvision built
    for another torch fails depends on its version (0.16-0.21 at import, later ones only when an
    operator runs), so the import decides; versions that merely disagree are a warning.
    """
    torch_version = installed_version("torch")
    vision_version = installed_version("torchvision")
    if torch_version is None or vision_version is None:
        return None
    why = mismatch(torch_version, vision_version)
    try:
        import torchvision  # noqa: F401
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return explain(err) or describe(
            torch_version, vision_version, why or f"importing torchvision fails: {first}"
        )
    if why:
        logging.getLogger("vlexp").warning(describe(torch_version, vision_version, why))
    return None


def describe(torch_version: str, vision_version: str, why: str) -> str:
    return (
        f"vlexp: torch {torch_version} and torchvision {vision_version} do not match ({why}); "
        f"transformers imports torchvision and would fail: install the torchvision built for "
        f"this torch: {fix(torch_version)}"
    )


# What torchvision raises when its C++ operators were built for another torch: at import in
# torchvision 0.16-0.21 (`_meta_registrations.py`: `torch.library.register_fake("torchvision::nms")`),
# on first use later (`extension.py`: "Couldn't load custom C++ ops"), and for CUDA builds of
# different major versions (`extension.py`: `_check_cuda_version`).
SIGNS = (
    re.compile(r"operator torchvision::\w+ does not exist"),
    re.compile(r"Couldn't load custom C\+\+ ops"),
    re.compile(r"PyTorch and torchvision were compiled with different CUDA"),
)


def explain(err: BaseException) -> str | None:
    """The one line for an error that torchvision raised for a torch it was not built for
    (found anywhere in the error's chain), else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        sign = next((s.search(text) for s in SIGNS if s.search(text)), None)
        if sign:
            torch_version = installed_version("torch") or "?"
            vision_version = installed_version("torchvision") or "?"
            why = mismatch(torch_version, vision_version) or f"torchvision says: {sign.group(0)}"
            return describe(torch_version, vision_version, why)
        err = err.__cause__ or err.__context__
    return None
