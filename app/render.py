"""Pictures made of numbers: blur kernels, the effective PSF and feature maps.

Uses matplotlib's object API (no pyplot): each figure is private to its request, so concurrent
users cannot draw into each other's plots.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from smfd import degrade


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # a renderer from the start, so that tight_layout can measure the text
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def op_label(op: degrade.BlurOp) -> str:
    return f"Gaussian {op.size}" if op.kind == "gaussian" else f"motion {op.size} {op.direction}"


def kernels_picture(recipe: degrade.Recipe) -> np.ndarray:
    """Every kernel of every layer, in order, then the effective PSF of them all."""
    ops = [(f"layer {i + 1}\n{op_label(op)}", degrade.kernel_of(op))
           for i, layer in enumerate(recipe.layers) for op in layer]
    psf = "effective PSF (all layers)" if ops else "no blur: the PSF is one point"
    panels = ops + [(psf, degrade.effective_psf(recipe))]
    fig = new_figure(2.2 * len(panels), 3.0)
    for k, (title, kernel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(kernel, cmap="magma", interpolation="nearest", vmin=0)
        ax.set_anchor("N")  # square panels hug the top; their labels get the room below
        # labels below the kernels: the app draws its own caption over the picture's top edge
        ax.set_xlabel(f"{title}\n{kernel.shape[1]}x{kernel.shape[0]} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return figure_to_array(fig)


def normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x, np.float32) if hi - lo < 1e-12 else ((x - lo) / (hi - lo)).astype(np.float32)


def heatmap(x: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """A 2-D array as an RGB uint8 picture (min-max scaled)."""
    return (colormaps[cmap](normalise(x))[..., :3] * 255).astype(np.uint8)


def enlarge(image: np.ndarray, min_side: int = 128) -> np.ndarray:
    """Nearest-neighbour upscaling so that small feature maps stay visible as blocks."""
    factor = max(1, -(-min_side // min(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, 0), factor, 1)
