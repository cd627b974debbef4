"""Video decoding with decord: uniform frame sampling, resizing, metadata, clear errors.

``read_video(path, num_frames=16, size=224)`` returns the sampled frames as a uint8 array
``(N, size, size, 3)`` and a ``transformers`` ``VideoMetadata`` (fps, total frames, sampled indices).
Passing that metadata to the processor makes ``second_per_grid_ts`` right: without it the
processor assumes 24 fps and collapses the temporal positions of a short clip (README, "Notes on the stack").

Two ways to resize (the recipe's ``video.resize``):

- ``square`` (the tiny profile): the shorter side to ``size``, centre-cropped to ``size x size``. The tiny
  processor has a pixel budget of exactly ``size * size`` (data/tiny.build_processor), so it neither
  upscales nor downscales: 16 frames at 224 px give 16/2 * (224/28)^2 = 512 video tokens.
- ``qwen`` (the Qwen2.5-VL profiles): as qwen-vl-utils prepares video for Qwen2.5-VL, the aspect ratio
  kept, both sides multiples of 28 and at most ``size * size`` pixels (``smart_resize``), bicubic. Nothing
  at the frame's edge is cut away and the token count follows the clip's shape (a 4:3 clip at 224:
  168 x 252 px, 6 x 9 = 54 tokens per pair of frames, 432 per 16-frame clip).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class VideoDecodeError(RuntimeError):
    """A clip cannot be decoded; the message names the file and the cause."""

    def __init__(self, path: str | Path, cause: str):
        self.path, self.cause = str(path), cause
        super().__init__(f"{path}: {cause}")


@dataclass
class Video:
    frames: np.ndarray  # (N, H, W, 3) uint8
    indices: list[int]  # sampled frame indices into the original clip
    fps: float
    total_frames: int
    path: str

    @property
    def duration_s(self) -> float:
        return self.total_frames / self.fps if self.fps else 0.0

    def metadata(self):
        """transformers' VideoMetadata for the processor (sampled_fps = N / total * fps)."""
        from transformers.video_utils import VideoMetadata

        h, w = self.frames.shape[1:3]
        return VideoMetadata(
            total_num_frames=self.total_frames,
            fps=self.fps,
            width=w,
            height=h,
            duration=self.duration_s,
            video_backend="decord",
            frames_indices=list(self.indices),
        )


def shuffle_frames(video: Video, rng: np.random.Generator) -> Video:
    """The same clip with its frames in a random order, never the identity (then rolled by one). The
    timestamps stay in order, as in Video-R1: the model sees the usual positions with shuffled content.
    T-GRPO's shuffled group and evaluation's ``shuffled`` condition both use this."""
    n = len(video.frames)
    perm = rng.permutation(n)
    if n > 1 and (perm == np.arange(n)).all():
        perm = np.roll(perm, 1)
    return Video(video.frames[perm], list(video.indices), video.fps, video.total_frames, video.path)


def sample_indices(total_frames: int, num_frames: int = 16) -> list[int]:
    """Uniform indices ``round(linspace(0, total-1, N))``.

    A clip shorter than ``num_frames`` repeats indices (e.g. 4 frames -> 0,0,1,1,1,2,2,3...), so every
    clip yields exactly ``num_frames`` frames and the token count stays fixed.
    """
    if total_frames < 1:
        raise ValueError("total_frames must be >= 1")
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    return [int(i) for i in np.round(np.linspace(0, total_frames - 1, num_frames)).astype(int)]


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 4 * 28 * 28, max_pixels: int = 224 * 224
) -> tuple[int, int]:
    """Qwen2.5-VL's frame size as qwen-vl-utils' ``smart_resize`` documents it: both sides multiples of
    ``factor`` (patch 14 x spatial merge 2), the pixel count within ``[min_pixels, max_pixels]``, the
    aspect ratio kept as closely as possible (rounded to the nearest multiple; when too large, scaled by
    ``sqrt(h*w / max_pixels)`` and rounded down; when too small, scaled up and rounded up)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} is above 200")
    h, w = (max(factor, round(x / factor) * factor) for x in (height, width))
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = (max(factor, math.floor(x / beta / factor) * factor) for x in (height, width))
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = (math.ceil(x * beta / factor) * factor for x in (height, width))
    return h, w


def resize_qwen(frames: np.ndarray, size: int) -> np.ndarray:
    """Aspect-preserving resize to ``smart_resize(h, w, max_pixels=size*size)`` (bicubic, antialiased)."""
    import torch
    import torch.nn.functional as F

    n, h, w, _ = frames.shape
    nh, nw = smart_resize(h, w, max_pixels=size * size)
    if (nh, nw) == (h, w):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_square(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bilinear) and centre-crop to ``size x size``."""
    import torch
    import torch.nn.functional as F

    n, h, w, _ = frames.shape
    if (h, w) == (size, size):
        return frames
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[:, :, top : top + size, left : left + size]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def read_video(
    path: str | Path, num_frames: int = 16, size: int | None = 224, resize: str = "square"
) -> Video:
    """Decode ``num_frames`` uniformly sampled frames of ``path``; raise VideoDecodeError on any failure.
    ``resize``: ``square`` or ``qwen`` (module docstring); ``size=None`` keeps the decoded frames."""
    if resize not in RESIZE:
        raise ValueError(f"unknown resize {resize!r}; choose from {', '.join(RESIZE)}")
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    try:
        import decord

        decord.bridge.set_bridge("native")
        vr = decord.VideoReader(str(path), num_threads=1)
        total = len(vr)
        fps = float(vr.get_avg_fps() or 0.0)
    except Exception as e:  # decord raises DECORDError / RuntimeError with C++ messages
        raise VideoDecodeError(path, f"cannot open as a video ({_short(e)})") from None
    if total < 1:
        raise VideoDecodeError(path, "the video has no frames")
    if not np.isfinite(fps) or fps <= 0:
        raise VideoDecodeError(path, f"invalid frame rate {fps}")
    idx = sample_indices(total, num_frames)
    try:
        frames = vr.get_batch(idx).asnumpy()
    except Exception as e:  # truncated files: the header promises frames the stream does not have
        raise VideoDecodeError(
            path,
            f"decoding frames {idx[0]}..{idx[-1]} of {total} failed, the file may be truncated ({_short(e)})",
        ) from None
    if frames.ndim != 4 or frames.shape[0] != num_frames or frames.shape[-1] != 3:
        raise VideoDecodeError(path, f"unexpected decoded shape {frames.shape}")
    if size:
        frames = RESIZE[resize](frames, size)
    return Video(frames=frames, indices=idx, fps=fps, total_frames=total, path=str(path))


RESIZE = {"square": resize_square, "qwen": resize_qwen}


def clip_reader(frames: dict, budget_bytes: int = 1 << 30):
    """``read_video`` with ``frames``'s settings (``recipe.video.frames()``), memoised while the decoded
    clips fit in ``budget_bytes``: V-SFT reads each clip once per epoch, and decoding it again every epoch
    was a quarter of a tiny V-SFT step (BENCHMARKS.md, "Where a tiny training step goes"). The tiny
    profile's 420 clips take 63 MB; a 224-px clip takes 2.4 MB, so large sets keep the latest 400."""
    per_clip = frames["num_frames"] * (frames["size"] or 224) ** 2 * 3
    read = functools.partial(read_video, **frames)
    return functools.lru_cache(maxsize=max(budget_bytes // per_clip, 1))(read)


def _short(e: Exception, n: int = 200) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg[:n]


@dataclass
class SkipReport:
    """Clips that could not be decoded while iterating a manifest: counted and listed, never fatal."""

    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, cause)
    ok: int = 0

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        lines = [f"{self.ok} clips decoded, {self.num_skipped} skipped"]
        lines += [f"  skipped {p}: {c}" for p, c in self.skipped[:20]]
        if self.num_skipped > 20:
            lines.append(f"  ... and {self.num_skipped - 20} more")
        return "\n".join(lines)


def iter_videos(
    records: Iterable[dict],
    num_frames: int = 16,
    size: int | None = 224,
    report: SkipReport | None = None,
    resize: str = "square",
) -> Iterator[tuple[dict, Video]]:
    """Yield ``(record, Video)`` for each manifest record; damaged clips are skipped and reported."""
    report = report if report is not None else SkipReport()
    for rec in records:
        try:
            video = read_video(rec["video"], num_frames=num_frames, size=size, resize=resize)
        except VideoDecodeError as e:
            report.skipped.append((e.path, e.cause))
            continue
        report.ok += 1
        yield rec, video


def write_video(path: str | Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    """Write uint8 frames (N, H, W, 3) as an mp4: H.264 (MPEG-4 if this FFmpeg lacks x264), yuv420p.

    The bytes are deterministic for the same frames (SynthAct's "same seed, same files" relies on it):
    one thread AND no macroblock-tree lookahead — with mbtree on, 112 px clips came out different in
    ~1 of 8 encodes of the same frames (measured). Odd sizes lose their last row/column (yuv420p).
    Written to a temporary name and renamed, so an interrupted run never leaves a truncated clip.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as c:
        s = c.add_stream(codec, rate=int(round(fps)))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        x264 = {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0:rc-lookahead=0"}
        s.options = x264 if codec == "libx264" else {"qscale": "3"}
        s.thread_count = 1
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")
            frame.pts = i  # one tick of 1/fps per frame
            c.mux(s.encode(frame))
        c.mux(s.encode())
    tmp.replace(path)
    return path
