"""Figures: image grids, schedule curves and noising strips, with matplotlib.

Functions return the matplotlib ``Figure`` so notebooks can ``plt.show()`` it and the CLI can save it.
"""

import matplotlib.pyplot as plt
import numpy as np

from diffusion_keras import data, forward

__all__ = ["image_grid", "show_grid", "save_grid", "plot_schedules", "plot_noising"]


def image_grid(images, ncols=None, padding=2):
    """Tile images into one uint8 array ``(rows * h, cols * w)``, white gutters between tiles.

    Args:
        images: (n, h, w[, 1]) float in [-1, 1] or uint8 in 0..255.
        ncols: tiles per row; defaults to ceil(sqrt(n)).
        padding: gutter width in pixels.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = data.to_uint8(images)
    if images.ndim == 4:
        images = images[..., 0]
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"images must have shape (n, h, w[, 1]) with n >= 1; received {images.shape}.")
    count, height, width = images.shape
    ncols = int(ncols or np.ceil(np.sqrt(count)))
    nrows = int(np.ceil(count / ncols))
    grid = np.full(
        (nrows * (height + padding) - padding, ncols * (width + padding) - padding), 255, np.uint8
    )
    for index, image in enumerate(images):
        row, col = divmod(index, ncols)
        top, left = row * (height + padding), col * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def show_grid(images, ncols=None, title=None, size=6.0):
    """Return a figure with ``images`` tiled in a grid (digits white on black, as in MNIST)."""
    grid = image_grid(images, ncols)
    figure, axis = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1]))
    axis.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axis.set_axis_off()
    if title:
        axis.set_title(title)
    return figure


def save_grid(images, path, ncols=None, scale=3):
    """Write the grid of ``images`` as a PNG at ``path`` (each pixel ``scale`` x ``scale``)."""
    from PIL import Image

    grid = image_grid(images, ncols)
    Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST
    ).save(path)
    return path


def plot_schedules(schedule_list, quantity="log_snr", axis=None):
    """Plot one per-timestep quantity (e.g. ``"log_snr"``, ``"alpha_bar"``) for several schedules.

    The x-axis is the fraction t / T so that schedules with different T share one plot.
    """
    if axis is None:
        _, axis = plt.subplots(figsize=(6, 4))
    for schedule in schedule_list:
        values = schedule.numpy(quantity)
        axis.plot(np.arange(1, schedule.T + 1) / schedule.T, values, label=f"{schedule.name} (T={schedule.T})")
    axis.set_xlabel("t / T")
    axis.set_ylabel(quantity)
    axis.grid(alpha=0.3)
    axis.legend()
    return axis.figure


def plot_noising(x_0, schedule_list, fractions=(0.0, 0.1, 0.25, 0.5, 0.75, 1.0), seed=0):
    """A figure with one row per schedule: ``x_0`` noised at several fractions of T (closed form)."""
    import keras

    x_0 = np.asarray(x_0, dtype=np.float32)[None]  # (1, 32, 32, 1)
    figure, axes = plt.subplots(
        len(schedule_list), len(fractions), figsize=(1.6 * len(fractions), 1.7 * len(schedule_list)),
        squeeze=False,
    )
    noise = keras.random.normal(x_0.shape, seed=seed)
    for row, schedule in enumerate(schedule_list):
        for col, fraction in enumerate(fractions):
            # paper step fraction * T (at least 1), as a 0-based index
            t = np.array([max(int(round(fraction * schedule.T)), 1) - 1])
            x_t = np.asarray(forward.q_sample(x_0, t, noise, schedule))
            axis = axes[row, col]
            axis.imshow(x_t[0, ..., 0], cmap="gray", vmin=-1.5, vmax=1.5)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"t = {fraction:g} T")
            if col == 0:
                axis.set_ylabel(schedule.name)
    figure.tight_layout()
    return figure
