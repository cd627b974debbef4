import numpy as np
import pytest

from reasonact.video import (
    SkipReport,
    VideoDecodeError,
    iter_videos,
    read_video,
    resize_square,
    sample_indices,
    write_video,
)

from .conftest import moving_square


def test_sample_indices_uniform_and_short_clips():
    assert sample_indices(300, 16) == [int(x) for x in np.round(np.linspace(0, 299, 16))]
    assert sample_indices(16, 16) == list(range(16))
    short = sample_indices(5, 16)  # documented: shorter clips repeat indices
    assert len(short) == 16 and short[0] == 0 and short[-1] == 4 and sorted(short) == short
    assert sample_indices(1, 4) == [0, 0, 0, 0]
    with pytest.raises(ValueError):
        sample_indices(0, 16)


def test_read_video_shape_indices_metadata(clip_path):
    v = read_video(clip_path, num_frames=16, size=56)
    assert v.frames.shape == (16, 56, 56, 3) and v.frames.dtype == np.uint8
    assert v.total_frames == 24 and v.fps == pytest.approx(12)
    assert v.indices == sample_indices(24, 16)
    md = v.metadata()
    assert md.frames_indices == v.indices and md.sampled_fps == pytest.approx(16 / 24 * 12)
    # content is preserved: the square moves right, so the bright centroid's x increases
    xs = [np.argwhere(f.max(-1) > 100)[:, 1].mean() for f in v.frames]
    assert xs[-1] > xs[0] + 20


def test_short_clip_repeats_frames(tmp_path):
    p = write_video(tmp_path / "short.mp4", moving_square(num_frames=6), fps=6)
    v = read_video(p, 16, 56)
    assert v.frames.shape[0] == 16 and v.total_frames == 6


@pytest.mark.parametrize("size", [56, 112, 224])
def test_video_token_count_matches_size(tiny_model_dir, clip_path, size):
    """16 frames at `size` px give 16/2 * (size/28)^2 tokens: the processor neither up- nor downscales."""
    from transformers import AutoProcessor

    from reasonact.data.tiny import build_processor
    from reasonact.prompts import encode_videos

    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    proc = build_processor(tok, size)
    v = read_video(clip_path, 16, size)
    inputs = encode_videos(proc, [v])
    n = int((inputs["input_ids"] == tok.convert_tokens_to_ids("<|video_pad|>")).sum())
    assert n == 8 * (size // 28) ** 2
    assert inputs["video_grid_thw"].tolist() == [[8, size // 14, size // 14]]
    # seconds per temporal grid = 2 frames / sampled fps (from the metadata, not the 24 fps default)
    assert float(inputs["second_per_grid_ts"][0]) == pytest.approx(2 / v.metadata().sampled_fps, rel=1e-4)


def test_avi_is_read(tmp_path):
    import av

    path = tmp_path / "clip.avi"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 80, 64, "yuv420p"
        for f in moving_square(20):
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    v = read_video(path, 16, 56)
    assert v.frames.shape == (16, 56, 56, 3) and v.total_frames == 20


def test_resize_keeps_square_center():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, :, 90:110] = 255  # a vertical bar in the centre survives the centre crop
    out = resize_square(frames, 56)
    assert out.shape == (2, 56, 56, 3)
    assert out[0, :, 28].mean() > 200 and out[0, :, 0].mean() < 10


def _bad_files(tmp_path, clip_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = tmp_path / "truncated.mp4"
    data = clip_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    return {
        "missing": (tmp_path / "nope.mp4", "not found"),
        "empty": (empty, "empty"),
        "directory": (tmp_path, "directory"),
        "not a video": (text, "cannot open"),
        "truncated": (truncated, ""),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "directory", "not a video", "truncated"])
def test_bad_files_raise_named_error(tmp_path, clip_path, case):
    path, cause = _bad_files(tmp_path, clip_path)[case]
    with pytest.raises(VideoDecodeError) as e:
        read_video(path, 16, 56)
    assert str(path) in str(e.value) and cause in str(e.value)


def test_iter_videos_skips_and_counts(tmp_path, clip_path):
    bad = _bad_files(tmp_path, clip_path)
    records = (
        [{"video": str(clip_path)}]
        + [{"video": str(p)} for p, _ in bad.values()]
        + [{"video": str(clip_path)}]
    )
    report = SkipReport()
    got = list(iter_videos(records, 16, 56, report=report))
    assert len(got) == 2 and report.ok == 2 and report.num_skipped == len(bad)
    assert str(bad["missing"][0]) in report.summary()


# ---- the Qwen2.5-VL profiles: aspect kept, as qwen-vl-utils prepares video (video.resize: qwen) ----------
# Expected sizes worked out by hand from qwen-vl-utils' documented rule (multiples of 28, at most
# 224*224 px, aspect kept: scale by sqrt(h*w / 224^2), round down): e.g. 240x320 -> beta 1.237 ->
# 6 x 9 cells of 28 px.
@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((240, 320), (168, 252)),  # 4:3
        ((480, 640), (168, 252)),  # 4:3, larger: the same budget
        ((360, 640), (168, 280)),  # 16:9
        ((1080, 1920), (168, 280)),
        ((640, 360), (280, 168)),  # portrait
        ((112, 112), (112, 112)),  # inside the budget, already multiples of 28: unchanged
        ((40, 60), (56, 84)),  # rounded to the nearest multiple
    ],
)
def test_smart_resize_follows_qwen_vl_utils_rule(shape, expected):
    from reasonact.video import smart_resize

    h, w = smart_resize(*shape)
    assert (h, w) == expected
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 224 * 224
    assert abs(h / w - shape[0] / shape[1]) < 0.2 * shape[0] / shape[1]  # the aspect ratio survives


def test_smart_resize_rejects_extreme_aspect_ratios():
    from reasonact.video import smart_resize

    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2100)


@pytest.mark.parametrize(
    ("hw", "grid"),
    [((240, 320), (6, 9)), ((180, 320), (6, 10)), ((320, 180), (10, 6))],  # 4:3, 16:9, portrait
)
def test_qwen_resize_keeps_the_whole_frame_and_sets_the_token_count(tiny_model_dir, tmp_path, hw, grid):
    """A 4:3 / 16:9 / portrait clip read with resize=qwen keeps its aspect (nothing cropped: a marker in
    the corner survives) and the processor, with the hub's pixel range, gives 8 x rows x cols tokens."""
    from transformers import AutoProcessor, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from reasonact.data.tiny import CHAT_TEMPLATE
    from reasonact.prompts import encode_videos

    h, w = hw
    frames = np.zeros((16, h, w, 3), np.uint8)
    frames[:, : h // 8, : w // 8] = 255  # top-left corner: centre-cropping would cut it (4:3, 16:9)
    path = write_video(tmp_path / "clip.mp4", frames, fps=8)
    v = read_video(path, 16, 224, resize="qwen")
    assert v.frames.shape == (16, grid[0] * 28, grid[1] * 28, 3)
    assert v.frames[:, :8, :8].mean() > 200
    square = read_video(path, 16, 224, resize="square")
    assert square.frames.shape == (16, 224, 224, 3)
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    hub = {"shortest_edge": 3136, "longest_edge": 12845056}  # Qwen2.5-VL-3B-Instruct's preprocessor
    proc = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(size=hub),
                               video_processor=Qwen2VLVideoProcessor(size=hub, do_sample_frames=False),
                               tokenizer=tok, chat_template=CHAT_TEMPLATE)  # fmt: skip
    inputs = encode_videos(proc, [v])
    assert inputs["video_grid_thw"].tolist() == [[8, grid[0] * 2, grid[1] * 2]]
    n = int((inputs["input_ids"] == tok.convert_tokens_to_ids("<|video_pad|>")).sum())
    assert n == 8 * grid[0] * grid[1]


def test_unknown_resize_is_an_error(clip_path):
    with pytest.raises(ValueError, match="unknown resize"):
        read_video(clip_path, 16, 56, resize="stretch")
