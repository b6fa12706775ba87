"""Pictures of what ATS keeps, and the plots of its results.

Arrays in, arrays out: frames are uint8 numpy arrays (H, W, 3), RGB; kept-token masks are bool
arrays (T, h, w) on a frame's patch grid, as :attr:`ats_video.KeptTokens.mask` gives them for
one sample. Text is drawn with Pillow. The plots (kept-token histogram, accuracy against
GFLOPs, accuracy and kept tokens per background level) are matplotlib figures; matplotlib is imported inside the functions that draw them, so
``import ats_video`` never needs it.

- :func:`kept_token_grid`: one clip, a row per ATS block under a row of the input frames, a
  column per frame; each tile is the frame with the patches its block dropped dimmed (exactly
  the patches where the mask is False). An image is a clip of one frame: one column.
- :func:`kept_token_animation` / :func:`save_animation`: the frames with the kept tokens of
  one block outlined, as a GIF or an MP4.
- :func:`kept_tokens_histogram`: per ATS block, the distribution of kept tokens per clip.
- :func:`budget_sweep_figure`: top-1 against GFLOPs over ATS budgets (the paper's Fig. 5).
- :func:`clutter_figure`: top-1 and kept tokens per background level of the synthetic set.
- :func:`method_comparison_figure`: top-1 and clips/s against GFLOPs, a curve per token
  reduction method (tools/compare_methods.py).
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ats_video.tokens import KeptTokens

if TYPE_CHECKING:  # matplotlib is imported only where a figure is drawn
    from matplotlib.figure import Figure

DIM = 0.3  # a dropped patch keeps this fraction of its brightness
OUTLINE = (255, 214, 0)  # the kept tokens' outline in animations: yellow
BACKGROUND = 255
TEXT = (25, 25, 25)
FONT_SIZE = 13
GAP = 6  # pixels between tiles and around labels
MODE_TEXT = {
    "frame": "ATS per frame: each frame keeps its own set of tokens",
    "shared": "ATS shared: one set of positions for the whole clip",
}
ROW_MODE = {"frame": "per frame", "shared": "shared set"}


# ---------------------------------------------------------------- frames and masks


def view_frames(view: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised model input back to pictures.

    Args:
        view: a clip (C, T, H, W) or an image (C, H, W), normalised with ``mean`` and ``std``.
    Returns:
        uint8 (T, H, W, 3); an image gives T = 1.
    """
    if view.dim() == 3:
        view = view[:, None]
    mean_ = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    std_ = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    pixels = (view.float().cpu() * std_ + mean_).clamp(0, 1).mul(255).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).numpy()


def view_masks(kept: Sequence[KeptTokens], view: int) -> List[Tuple[int, np.ndarray]]:
    """(block, kept mask (T, h, w) bool) of sample ``view`` for each ATS block's record."""
    return [(record.block, record.mask[view].cpu().numpy()) for record in kept]


def patch_pixels(kept: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """A patch mask (h, w) as a pixel mask (H, W): with p = H // h and q = W // w (the patch
    size), patch (i, j) covers rows i*p to (i+1)*p - 1 and columns j*q to (j+1)*q - 1; pixels
    beyond the last whole patch (a crop not a multiple of the patch size) belong to no token and
    count as kept, since nothing was dropped there."""
    h, w = kept.shape
    height, width = size
    ph, pw = height // h, width // w
    pixels = np.ones((height, width), dtype=bool)
    pixels[: h * ph, : w * pw] = kept.repeat(ph, axis=0).repeat(pw, axis=1)
    return pixels


def dim_dropped(frame: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with the patches where ``kept`` (h, w) is False dimmed to
    ``DIM`` of their brightness (``floor(pixel * DIM)``)."""
    pixels = patch_pixels(kept, frame.shape[:2])
    dimmed = (frame * DIM).astype(np.uint8)
    return np.where(pixels[..., None], frame, dimmed)


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer ``scale``, so patch edges stay exact."""
    return image.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else image


def default_scale(size: Tuple[int, int], min_tile: int = 96) -> int:
    """The smallest integer scale that makes a frame of ``size`` (H, W) at least ``min_tile``
    pixels on its long side."""
    return max(1, math.ceil(min_tile / max(size)))


def frame_columns(num_frames: int, max_columns: int = 16) -> List[int]:
    """The frames a grid shows: all of them, or ``max_columns`` spread evenly (first and last
    included) when there are more."""
    if num_frames <= max_columns:
        return list(range(num_frames))
    return sorted({round(i * (num_frames - 1) / (max_columns - 1)) for i in range(max_columns)})


# ---------------------------------------------------------------- text


def font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (a bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=size)


def text_width(text: str, typeface: ImageFont.ImageFont) -> int:
    return math.ceil(typeface.getlength(text))


def fit_text(text: str, width: int, typeface: ImageFont.ImageFont) -> str:
    """``text``, shortened in the middle with "..." until it fits ``width`` pixels."""
    if text_width(text, typeface) <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        short = text[: keep - keep // 2] + "..." + text[len(text) - keep // 2 :]
        if text_width(short, typeface) <= width:
            return short
    return "..."


# ---------------------------------------------------------------- the kept-token grid


@dataclass(frozen=True)
class GridGeometry:
    """Where things are in a :func:`kept_token_grid` picture, in pixels.

    width, height: the picture. tile: (height, width) of a tile (a frame, upscaled).
    label_width: the column of row labels on the left. title_height: the title lines.
    line: the height of one line of text (column headers, captions under tiles).
    Row 0 holds the input frames, row r > 0 the r-th ATS block; column c the c-th frame shown.
    """

    width: int
    height: int
    tile: Tuple[int, int]
    label_width: int
    title_height: int
    line: int

    @property
    def row_step(self) -> int:
        return self.tile[0] + self.line + GAP  # a tile, its caption, a gap

    @property
    def col_step(self) -> int:
        return self.tile[1] + GAP

    def tile_origin(self, row: int, col: int) -> Tuple[int, int]:
        """(top, left) of the tile at ``row``, ``col``."""
        top = self.title_height + self.line + row * self.row_step
        return top, self.label_width + col * self.col_step


def grid_geometry(
    *,
    rows: int,
    cols: int,
    tile: Tuple[int, int],
    row_labels: Sequence[str],
    title_lines: Sequence[str],
    typeface: ImageFont.ImageFont,
    max_title_width: int = 900,
) -> GridGeometry:
    """The layout of a grid of ``rows`` x ``cols`` tiles of ``tile`` (H, W) pixels, with
    ``row_labels`` (lines joined by newlines) on the left and ``title_lines`` on top; the
    picture is widened for the title up to ``max_title_width``."""
    line = FONT_SIZE + 5
    label_width = 2 * GAP + max(
        text_width(part, typeface) for label in row_labels for part in label.split("\n")
    )
    grid_width = label_width + cols * (tile[1] + GAP)
    title_width = 2 * GAP + max((text_width(t, typeface) for t in title_lines), default=0)
    width = max(grid_width, min(title_width, max_title_width))
    title_height = GAP + len(title_lines) * line + GAP
    height = title_height + line + rows * (tile[0] + line + GAP)
    return GridGeometry(width, height, tile, label_width, title_height, line)


def kept_token_grid(
    frames: np.ndarray,
    kept: Sequence[Tuple[int, np.ndarray]],
    *,
    mode: str = "frame",
    title: Sequence[str] = (),
    columns: Optional[Sequence[int]] = None,
    scale: Optional[int] = None,
) -> np.ndarray:
    """The kept-token picture of one clip.

    Args:
        frames: uint8 (T, H, W, 3), the clip as the model saw it (:func:`view_frames`).
        kept: (block index, kept mask (T, h, w) bool) per ATS block, in block order
            (:func:`view_masks`); empty for a model without ATS (only the input row).
        mode: the ATS mode, "frame" or "shared", named in each block's row label and in the
            title (for clips: an image has one frame).
        title: lines of text on top (video, prediction, model, budget); each is shortened in
            the middle where it does not fit.
        columns: the frames to show (default :func:`frame_columns`: all, or 16 spread evenly).
        scale: integer enlargement of the frames (default :func:`default_scale`: tiles of at
            least 96 px).
    Returns:
        uint8 (height, width, 3), laid out as :func:`grid_geometry` says: row 0 the input
        frames under "frame t" headers, then one row per ATS block labelled "block i" and the
        mode, each tile the frame with the patches dropped by that block dimmed
        (:func:`dim_dropped`), captioned "kept k/n" (k of the frame's n patch tokens). A clip
        of one frame (an image) has one column headed "image".
    """
    if mode not in ROW_MODE:
        raise ValueError(f"mode must be one of {sorted(ROW_MODE)}, got {mode!r}")
    num_frames, height, width, _ = frames.shape
    for block, mask in kept:
        if mask.shape[0] != num_frames:
            raise ValueError(f"block {block}: a mask of {mask.shape[0]} frames for {num_frames}")
    columns = list(frame_columns(num_frames) if columns is None else columns)
    scale = scale or default_scale((height, width))
    typeface = font()
    # the mode is named only for clips: an image has no frames to share positions between
    suffix = f"\n{ROW_MODE[mode]}" if num_frames > 1 else ""
    row_labels = ["input"] + [f"block {block}{suffix}" for block, _ in kept]
    title_lines = list(title)
    if kept and num_frames > 1:
        title_lines.append(MODE_TEXT[mode])
    geometry = grid_geometry(
        rows=len(row_labels),
        cols=len(columns),
        tile=(height * scale, width * scale),
        row_labels=row_labels,
        title_lines=title_lines,
        typeface=typeface,
    )
    canvas = np.full((geometry.height, geometry.width, 3), BACKGROUND, dtype=np.uint8)
    captions = []  # (x, y, text, width available)
    for row, (label, mask) in enumerate(zip(row_labels, [None, *(m for _, m in kept)])):
        for col, t in enumerate(columns):
            tile = frames[t] if mask is None else dim_dropped(frames[t], mask[t])
            top, left = geometry.tile_origin(row, col)
            canvas[top : top + geometry.tile[0], left : left + geometry.tile[1]] = upscale(
                tile, scale
            )
            if mask is not None:
                text = f"kept {int(mask[t].sum())}/{mask[t].size}"
                captions.append((left, top + geometry.tile[0] + 1, text, geometry.tile[1]))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(title_lines):
        text = fit_text(line, geometry.width - 2 * GAP, typeface)
        draw.text((GAP, GAP + i * geometry.line), text, fill=TEXT, font=typeface)
    for col, t in enumerate(columns):
        top, left = geometry.tile_origin(0, col)
        header = "image" if num_frames == 1 else f"frame {t}"
        draw.text((left, top - geometry.line), fit_text(header, geometry.tile[1], typeface),
                  fill=TEXT, font=typeface)  # fmt: skip
    for row, label in enumerate(row_labels):
        top, _ = geometry.tile_origin(row, 0)
        draw.multiline_text((GAP, top), label, fill=TEXT, font=typeface, spacing=3)
    for left, top, text, room in captions:
        draw.text((left, top), fit_text(text, room, typeface), fill=TEXT, font=typeface)
    return np.asarray(image)


# ---------------------------------------------------------------- animation


def outline_kept(
    frame: np.ndarray, kept: np.ndarray, color: Tuple[int, int, int] = OUTLINE, width: int = 2
) -> np.ndarray:
    """``frame`` (H, W, 3) with the outline of the kept patches (``kept`` (h, w)) drawn in
    ``color``: ``width`` pixels inside the edge of every region of kept patches (the frame's
    border counts as an edge)."""
    pixels = patch_pixels(kept, frame.shape[:2]) & _covered(kept, frame.shape[:2])
    inner = pixels.copy()
    padded = np.pad(pixels, width, constant_values=False)
    height, breadth = pixels.shape
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            inner &= padded[width + dy : width + dy + height, width + dx : width + dx + breadth]
    out = frame.copy()
    out[pixels & ~inner] = color
    return out


def _covered(kept: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Pixels that belong to a patch (all but the remainder beyond the last whole patch)."""
    return ~patch_pixels(np.zeros_like(kept), size)


def kept_token_animation(
    frames: np.ndarray,
    mask: np.ndarray,
    *,
    block: int,
    scale: Optional[int] = None,
) -> List[np.ndarray]:
    """The frames (T, H, W, 3) with the kept tokens of one ATS block (``mask`` (T, h, w))
    outlined, each enlarged by ``scale`` (default: to at least 224 px on the long side) under a
    caption line "frame t, block b: k/n kept"; a list of T uint8 arrays of one even size (as
    H.264 needs)."""
    scale = scale or default_scale(frames.shape[1:3], min_tile=224)
    typeface = font()
    line = FONT_SIZE + 2 * GAP
    out = []
    for t, (frame, kept) in enumerate(zip(frames, mask)):
        big = outline_kept(upscale(frame, scale), kept, width=max(1, scale // 2 + 1))
        height, width = big.shape[:2]
        canvas = np.zeros((line + height + (line + height) % 2, width + width % 2, 3), np.uint8)
        canvas[line : line + height, :width] = big
        image = Image.fromarray(canvas)
        caption = f"frame {t}, block {block}: {int(kept.sum())}/{kept.size} kept"
        ImageDraw.Draw(image).text(
            (GAP, GAP // 2), fit_text(caption, width - GAP, typeface), fill=(255, 255, 255),
            font=typeface,
        )  # fmt: skip
        out.append(np.asarray(image))
    return out


def save_animation(path: str, images: Sequence[np.ndarray], fps: float = 4) -> None:
    """Writes ``images`` (uint8 (H, W, 3), one size) as an animated GIF (``.gif``, looping) or
    an H.264 MP4 (``.mp4``, :func:`ats_video.data.video_io.write_video`)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".gif":
        first, *rest = (Image.fromarray(image) for image in images)
        first.save(path, save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)
    elif suffix == ".mp4":
        from ats_video.data.video_io import write_video

        write_video(path, images, fps=fps)
    else:
        raise ValueError(f"{path}: an animation is written as .gif or .mp4, not {suffix!r}")


def save_png(path: str, image: np.ndarray) -> None:
    """Writes a uint8 (H, W, 3) picture as a PNG."""
    Image.fromarray(image).save(path, format="PNG", optimize=True)


# ---------------------------------------------------------------- plots


def kept_tokens_histogram(
    per_clip: Mapping[int, np.ndarray], *, tokens_per_clip: int, title: str
) -> "Figure":
    """Per ATS block, the distribution of kept patch tokens per clip (a test view).

    Args:
        per_clip: ATS block -> kept tokens of each clip (1-D ints), as
            ``ats_video.engine.evaluate.Evaluation.kept_per_view`` holds them.
        tokens_per_clip: patch tokens of a clip before any ATS block (named on the x axis,
            which spans the kept counts only, so that their spread shows).
        title: the model, budget and views (the first line of the figure's title).
    Returns:
        a matplotlib Figure, one panel per block, sharing the x axis.
    """
    from matplotlib.figure import Figure

    blocks = sorted(per_clip)
    if not blocks:
        raise ValueError("no ATS blocks: nothing to draw")
    fig = Figure(figsize=(7, 1.2 + 1.7 * len(blocks)), layout="constrained")
    axes = fig.subplots(len(blocks), 1, sharex=True, squeeze=False)[:, 0]
    lowest = min(int(np.min(per_clip[b])) for b in blocks)
    highest = max(int(np.max(per_clip[b])) for b in blocks)
    bins = _integer_bins(lowest, highest)
    for ax, block in zip(axes, blocks):
        counts = np.asarray(per_clip[block])
        ax.hist(counts, bins=bins, color="tab:blue", edgecolor="white", linewidth=0.5)
        mean = float(counts.mean())
        ax.axvline(mean, color="tab:red", linewidth=1.5, label=f"mean {mean:.1f}")
        ax.set_ylabel("clips")
        ax.set_title(f"block {block}", loc="left", fontsize=10)
        ax.legend(loc="upper left", fontsize=9, frameon=False)
    axes[-1].set_xlabel(f"kept patch tokens per clip (of {tokens_per_clip})")
    views = len(per_clip[blocks[0]])
    fig.suptitle(f"{title}\nkept tokens per clip over {views} test views", fontsize=11)
    return fig


def _integer_bins(lowest: int, highest: int, max_bins: int = 60) -> np.ndarray:
    """Bin edges on half-integers from ``lowest`` to ``highest``, a bin per value, or per run of
    values where there would be more than ``max_bins``."""
    step = max(1, math.ceil((highest - lowest + 1) / max_bins))
    return np.arange(lowest, highest + step + 1, step) - 0.5


@dataclass(frozen=True)
class SweepPoint:
    """One test of a budget sweep: its label ("no ATS", "K=6", ...), GFLOPs per view as run,
    top-1 in percent, its ``kind`` ("none": no ATS; "k": a fixed K, the default included;
    "ratio": a ratio of the tokens entering each block), and whether it is the config's own
    budget."""

    label: str
    gflops: float
    top1: float
    kind: str
    configured: bool = False


# kind -> how its points are drawn: format, colour, legend entry
_SERIES = {
    "k": ("o-", "tab:blue", "ATS, fixed K"),
    "ratio": ("D-", "tab:orange", "ATS, ratio of the tokens entering a block"),
    "none": ("s", "dimgrey", "no ATS"),
}


def budget_sweep_figure(points: Sequence[SweepPoint], *, title: str) -> "Figure":
    """Top-1 against GFLOPs per view, one point per budget (the paper's Fig. 5).

    Fixed-K budgets are blue dots and ratios orange diamonds, each series joined in order of
    GFLOPs; the model without ATS is a grey square, and the config's own budget is ringed in red
    (named in the legend). Every point carries its label, placed where it overlaps no other
    label or point (:func:`place_labels`); budgets that ran alike share a point and a label.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unknown = sorted({p.kind for p in points} - set(_SERIES))
    if unknown:
        raise ValueError(f"unknown kinds of budget {unknown}; expected {sorted(_SERIES)}")
    fig = Figure(figsize=(7.5, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for kind, (style, color, name) in _SERIES.items():
        series = sorted((p for p in points if p.kind == kind), key=lambda p: p.gflops)
        if series:
            ax.plot([p.gflops for p in series], [p.top1 for p in series], style, color=color,
                    markersize=8 if kind == "none" else 6, label=name, zorder=3)  # fmt: skip
    for p in points:
        if p.configured:
            ax.plot(p.gflops, p.top1, "o", markersize=16, markerfacecolor="none", zorder=4,
                    markeredgecolor="tab:red", markeredgewidth=2,
                    label=f"the config's budget ({p.label})")  # fmt: skip
    _pad_limits(ax, [p.gflops for p in points], [p.top1 for p in points])
    ax.set_xlabel("GFLOPs per view (as run)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    labels: dict = {}
    for p in points:
        labels.setdefault((p.gflops, p.top1), []).append(p)
    place_labels(ax, [
        (x, y, ", ".join(p.label for p in same), RING_RADIUS if any(p.configured for p in same)
         else MARKER_RADIUS)
        for (x, y), same in labels.items()
    ])  # fmt: skip
    return fig


def _pad_limits(ax, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Room around the points for their labels: 15% of the range on each side (or a fixed
    margin where every point has the same value)."""
    for values, setter, floor in ((xs, ax.set_xlim, 0.01), (ys, ax.set_ylim, 1.0)):
        low, high = min(values), max(values)
        margin = max((high - low) * 0.15, floor, abs(high) * 0.02)
        setter(low - margin, high + margin)


# where a label may go, tried in this order: (dx, dy) in typographic points from its point, and
# the text's alignment there; near places first, then farther ones with a leader line
_PLACES = [(7, 6, "left"), (0, 9, "center"), (7, -15, "left"), (0, -19, "center"),
           (-7, 6, "right"), (-7, -15, "right"), (11, 11, "left"), (11, -20, "left"),
           (-11, 11, "right"), (-11, -20, "right"), (9, 22, "left"), (9, -31, "left"),
           (-9, 22, "right"), (-9, -31, "right"), (20, 36, "left"), (20, -44, "left"),
           (-20, 36, "right"), (-20, -44, "right")]  # fmt: skip
MARKER_RADIUS, RING_RADIUS = 5, 9  # points: room kept free around a dot, and around a ring


def place_labels(ax, points: Sequence[Tuple[float, float, str, float]]) -> list:
    """Writes each (x, y, label, radius) next to its point, at the first of a few places where
    the text stays inside the axes and overlaps neither an earlier label, nor any point's marker
    (a square of ``radius`` points around it), nor the legend; far offsets get a leader line.
    Returns the text artists.

    The figure's layout is done first and then frozen, so that what is checked here is what
    is saved (a layout engine would move the axes again when the figure is saved)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    fig.set_layout_engine("none")
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    taken = [legend.get_window_extent(renderer)] if legend else []
    markers = []
    for x, y, _, radius in points:
        (cx, cy), r = ax.transData.transform((x, y)), radius * fig.dpi / 72
        markers.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    texts = []
    for x, y, label, _ in points:
        for place in _PLACES:
            text = _annotate(ax, x, y, label, place, renderer)
            box = Text.get_window_extent(text, renderer)  # the text, not its leader line
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in taken + markers):
                break
            text.remove()
        else:  # nowhere free: the first place, overlapping rather than missing
            text = _annotate(ax, x, y, label, _PLACES[0], renderer)
        taken.append(Text.get_window_extent(text, renderer))
        texts.append(text)
    return texts


def _annotate(ax, x: float, y: float, label: str, place: Tuple[float, float, str], renderer):
    """``label`` at ``place`` (dx, dy in points, alignment) from the data point (x, y), a
    leader line when far, placed (an annotation finds its place only when drawn, or when asked
    to as here)."""
    dx, dy, align = place
    far = abs(dy) > 21
    text = ax.annotate(
        label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=9, ha=align,
        va="bottom",
        arrowprops=dict(arrowstyle="-", color="grey", lw=0.6, shrinkA=0, shrinkB=4) if far else None,
    )  # fmt: skip
    text.update_positions(renderer)
    return text


def clutter_figure(
    levels: Sequence[str], series: Mapping[str, Tuple[Sequence[float], Optional[Sequence[float]]]],
    *, tokens: int, title: str,
) -> "Figure":
    """Two panels over the background levels ``levels`` (x axis): top-1 (%) and mean kept tokens
    per clip. ``series`` maps a budget's label to its top-1 and kept tokens per level (None
    without ATS, drawn in the top-1 panel only); ``tokens`` is a clip's patch tokens, the top of
    the kept-tokens axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    accuracy, kept = fig.subplots(1, 2)
    x = np.arange(len(levels))
    for (label, (top1, tokens_kept)), marker in zip(series.items(), itertools.cycle("soD^v")):
        accuracy.plot(x, top1, marker + "-", label=label)
        if tokens_kept is not None:
            kept.plot(x, tokens_kept, marker + "-", label=label, color=accuracy.lines[-1].get_color())
    accuracy.set_ylabel("top-1 accuracy (%)")
    accuracy.set_ylim(0, 100)
    kept.set_ylabel(f"mean kept tokens per clip (of {tokens})")
    kept.set_ylim(0, tokens)
    for ax in (accuracy, kept):
        ax.set_xticks(x, levels)
        ax.set_xlabel("background")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig


@dataclass(frozen=True)
class MethodPoint:
    """One tested setting of a token reduction method: the ``method`` ("ATS (sampling)",
    "ToMe", ..., or "no reduction"), its ``setting`` ("K=6", "r=2"), GFLOPs per view as run,
    top-1 in percent and clips forwarded per second."""

    method: str
    setting: str
    gflops: float
    top1: float
    clips_per_s: float


_METHOD_STYLES = ("o-", "D-", "^-", "v-", "P-", "X-")


def method_comparison_figure(points: Sequence[MethodPoint], *, title: str) -> "Figure":
    """Top-1 (left) and clips/s (right) against GFLOPs per view, a curve per method joined in
    order of GFLOPs; "no reduction" is a grey square in both. Settings that ran alike share a
    point; on the left every point carries its setting."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    accuracy, speed = fig.subplots(1, 2)
    methods = list(dict.fromkeys(p.method for p in points if p.method != "no reduction"))
    unique = list({(p.method, p.setting): p for p in points}.values())
    for ax, value, name in ((accuracy, "top1", "top-1 accuracy (%)"), (speed, "clips_per_s", "clips/s")):
        for method, style in zip(methods, itertools.cycle(_METHOD_STYLES)):
            series = sorted((p for p in unique if p.method == method), key=lambda p: p.gflops)
            ax.plot([p.gflops for p in series], [getattr(p, value) for p in series], style, label=method,
                    markersize=6, zorder=3)  # fmt: skip
        for p in unique:
            if p.method == "no reduction":
                ax.plot(p.gflops, getattr(p, value), "s", color="dimgrey", markersize=8, label=p.method, zorder=3)
        _pad_limits(ax, [p.gflops for p in unique], [getattr(p, value) for p in unique])
        low, high = min(p.gflops for p in unique), max(p.gflops for p in unique)
        margin = max(0.15 * (high - low), 0.02 * high)  # _pad_limits' floor is for larger models
        ax.set_xlim(low - margin, high + margin)
        ax.set_xlabel("GFLOPs per view (as run)")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    fig.suptitle(title, fontsize=11)
    labels: dict = {}
    for p in unique:
        labels.setdefault((p.gflops, p.top1), []).append(p.setting)
    place_labels(accuracy, [(x, y, ", ".join(s), MARKER_RADIUS) for (x, y), s in labels.items() if s != ["-"]])
    return fig
