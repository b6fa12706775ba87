"""Synthetic actions: a shape moving in a class-specific way over a plain-to-cluttered background.

Used by ``data_prep/synthetic_kinetics.py`` (a Kinetics-format dataset for demos) and the tests.
Each video is a pure function of its class and a seed. A class is a kind of motion (along an
axis, around a circle, in size, blinking, none), seen only across frames: one frame shows where
the shape is, not how it moves. Every motion runs forwards or backwards in time at random, so
the classes do not hinge on the frames' order (time-reversed classes, such as left against right,
take a tiny model far longer to learn than the minutes the demo gives it). Shape, colour, size,
speed and path vary within a class, and the background ranges from a plain colour to static
clutter of distractor shapes. The actor is light (200 to 255 in every channel) over a background
that is mostly darker (a base of 0 to 110, distractors of 0 to 150, but a gradient of up to 120
either way that can make a corner lighter).
"""

from __future__ import annotations

import numpy as np

# Sorted, as Kinetics class indices are.
SYNTHETIC_CLASSES = (
    "blinking",
    "changing size",
    "circling",
    "moving horizontally",
    "moving vertically",
    "standing still",
)
SHAPES = ("disk", "square", "diamond")
# the background's levels of clutter, by index: what each adds to a plain colour (_background)
CLUTTER_NAMES = ("plain", "gradient", "gradient, noise", "noise, shapes")
CLUTTER_LEVELS = len(CLUTTER_NAMES)


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float):
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    if shape == "disk":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return np.maximum(dy, dx) <= r
    return dy + dx <= r * 1.3  # diamond


def _background(rng: np.random.Generator, height: int, width: int, clutter: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 110, 3)
    image = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if clutter >= 1:
        direction = rng.uniform(-1, 1, 2)
        ramp = (direction[0] * yy / height + direction[1] * xx / width)[..., None]
        image = image + ramp * rng.uniform(-60, 60, 3)
    if clutter >= 2:
        image = image + rng.normal(0, 12 * clutter, (height, width, 3))
    if clutter >= 3:
        for _ in range(rng.integers(4, 9)):
            mask = _shape_mask(
                str(rng.choice(SHAPES)),
                yy,
                xx,
                rng.uniform(0, height),
                rng.uniform(0, width),
                rng.uniform(0.05, 0.12) * min(height, width),
            )
            image[mask] = rng.uniform(0, 150, 3)
    return image


def _trajectory(
    action: str, rng: np.random.Generator, t: np.ndarray, height: int, width: int, r0: float
):
    """Centre (cy, cx), radius and visibility per frame for ``action``; t runs from 0 to 1."""
    if rng.random() < 0.5:  # backwards in time
        t = 1 - t
    shown = np.ones_like(t, dtype=bool)
    side = min(height, width)
    if action.startswith("moving"):
        horizontal = action == "moving horizontally"
        axis_len, other_len = (width, height) if horizontal else (height, width)
        travel = rng.uniform(0.45, 0.65) * axis_len
        along = rng.uniform(r0, axis_len - r0 - travel) + travel * t
        across = np.full_like(t, rng.uniform(r0, other_len - r0))
        cy, cx = (across, along) if horizontal else (along, across)
        return cy, cx, np.full_like(t, r0), shown
    if action == "circling":
        radius = rng.uniform(0.2, 0.3) * side
        cy0 = rng.uniform(radius + r0, height - radius - r0)
        cx0 = rng.uniform(radius + r0, width - radius - r0)
        angle = rng.uniform(0, 2 * np.pi) + rng.uniform(1.2, 2.0) * np.pi * t
        return cy0 + radius * np.sin(angle), cx0 + radius * np.cos(angle), np.full_like(t, r0), shown
    small, large = 0.6 * r0, rng.uniform(1.8, 2.4) * r0
    cy = np.full_like(t, rng.uniform(large, height - large))
    cx = np.full_like(t, rng.uniform(large, width - large))
    if action == "changing size":
        return cy, cx, small + (large - small) * t, shown
    if action == "blinking":  # on and off 2.5 to 3.5 times over the video
        shown = np.sin(2 * np.pi * (rng.uniform(2.5, 3.5) * t + rng.uniform(0, 1))) > 0
    return cy, cx, np.full_like(t, r0), shown  # standing still, or blinking in place


def render_action(
    class_index: int,
    *,
    seed: int | list[int],
    num_frames: int = 48,
    height: int = 96,
    width: int = 128,
    clutter: int | None = None,
) -> np.ndarray:
    """Renders one video of class ``SYNTHETIC_CLASSES[class_index]``.

    Args:
        class_index: index into ``SYNTHETIC_CLASSES``.
        seed: seeds every random choice (numpy ``default_rng`` seed).
        num_frames, height, width: video size.
        clutter: background level 0..3; drawn from the seed if None.

    Returns:
        uint8 RGB frames (T, H, W, 3).
    """
    rng = np.random.default_rng(seed)
    if clutter is None:
        clutter = int(rng.integers(CLUTTER_LEVELS))
    background = _background(rng, height, width, clutter)
    r0 = rng.uniform(0.08, 0.13) * min(height, width)
    t = np.linspace(0, 1, num_frames)
    cy, cx, radius, shown = _trajectory(SYNTHETIC_CLASSES[class_index], rng, t, height, width, r0)
    shape = str(rng.choice(SHAPES))
    # Light, above most of the background (base 0-110, distractors 0-150; only a strong gradient's
    # corner reaches it), so the actor stands out.
    colour = rng.uniform(200, 255, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frame = background.copy()
        if shown[i]:
            frame[_shape_mask(shape, yy, xx, cy[i], cx[i], radius[i])] = colour
        frames[i] = np.clip(frame, 0, 255)
    return frames
