"""A generate call's inputs cut into rows, each with its own images, and put back together:
what `rollout=hf_fast` needs to generate each unique prompt once and to pad the batch to a
bucket (vlexp.rollout.fast). Families whose images come with grids (Qwen: `image_grid_thw`,
t*h*w patches, one token per merge**2 of them) and fixed-size images (Gemma 3:
`mm_tokens_per_image` tokens each) are cut; any other input leaves the call untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Per-token fields padded like input_ids (left, with 0).
TOKEN_FIELDS = ("attention_mask", "mm_token_type_ids", "token_type_ids")
# Image-like inputs: (pixel key, grid key, token-id attribute of the model config).
VISUAL_INPUTS = (
    ("pixel_values", "image_grid_thw", "image_token_id"),
    ("pixel_values_videos", "video_grid_thw", "video_token_id"),
)


def bucket(n: int, smallest: int = 1) -> int:
    """The power of two at or above n (at least `smallest`)."""
    size = max(1, int(smallest))
    while size < n:
        size *= 2
    return size


@dataclass
class Rows:
    """A generate call's inputs, cut into rows: each row's tensors and its own images."""

    ids: Any  # (B, L)
    token_fields: dict[str, Any]  # name -> (B, L)
    images: dict[str, list[Any]] = field(default_factory=dict)  # pixel key -> per row (P_r, ...)
    grids: dict[str, list[Any]] = field(default_factory=dict)  # grid key -> per row (n_r, 3)
    other: dict[str, Any] = field(default_factory=dict)  # kwargs passed through as given

    def pick(self, index: list[int]) -> Rows:
        import torch

        at = torch.tensor(index, device=self.ids.device)
        return Rows(
            self.ids[at],
            {k: v[at] for k, v in self.token_fields.items()},
            {k: [v[i] for i in index] for k, v in self.images.items()},
            {k: [v[i] for i in index] for k, v in self.grids.items()},
            self.other,
        )

    def same(self, a: int, b: int) -> bool:
        import torch

        if not torch.equal(self.ids[a], self.ids[b]):
            return False
        for value in self.token_fields.values():
            if not torch.equal(value[a], value[b]):
                return False
        for rows in (*self.images.values(), *self.grids.values()):
            if rows[a].shape != rows[b].shape or not torch.equal(rows[a], rows[b]):
                return False
        return True

    def left_pad(self, length: int, pad_id: int) -> Rows:
        import torch.nn.functional as F

        extra = length - self.ids.shape[1]
        if extra <= 0:
            return self
        fields = {k: F.pad(v, (extra, 0), value=0) for k, v in self.token_fields.items()}
        return Rows(
            F.pad(self.ids, (extra, 0), value=pad_id), fields, self.images, self.grids, self.other
        )

    def inputs(self) -> dict[str, Any]:
        import torch

        out = {"input_ids": self.ids, **self.token_fields, **self.other}
        for key, rows in (*self.images.items(), *self.grids.items()):
            out[key] = torch.cat(rows)
        return out


def _tokens_per_pixel_row(config: Any) -> int | None:
    """Image tokens one row of a 4-D `pixel_values` costs, where the config fixes it: Gemma 3's
    `mm_tokens_per_image` (one row per image), InternVL's `image_seq_length` (one per tile)."""
    found = getattr(config, "mm_tokens_per_image", None) or getattr(
        config, "image_seq_length", None
    )
    return int(found) if found else None


def split_rows(inputs: dict[str, Any], config: Any) -> Rows | None:
    """`inputs` cut into rows, or None when their images cannot be assigned to rows (then the
    call goes through unchanged). Each row's images are the next ones in the batch whose image
    tokens add up to the row's count of the image token (grids: t*h*w / merge**2 tokens each;
    fixed-size images as Gemma 3's: `mm_tokens_per_image`; InternVL's tiles: `image_seq_length`)."""
    import torch

    ids = inputs.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        return None
    token_fields = {k: inputs[k] for k in TOKEN_FIELDS if isinstance(inputs.get(k), torch.Tensor)}
    used = {"input_ids", *token_fields}
    rows = Rows(ids, token_fields)
    for pixel_key, grid_key, token_attr in VISUAL_INPUTS:
        pixels = inputs.get(pixel_key)
        if pixels is None:
            continue
        token_id = getattr(config, token_attr, None)
        grid = inputs.get(grid_key)
        if token_id is None:
            return None
        if grid is not None:
            merge = getattr(getattr(config, "vision_config", None), "spatial_merge_size", 1) or 1
            per_image = (grid.prod(-1) // merge**2).tolist()
            patches = grid.prod(-1).tolist()
        elif pixels.dim() == 4 and _tokens_per_pixel_row(config):
            # One pixel row = a fixed number of image tokens: a whole image (Gemma 3) or one
            # tile of an image (InternVL), the tiles of all images in order.
            per_image = [_tokens_per_pixel_row(config)] * pixels.shape[0]
            patches = [1] * pixels.shape[0]
        else:
            return None
        cut = _assign(ids, token_id, per_image)
        if cut is None:
            return None
        starts = [0, *torch.tensor(patches).cumsum(0).tolist()]
        rows.images[pixel_key] = [pixels[starts[a] : starts[b]] for a, b in cut]
        if grid is not None:
            rows.grids[grid_key] = [grid[a:b] for a, b in cut]
        used |= {pixel_key, grid_key}
    rows.other = {k: v for k, v in inputs.items() if k not in used}
    if any(isinstance(v, torch.Tensor) and v.dim() > 0 for v in rows.other.values()):
        return None  # a batched input vlexp does not know how to cut: leave the call alone
    return rows


def _assign(ids: Any, token_id: int, per_image: list[int]) -> list[tuple[int, int]] | None:
    """(first, past-last) image index of each row, or None if the counts do not add up."""
    out, image = [], 0
    for count in (ids == token_id).sum(-1).tolist():
        first = image
        while count > 0 and image < len(per_image):
            count -= per_image[image]
            image += 1
        if count != 0:
            return None
        out.append((first, image))
    return out if image == len(per_image) else None


def groups_of_repeats(rows: Rows) -> int:
    """k when the batch is consecutive groups of k identical rows (k > 1), else 1."""
    n = rows.ids.shape[0]
    k = 1
    while k < n and rows.same(0, k):
        k += 1
    if k == 1 or n % k:
        return 1
    for start in range(0, n, k):
        if not all(rows.same(start, start + j) for j in range(1, k)):
            return 1
    return k
