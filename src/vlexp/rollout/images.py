"""One vision-tower pass per distinct image in every forward (`rollout.share_images`).

TRL's log-prob and loss passes forward the k completions of a prompt with k copies of its
image; `share_image_features` makes the tower encode each distinct image once.
"""

from __future__ import annotations

from typing import Any


def share_image_features(model: Any) -> int:
    """Make the vision tower encode each distinct image of a forward once: TRL's log-prob and
    loss passes forward the k completions of a prompt with k copies of its image. Wraps
    `get_image_features` of the modules that own the tower (`visual`: the Qwen families,
    whose output holds one tensor per image); its callers get the same per-image features,
    copied by reference (the gradient of a shared feature sums over its uses). Returns the
    number of modules wrapped (0 for families without per-image grids, e.g. Gemma 3)."""
    wrapped = 0
    for module in model.modules():
        method = getattr(module, "get_image_features", None)
        if method is None or not hasattr(module, "visual") or hasattr(method, "vlexp_shared"):
            continue
        module.get_image_features = _shared(method)
        wrapped += 1
    return wrapped


def _shared(original: Any) -> Any:
    def call(pixel_values: Any, image_grid_thw: Any = None, **kwargs: Any) -> Any:
        import torch

        if image_grid_thw is None or len(image_grid_thw) < 2:
            return original(pixel_values, image_grid_thw, **kwargs)
        chunks = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
        firsts: list[int] = []  # index of each distinct image's first copy
        index_of: list[int] = []  # per image: its position among the distinct ones
        for i, chunk in enumerate(chunks):
            match = next(
                (
                    n
                    for n, j in enumerate(firsts)
                    if torch.equal(image_grid_thw[j], image_grid_thw[i])
                    and torch.equal(chunks[j], chunk)
                ),
                None,
            )
            if match is None:
                firsts.append(i)
                match = len(firsts) - 1
            index_of.append(match)
        if len(firsts) == len(chunks):
            return original(pixel_values, image_grid_thw, **kwargs)
        unique = torch.cat([chunks[j] for j in firsts])
        out = original(unique, image_grid_thw[firsts], **kwargs)
        return _spread(out, index_of, len(firsts))

    call.vlexp_shared = True
    return call


def _spread(out: Any, index_of: list[int], distinct: int) -> Any:
    """The distinct images' features handed out to every copy: per-image tuples (pooler
    output; each deepstack layer's) are re-indexed; anything else stays the distinct ones'."""
    pooled = getattr(out, "pooler_output", None)
    if not isinstance(pooled, tuple | list) or len(pooled) != distinct:
        raise RuntimeError(
            "rollout.share_images: this model's get_image_features does not return one "
            "feature tensor per image (transformers changed?): set rollout.share_images=false"
        )
    out.pooler_output = tuple(pooled[i] for i in index_of)
    layers = getattr(out, "deepstack_features", None)
    if layers is not None:
        out.deepstack_features = [tuple(layer[i] for i in index_of) for layer in layers]
    return out
