"""What notebooks use to show things: figures as PNG images, clips as GIFs, progress bars that survive
saving, and no stderr noise from bitsandbytes."""

import io
import logging

import numpy as np
import pytest
from matplotlib.figure import Figure

import reasonact  # noqa: F401  (installs the bitsandbytes log filter)
from reasonact import progress
from reasonact.viz import plots


def test_show_displays_a_png_and_saves_it(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1])
    assert plots.show(fig, tmp_path / "f.png") is None  # nothing for the cell to print as a repr
    (image,) = shown
    assert image.format == "png" and image.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "f.png").read_bytes() == image.data


def test_show_closes_a_pyplot_figure(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: None)
    fig, _ = plt.subplots()
    plots.show(fig)
    assert not plt.fignum_exists(fig.number)  # the inline backend would otherwise draw it a second time


def test_animation_is_a_looping_gif_of_the_longest_clip():
    from PIL import Image

    def ramp(t, w):  # t frames whose brightness changes, so the GIF keeps every frame
        return np.full((t, 28, w, 3), 30, np.uint8) * np.arange(t, dtype=np.uint8)[:, None, None, None]

    gif = plots.animation([ramp(5, 28), ramp(8, 56)], labels=["a", "b"], height=28)
    img = Image.open(io.BytesIO(gif))
    assert img.format == "GIF" and img.n_frames == 8 and img.size[0] == 28 + 56 + 6
    with pytest.raises(ValueError):
        plots.animation([np.zeros((4, 28, 28))])


def test_progress_is_quiet_in_batch_and_html_in_a_kernel(monkeypatch, capsys):
    assert list(progress.progress(range(3), enabled=False)) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj.data)

    monkeypatch.setattr(progress, "_in_kernel", lambda: True)
    monkeypatch.setattr(
        "IPython.display.display", lambda obj, display_id=None: shown.append(obj.data) or Handle()
    )
    assert list(progress.progress(range(3), desc="work", unit="items")) == [0, 1, 2]
    assert "<progress" in shown[0] and "work" in shown[0]
    assert (
        "widget" not in "".join(shown) and shown[-1].count("work: 3 items in") == 1
    )  # a plain summary at the end


def test_bitsandbytes_kernel_hub_warning_is_dropped(caplog):
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        log.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "No module named 'kernels'"
        )
        log.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]


def test_show_animation_is_an_html_img_both_renderers_show(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    clip = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.full((4, 28, 28, 3), 60, np.uint8)
    plots.show_animation([clip, clip[::-1]], labels=["sit", "stand"], path=tmp_path / "a.gif")
    (html,) = shown
    assert html.data.startswith("<img alt='sit, stand' src='data:image/gif;base64,")
    assert (tmp_path / "a.gif").read_bytes()[:6] == b"GIF89a"
