"""One vision-tower pass per distinct image in every forward (`rollout.share_images`).

TRL's log-prob and loss passes forward the k completions of a prompt with k copies of its
image; `share_image_features` makes the tower encode each distinct image once, through
torch's module hooks (nothing is assigned onto the model).
"""

from __future__ import annotations

import weakref
from typing import Any

# Towers already hooked (a second call must not hook them twice).
_HOOKED: weakref.WeakSet = weakref.WeakSet()


def share_image_features(model: Any) -> int:
    """Make the vision tower encode each distinct image of a forward once. Hooks the modules
    that own a tower (`visual`: the Qwen families, whose `get_image_features` calls it with the
    forward's own `image_grid_thw`): the owner's forward notes that grid, and the tower's call
    with it (images, not videos) gets the distinct images only; its output is handed back
    copied to every image, by reference (the gradient of a shared feature sums over its uses).
    Returns the number of towers hooked (0 for families without per-image grids, e.g.
    Gemma 3)."""
    hooked = 0
    for owner in model.modules():
        tower = getattr(owner, "visual", None)
        if tower is None or not hasattr(owner, "get_image_features") or tower in _HOOKED:
            continue
        _Sharing(owner, tower)
        _HOOKED.add(tower)
        hooked += 1
    return hooked


class _Sharing:
    """The hooks of one tower: the owner's forward notes its image grid; the tower's call with
    that grid is narrowed to the distinct images and its output spread back."""

    def __init__(self, owner: Any, tower: Any) -> None:
        self.grid: Any = None  # the image_grid_thw of the owner's forward under way
        self.index_of: list[int] | None = None  # per image: its distinct image, this call
        self.sizes: tuple[list[int], list[int]] = ([], [])  # distinct (patches, merged tokens)
        self.merge = getattr(tower, "spatial_merge_size", 1) or 1
        owner.register_forward_pre_hook(self.note_grid, with_kwargs=True)
        owner.register_forward_hook(self.forget_grid, with_kwargs=True)
        tower.register_forward_pre_hook(self.narrow, with_kwargs=True)
        tower.register_forward_hook(self.spread, with_kwargs=True)

    def note_grid(self, module, args, kwargs) -> None:
        self.grid = kwargs.get("image_grid_thw")

    def forget_grid(self, module, args, kwargs, output) -> None:
        self.grid = None

    def narrow(self, module, args, kwargs):
        import torch

        grid = kwargs.get("grid_thw")
        self.index_of = None
        if grid is None or grid is not self.grid or len(grid) < 2 or not args:
            return None  # videos, or a call outside the owner's forward: untouched
        chunks = torch.split(args[0], grid.prod(-1).tolist())
        firsts, index_of = _distinct(chunks, grid)
        if len(firsts) == len(chunks):
            return None
        self.index_of = index_of
        patches = [int(chunks[j].shape[0]) for j in firsts]
        self.sizes = (patches, [p // self.merge**2 for p in patches])
        unique = torch.cat([chunks[j] for j in firsts])
        return (unique, *args[1:]), {**kwargs, "grid_thw": grid[firsts]}

    def spread(self, module, args, kwargs, output):
        if self.index_of is None:
            return None
        index_of, self.index_of = self.index_of, None
        for key, value in list(output.items()):
            output[key] = _spread_field(value, index_of, self.sizes, key)
        return output


def _distinct(chunks: tuple, grid: Any) -> tuple[list[int], list[int]]:
    """(index of each distinct image's first copy, per image: its position among those)."""
    import torch

    firsts: list[int] = []
    index_of: list[int] = []
    for i, chunk in enumerate(chunks):
        match = next(
            (
                n
                for n, j in enumerate(firsts)
                if torch.equal(grid[j], grid[i]) and torch.equal(chunks[j], chunk)
            ),
            None,
        )
        if match is None:
            firsts.append(i)
            match = len(firsts) - 1
        index_of.append(match)
    return firsts, index_of


def _spread_field(value: Any, index_of: list[int], sizes: tuple, key: str) -> Any:
    """One output field of the distinct images, copied out to every image: a tensor with a
    row per patch or per merged token (pooler output, hidden states), or a list of them (each
    deepstack layer's)."""
    import torch

    if isinstance(value, list | tuple):
        return type(value)(_spread_field(v, index_of, sizes, key) for v in value)
    if not isinstance(value, torch.Tensor):
        return value
    for per_image in sizes:
        if value.shape[0] == sum(per_image):
            parts = torch.split(value, per_image)
            return torch.cat([parts[i] for i in index_of])
    raise RuntimeError(
        f"rollout.share_images: the vision tower's `{key}` has {value.shape[0]} rows, neither "
        "one per patch nor one per merged token of its images (transformers changed?): set "
        "rollout.share_images=false"
    )
