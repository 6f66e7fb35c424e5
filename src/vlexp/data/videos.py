"""Video inputs: read, sample and resize frames exactly as qwen-vl-utils does for inference.

A video is a file (`"clip.mp4"`) or a list of frame images (`["f0.png", "f1.png", ...]`).
`load` hands it to qwen-vl-utils' `fetch_video` with the budget of `data.video` (`fps` or
`nframes`, `min_frames`/`max_frames`, `min_pixels`/`max_pixels`/`total_pixels` per frame),
so the frames, their count (`smart_nframes`) and size (`smart_resize`) are the ones
`process_vision_info` gives at inference. The processor then only normalises and patchifies
them (`do_resize=False`, `do_sample_frames=False`), which makes `video_grid_thw`
`(nframes / temporal_patch, height / patch, width / patch)`.

In the data set a video is `{"path": "clip.mp4", "frames": None}` or `{"path": None,
"frames": [...]}` (one Arrow type for both forms), in a `videos` column beside `images`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from vlexp import patches
from vlexp.families import Family

BACKENDS = ("auto", "torchvision", "pyav", "decord", "torchcodec")
# Each backend's package, as pip names it (`pyav` and `torchvision` both decode with PyAV here).
BACKEND_PACKAGES = {
    "torchvision": "av",
    "pyav": "av",
    "decord": "decord",
    "torchcodec": "torchcodec",
}
BACKEND_MODULES = {
    "torchvision": "av",
    "pyav": "av",
    "decord": "decord",
    "torchcodec": "torchcodec",
}
TEMPORAL_PATCH = 2  # frames per temporal patch (Qwen2-VL, Qwen2.5-VL): qwen-vl-utils' FRAME_FACTOR
VIDEO_PAD = "<|video_pad|>"
_ACTIVE: str | None = None  # the backend qwen-vl-utils was last told to use


class VideoError(ValueError):
    """A video that cannot be read or a backend that is not installed; the message says why."""


@dataclass(frozen=True)
class Budget:
    """`data.video`: frame sampling and pixel limits, as qwen-vl-utils names them."""

    fps: float | None = 2.0
    nframes: int | None = None
    min_frames: int | None = None
    max_frames: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    backend: str = "auto"
    # The model family's vision patch side: frames are resized to multiples of patch x 2 (the
    # 2x2 merge): 14 for Qwen2/2.5-VL (28 px), 16 for Qwen3-VL and Qwen3.5 (32 px). None only
    # for checking `data.video` before a model is known: `load` refuses it.
    patch_size: int | None = None

    @classmethod
    def from_config(cls, video_cfg: Any, patch_size: int | None = None) -> Budget:
        cfg = dict(video_cfg or {})
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if cfg.get(k) is not None}
        if patch_size is not None:
            known["patch_size"] = patch_size
        return cls(**known)

    @classmethod
    def for_family(cls, video_cfg: Any, family: Family) -> Budget:
        """`data.video` with the patch size of the model's family."""
        return cls.from_config(video_cfg, family.patch_size)

    def element(self, video: dict) -> dict:
        """The qwen-vl-utils content part for one video, budget keys included."""
        keys = ("min_pixels", "max_pixels", "total_pixels")
        element: dict[str, Any] = {"type": "video"}
        element.update({k: getattr(self, k) for k in keys if getattr(self, k) is not None})
        if video.get("frames"):
            # Frames are already sampled: fps says how far apart they are (qwen-vl-utils'
            # sample_fps); nframes/min_frames/max_frames do not apply to a frame list.
            element["video"] = list(video["frames"])
            element["sample_fps"] = self.fps or 2.0
            return element
        element["video"] = video["path"]
        if self.nframes is not None:
            element["nframes"] = self.nframes  # smart_nframes takes fps or nframes, never both
        else:
            element["fps"] = self.fps if self.fps is not None else 2.0
            for key in ("min_frames", "max_frames"):
                if getattr(self, key) is not None:
                    element[key] = getattr(self, key)
        return element


def backend_problems(budget: Budget) -> list[str]:
    """An unknown backend, or one whose package is not installed on this machine."""
    if budget.backend not in BACKENDS:
        return [f"data.video.backend must be one of {', '.join(BACKENDS)}, got {budget.backend!r}"]
    if (
        budget.backend != "auto"
        and importlib.util.find_spec(BACKEND_MODULES[budget.backend]) is None
    ):
        return [missing_backend(budget.backend)]
    return []


def budget_problems(budget: Budget) -> list[str]:
    """Frame and pixel limits that cannot work (vlexp.validate reports them up front)."""
    found = []
    if budget.nframes is not None and budget.nframes < TEMPORAL_PATCH:
        found.append(f"data.video.nframes={budget.nframes}: at least {TEMPORAL_PATCH} frames")
    if budget.min_pixels and budget.max_pixels and budget.min_pixels > budget.max_pixels:
        found.append("data.video.min_pixels is above data.video.max_pixels")
    if budget.min_frames and budget.max_frames and budget.min_frames > budget.max_frames:
        found.append("data.video.min_frames is above data.video.max_frames")
    return found


def missing_backend(name: str) -> str:
    return (
        f"data.video.backend={name} needs the '{BACKEND_PACKAGES[name]}' package: "
        f"pip install {BACKEND_PACKAGES[name]} (or pick another data.video.backend)"
    )


def resolve_backend(name: str) -> str:
    """The backend to read with: `auto` picks torchcodec, then decord, then PyAV."""
    if name == "auto":
        for candidate in ("torchcodec", "decord", "torchvision"):
            if importlib.util.find_spec(BACKEND_MODULES[candidate]) is not None:
                return candidate
        raise VideoError(
            "no video reader is installed: pip install av (or decord, or torchcodec) to read videos"
        )
    if name not in BACKENDS:
        raise VideoError(f"data.video.backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if importlib.util.find_spec(BACKEND_MODULES[name]) is None:
        raise VideoError(missing_backend(name))
    return "torchvision" if name == "pyav" else name


def use_backend(name: str) -> str:
    """Make qwen-vl-utils read with `name`; returns the backend it will use.

    qwen-vl-utils picks its reader once per process from FORCE_QWENVL_VIDEO_READER (read at
    import). torchvision 0.25+ removed `torchvision.io.read_video`, which its torchvision
    reader calls; that reader is then replaced by the same decoding through PyAV, the library
    read_video used.
    """
    global _ACTIVE
    backend = resolve_backend(name)
    if backend == _ACTIVE:
        return backend  # clearing its cache again would only print its choice again
    patches.qwen_vl_utils_video_reader(backend, torchvision_fallback=read_with_pyav)
    _ACTIVE = backend
    return backend


def read_with_pyav(element: dict) -> tuple[Any, dict, float]:
    """qwen-vl-utils' reader contract with PyAV: (frames TCHW uint8, metadata, sample fps).

    Samples like its torchvision reader: `smart_nframes` frames at evenly spaced indices.
    """
    import av
    import torch
    from qwen_vl_utils.vision_process import smart_nframes

    path = element["video"].removeprefix("file://")
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        frames = [
            torch.from_numpy(frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)
        ]
    if not frames:
        raise VideoError(f"{path}: no video frames")
    video = torch.stack(frames).permute(0, 3, 1, 2)  # (T, C, H, W) uint8
    total = video.size(0)
    nframes = smart_nframes(element, total_frames=total, video_fps=fps or 2.0)
    index = torch.linspace(0, total - 1, nframes).round().long()
    metadata = {
        "fps": fps,
        "frames_indices": index,
        "total_num_frames": total,
        "video_backend": "pyav",
    }
    return video[index], metadata, nframes / max(total, 1e-6) * (fps or 2.0)


@dataclass
class Loaded:
    """One video as the processor takes it: resized float frames (T, C, H, W) + metadata."""

    frames: Any
    metadata: dict
    patch_size: int  # the vision patch side the frames were resized for (Budget.patch_size)

    @property
    def grid_thw(self) -> tuple[int, int, int]:
        """(temporal, height, width) patches: 2 frames per temporal patch (qwen-vl-utils)."""
        return self.grid(patch_size=self.patch_size, temporal_patch_size=TEMPORAL_PATCH)

    @property
    def tokens(self) -> int:
        """Video pad tokens, 2x2 patches merged (`Family.video_tokens` counts the whole cost)."""
        return self.tokens_with(self.patch_size, temporal_patch_size=TEMPORAL_PATCH, merge_size=2)

    def grid(self, patch_size: int, temporal_patch_size: int) -> tuple[int, int, int]:
        t, _, h, w = self.frames.shape
        return t // temporal_patch_size, h // patch_size, w // patch_size

    def tokens_with(self, patch_size: int, temporal_patch_size: int, merge_size: int) -> int:
        """Video pad tokens in the prompt: one per merged patch of each temporal patch."""
        t, h, w = self.grid(patch_size, temporal_patch_size)
        return t * h * w // (merge_size * merge_size)

    def tokens_for(self, processor: Any) -> int:
        """Video pad tokens as the video processor counts them (not the frame markers some
        families add around them: `Family.video_tokens` counts those too)."""
        video = processor.video_processor
        return self.tokens_with(video.patch_size, video.temporal_patch_size, video.merge_size)


def load(video: dict, budget: Budget) -> Loaded:
    """Read, sample and resize one video with qwen-vl-utils (VideoError when it cannot)."""
    from qwen_vl_utils.vision_process import fetch_video

    if budget.patch_size is None:
        raise ValueError("videos.load needs the model family's patch size: Budget.for_family")
    use_backend(budget.backend)
    element = budget.element(video)
    where = (
        video.get("path") or f"{len(video.get('frames') or [])} frames from {video['frames'][0]}"
    )
    try:
        frames, metadata = fetch_video(
            element, image_patch_size=budget.patch_size, return_video_metadata=True
        )
    except VideoError:
        raise
    except Exception as err:  # the readers raise anything from OSError to AssertionError
        raise VideoError(f"{where}: cannot read the video ({type(err).__name__}: {err})") from None
    if frames.shape[0] == 0:
        raise VideoError(f"{where}: no video frames")
    indices = metadata.get("frames_indices")
    metadata = {
        **metadata,
        "frames_indices": [int(i) for i in indices] if indices is not None else None,
    }
    return Loaded(frames, metadata, budget.patch_size)


def as_video(value: Any) -> dict:
    """A record's video (a path or a list of frame paths) in the data set's one form."""
    if isinstance(value, str):
        return {"path": value, "frames": None}
    return {"path": None, "frames": list(value)}


def processor_inputs(videos: list[Loaded]) -> dict[str, Any]:
    """Processor keyword arguments for pre-sampled, pre-resized videos (qwen-vl-utils' way)."""
    if not videos:
        return {}
    return {
        "videos": [v.frames for v in videos],
        "video_metadata": [v.metadata for v in videos],
        # cap_pixels_per_frame only silences a warning: with do_resize off nothing is resized.
        "videos_kwargs": {
            "do_resize": False,
            "do_sample_frames": False,
            "cap_pixels_per_frame": True,
        },
    }
