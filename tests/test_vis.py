"""ats_video.vis on its own: dimmed patches pixel by pixel, the grid's layout, outlines,
animations, and the two plots (histogram, accuracy against GFLOPs) with legible labels."""

import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

import ats_video  # noqa: F401  (before timm)
from ats_video import vis
from ats_video.data.transforms import normalize, to_float_cthw


def random_frames(t, h, w, seed=0):
    """uint8 (T, H, W, 3), never darker than 40 so that dimming always shows."""
    return np.random.default_rng(seed).integers(40, 256, (t, h, w, 3), dtype=np.uint8)


def check_tile(tile, frame, kept, scale):
    """Every patch of ``tile`` (the frame enlarged ``scale`` times) is the frame's own pixels
    where ``kept`` is True and floor(0.3 * pixel) where it is False, checked patch by patch."""
    h, w = kept.shape
    ph, pw = frame.shape[0] // h, frame.shape[1] // w
    for i in range(h):
        for j in range(w):
            source = frame[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw]
            want = source if kept[i, j] else (source * 0.3).astype(np.uint8)
            want = want.repeat(scale, 0).repeat(scale, 1)
            got = tile[i * ph * scale : (i + 1) * ph * scale, j * pw * scale : (j + 1) * pw * scale]
            assert np.array_equal(got, want), (i, j, bool(kept[i, j]))


def test_dropped_patches_are_dimmed_exactly():
    frame = random_frames(1, 24, 32)[0]
    kept = np.array([[1, 0, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]], dtype=bool)  # 3 x 4, asymmetric
    out = vis.dim_dropped(frame, kept)
    check_tile(out, frame, kept, 1)
    assert not np.array_equal(out[:8, 8:16], frame[:8, 8:16])  # a dropped patch changed


def test_a_remainder_beyond_the_last_patch_is_left_as_is():
    frame = random_frames(1, 26, 34)[0]  # 3 x 4 patches of 8 px and 2 px to spare each way
    out = vis.dim_dropped(frame, np.zeros((3, 4), dtype=bool))
    assert np.array_equal(out[24:], frame[24:]) and np.array_equal(out[:, 32:], frame[:, 32:])
    assert np.array_equal(out[:24, :32], (frame[:24, :32] * 0.3).astype(np.uint8))


def test_grid_tiles_show_the_frames_and_each_blocks_mask():
    frames = random_frames(3, 16, 24, seed=1)  # 3 frames of 2 x 3 patches of 8 px
    rng = np.random.default_rng(2)
    kept = [(3, rng.random((3, 2, 3)) < 0.5), (5, rng.random((3, 2, 3)) < 0.3)]
    picture = vis.kept_token_grid(frames, kept, title=["a clip"], scale=4)
    geometry = vis.grid_geometry(
        rows=3, cols=3, tile=(64, 96), row_labels=["input", "block 3\nper frame",
        "block 5\nper frame"], title_lines=["a clip", vis.MODE_TEXT["frame"]],
        typeface=vis.font(),
    )  # fmt: skip
    assert picture.shape == (geometry.height, geometry.width, 3)
    all_kept = np.ones((2, 3), dtype=bool)
    for row, masks in enumerate([None, kept[0][1], kept[1][1]]):
        for col in range(3):
            top, left = geometry.tile_origin(row, col)
            tile = picture[top : top + 64, left : left + 96]
            check_tile(tile, frames[col], all_kept if masks is None else masks[col], 4)
    # nothing but background right of the last column and below the last row's captions
    _, left = geometry.tile_origin(0, 2)
    assert (picture[geometry.title_height :, left + 96 :] == vis.BACKGROUND).all()
    top, _ = geometry.tile_origin(2, 0)
    assert (picture[top + 64 + geometry.line :] == vis.BACKGROUND).all()


def test_an_image_is_one_column():
    image = random_frames(1, 16, 16, seed=3)
    kept = [(3, np.array([[[True, False], [False, True]]]))]
    picture = vis.kept_token_grid(image, kept, scale=6)
    geometry = vis.grid_geometry(
        rows=2, cols=1, tile=(96, 96), row_labels=["input", "block 3"], title_lines=[],
        typeface=vis.font(),
    )  # fmt: skip
    assert picture.shape == (geometry.height, geometry.width, 3)
    top, left = geometry.tile_origin(1, 0)
    check_tile(picture[top : top + 96, left : left + 96], image[0], kept[0][1][0], 6)
    assert (picture[geometry.title_height :, left + 96 :] == vis.BACKGROUND).all()


def test_a_mask_of_other_frames_is_refused():
    with pytest.raises(ValueError, match="block 4: a mask of 2 frames for 3"):
        vis.kept_token_grid(random_frames(3, 8, 8), [(4, np.ones((2, 1, 1), dtype=bool))])
    with pytest.raises(ValueError, match="mode must be one of"):
        vis.kept_token_grid(random_frames(1, 8, 8), [], mode="clip")


def test_long_clips_show_sixteen_frames_spread_evenly():
    assert vis.frame_columns(8) == list(range(8))
    columns = vis.frame_columns(96)
    assert len(columns) == 16 and columns[0] == 0 and columns[-1] == 95
    assert all(b - a in (6, 7) for a, b in zip(columns, columns[1:]))


def test_view_frames_undo_the_normalisation():
    frames = torch.from_numpy(random_frames(2, 8, 8, seed=4))
    mean, std = (0.45, 0.4, 0.5), (0.225, 0.2, 0.25)
    view = normalize(to_float_cthw(frames), mean, std)  # (C, T, H, W) as a dataset gives it
    assert np.array_equal(vis.view_frames(view, mean, std), frames.numpy())
    assert vis.view_frames(view[:, 0], mean, std).shape == (1, 8, 8, 3)  # an image


def test_titles_that_do_not_fit_are_shortened_in_the_middle():
    typeface = vis.font()
    text = "a/very/long/path/to/some/video_file_name_000010_000020.mp4"
    short = vis.fit_text(text, 150, typeface)
    assert vis.text_width(short, typeface) <= 150 < vis.text_width(text, typeface)
    assert short.startswith("a/very") and short.endswith(".mp4") and "..." in short


def test_outline_is_drawn_inside_the_edge_of_the_kept_regions():
    frame = np.full((16, 24, 3), 100, dtype=np.uint8)  # 2 x 3 patches of 8 px
    kept = np.array([[True, True, False], [False, False, True]])
    out = vis.outline_kept(frame, kept, width=1)
    yellow = (out == vis.OUTLINE).all(-1)
    # the region of the first two patches: its 1-px border, not its inside
    assert yellow[0, :16].all() and yellow[7, :16].all() and yellow[:8, 0].all() and yellow[:8, 15].all()
    assert not yellow[1:7, 1:15].any()  # inside, and where the two patches meet: no line
    assert yellow[8:, 16:].sum() == 28 and not yellow[8:, :16].any() and not yellow[:8, 16:].any()


@pytest.mark.parametrize("suffix", ["gif", "mp4"])
def test_animations_hold_every_frame(tmp_path, suffix):
    frames = random_frames(5, 16, 16, seed=5)
    mask = np.random.default_rng(6).random((5, 2, 2)) < 0.5
    images = vis.kept_token_animation(frames, mask, block=4)
    assert len(images) == 5 and images[0].shape[0] % 2 == 0 and images[0].shape[1] % 2 == 0
    assert images[0].shape[1] >= 224  # enlarged for the caption
    path = str(tmp_path / f"a.{suffix}")
    vis.save_animation(path, images, fps=5)
    if suffix == "gif":
        with Image.open(path) as gif:
            assert gif.n_frames == 5 and gif.size == images[0].shape[1::-1]
    else:
        with av.open(path) as video:
            assert sum(1 for _ in video.decode(video=0)) == 5
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        vis.save_animation(str(tmp_path / "a.png"), images)


def test_histogram_has_a_panel_per_block_counting_every_clip():
    per_clip = {3: np.array([40, 41, 41, 47, 48, 48, 48]), 5: np.array([30, 30, 31, 44, 47, 45, 46])}
    figure = vis.kept_tokens_histogram(per_clip, tokens_per_clip=64, title="tiny, ATS K=6")
    axes = figure.get_axes()
    assert [ax.get_title(loc="left") for ax in axes] == ["block 3", "block 5"]
    for ax, block in zip(axes, (3, 5)):
        heights = [patch.get_height() for patch in ax.patches]
        assert sum(heights) == 7 and max(heights) == (3 if block == 3 else 2)
        assert ax.get_legend().get_texts()[0].get_text() == f"mean {per_clip[block].mean():.1f}"
    assert axes[-1].get_xlabel() == "kept patch tokens per clip (of 64)"
    assert figure.get_suptitle().startswith("tiny, ATS K=6\n")


def sweep_points():
    return [
        vis.SweepPoint("no ATS", 4.6, 79.8, "none"),
        vis.SweepPoint("default K=196", 3.0, 79.7, "k", configured=True),
        *[vis.SweepPoint(f"K={k}", 1.5 + k / 100, 70 + k / 20, "k") for k in (150, 120, 100, 80)],
        vis.SweepPoint("K=98", 2.5, 76.0, "k"),
        vis.SweepPoint("ratio 0.5", 2.5, 76.0, "ratio"),  # ran like K=98: one point
        *[vis.SweepPoint(f"ratio {r}", 1 + r * 3, 72 + r * 8, "ratio") for r in (0.9, 0.7, 0.3)],
    ]


def test_sweep_plot_labels_every_point_without_overlaps():
    figure = vis.budget_sweep_figure(sweep_points(), title="deit_small, 1 crop")
    ax = figure.get_axes()[0]
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    labels = [t for t in ax.texts]
    assert sorted(t.get_text() for t in labels) == sorted(
        ["no ATS", "default K=196", "K=150", "K=120", "K=100", "K=80", "K=98, ratio 0.5",
         "ratio 0.9", "ratio 0.7", "ratio 0.3"]
    )  # fmt: skip
    boxes = [t.get_window_extent(renderer) for t in labels]
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), labels[i]
        assert not box.overlaps(legend), labels[i].get_text()
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other), labels[i].get_text()
    assert ax.get_xlabel() == "GFLOPs per view (as run)" and ax.get_ylabel() == "top-1 accuracy (%)"
    legend_texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "the config's budget (default K=196)" in legend_texts


def test_sweep_plot_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown kinds of budget"):
        vis.budget_sweep_figure([vis.SweepPoint("x", 1.0, 1.0, "topk")], title="t")


def test_clutter_plot_draws_each_budget_per_level_with_tick_labels_apart():
    levels = ["0\nplain", "1\ngradient", "2\ngradient, noise", "3\nnoise, shapes"]
    figure = vis.clutter_figure(levels, {
        "no ATS": ([83.3, 86.7, 90.0, 83.3], None),
        "K=6": ([70.0, 75.0, 76.7, 66.7], [19.7, 17.0, 18.5, 17.0]),
    }, tokens=128, title="tiny")  # fmt: skip
    accuracy, kept = figure.get_axes()
    assert [line.get_label() for line in accuracy.lines] == ["no ATS", "K=6"]
    assert [line.get_label() for line in kept.lines] == ["K=6"]  # no kept tokens without ATS
    assert list(kept.lines[0].get_ydata()) == [19.7, 17.0, 18.5, 17.0]
    assert kept.get_ylim() == (0, 128) and kept.get_ylabel() == "mean kept tokens per clip (of 128)"
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    for ax in (accuracy, kept):
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        assert [t.get_text() for t in ax.get_xticklabels()] == levels
        assert all(b.x0 - a.x1 >= 10 for a, b in zip(ticks, ticks[1:]))  # 10 px apart at least


def test_matplotlib_is_imported_only_to_draw_a_plot():
    code = (
        "import sys, ats_video, ats_video.vis, ats_video.inference, ats_video.engine.evaluate\n"
        "assert 'matplotlib' not in sys.modules, 'imported'\n"
        "ats_video.vis.kept_tokens_histogram({3: [1, 2]}, tokens_per_clip=4, title='t')\n"
        "assert 'matplotlib' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
