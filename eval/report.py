"""What ``smfd eval`` writes: CSV files, a Markdown table, a plotly chart and a grid of samples."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from smfd.images import read_image, resize_to, write_atomically, write_png

from .pairs import Pair

# Standard errors of the means over the faces (SD / sqrt(n)), beside the figures methods are compared on.
WITH_SE = ("psnr", "ssim", "id_dist")
COLUMNS = ("method", "n", "psnr", "ssim", "mse", "niqe", "lpips", "fid", "id_dist", "same_person", "lmd",
           *(f"{k}_se" for k in WITH_SE), "status")
PER_IMAGE = ("psnr", "ssim", "mse", "niqe", "lpips", "id_dist", "lmd")
DIGITS = {"psnr": 2, "ssim": 4, "mse": 2, "niqe": 3, "lpips": 4, "fid": 2, "id_dist": 4, "same_person": 3,
          "lmd": 2}
BETTER = {"psnr": "higher", "ssim": "higher", "mse": "lower", "niqe": "lower", "lpips": "lower",
          "fid": "lower", "id_dist": "lower", "same_person": "higher", "lmd": "lower"}
METRIC_NOTES = {
    "psnr": "PSNR in dB on RGB uint8, no border crop (SPEC section 2)",
    "ssim": "SSIM on RGB: Gaussian window sigma 1.5, K1 0.01, K2 0.03, mean over channels",
    "mse": "mean squared error on the 0..255 scale",
    "niqe": "NIQE on luma Y (BT.601), 96x96 blocks, pristine model of the MATLAB release (basicsr's copy)",
    "lpips": "LPIPS v0.1, AlexNet",
    "fid": "FID between the restored and the sharp sets (pytorch-fid Inception pool3); "
           "unreliable on fewer than a few thousand images",
    "id_dist": "identity: distance of dlib's 128-d face descriptors of output and target (face box found "
               "once on the target); below 0.6 dlib calls them the same person",
    "same_person": "share of images whose identity distance is below dlib's 0.6 same-person threshold",
    "lmd": "landmark distance: mean pixel distance of dlib's 68 landmarks of output and target",
}


def fmt(name: str, value) -> str:
    if value is None:
        return ""
    digits = DIGITS.get(name, DIGITS.get(name.removesuffix("_se")))
    if digits is not None:
        return f"{value:.{digits}f}"
    return str(value)


def write_csv(path: Path, columns, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([fmt(c, row.get(c)) for c in columns])

    write_atomically(path, write, ".csv")


def markdown_grid(header, rows) -> str:
    """A markdown table of cells that are text already."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def markdown_table(rows: list[dict], columns) -> str:
    """Result rows (dicts) as a markdown table of ``columns``, numbers at their DIGITS."""
    return markdown_grid(columns, [[fmt(c, r.get(c)) or "n/a" for c in columns] for r in rows])


def write_markdown(path: Path, rows: list[dict], pairs: list[Pair], unavailable: dict,
                   weights: dict[str, str]) -> None:
    """``weights``: method -> which weights it ran (the external networks' file; SMFD's folder and engine)."""
    from baselines import PROTOCOL, info

    shown = [{**r, "method": info(r["method"]).title,
              "status": "ok" if r["status"] == "ok" else "see notes"} for r in rows]
    columns = ("method", "n", *DIGITS, "status")
    lines = [f"# Evaluation on {len(pairs)} pairs\n",
             f"Protocol: {PROTOCOL}; every output scored at 256x256 against the sharp face (pairs of another "
             f"size resized: area averaging down, bicubic up). Arrows: " + ", ".join(f"{k} {v}" for k, v in BETTER.items()) + ".\n",
             markdown_table(shown, columns), "\n## Methods\n"]
    for r in rows:
        m = info(r["method"])
        lines.append(f"- **{m.title}** (`{m.name}`): licence {m.licence}; commercial use "
                     f"{'yes' if m.commercial_use else 'no'}; {m.notes or '-'}."
                     + (f" Weights: {weights[r['method']]}." if weights.get(r["method"]) else "")
                     + ("" if r["status"] == "ok" else f" Status: {r['status']}."))
    lines.append("\n## Metrics\n")
    few = (f" -- here over {len(pairs)} images, below the 2048 features: biased upwards, compare it only "
           "between rows over the same faces" if len(pairs) < 2048 and "fid" not in unavailable else "")
    lines += [f"- `{k}`: {v}" + (few if k == "fid" else "")
              + (f" -- **not available here**: {unavailable[k]}." if k in unavailable else "")
              for k, v in METRIC_NOTES.items()]
    lines.append(f"- Standard errors of the means (SD / sqrt(n) over the images; the chart's error bars) are in "
                 f"results.csv: {', '.join(f'`{k}_se`' for k in WITH_SE)}. Differences between rows smaller than "
                 "about twice them may be chance.")
    write_atomically(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"), ".md")


def write_chart(path: Path, rows: list[dict], title: str) -> None:
    """One bar chart per metric that has numbers; plotly.js is written beside it (works offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [k for k in DIGITS if any(r.get(k) is not None for r in rows)]
    if not names:
        names = ["psnr"]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"{k} ({BETTER[k]} is better)" for k in names])
    for i, k in enumerate(names, 1):
        have = [r for r in rows if r.get(k) is not None]
        spread = [r.get(f"{k}_se") or 0 for r in have] if k in WITH_SE else None
        fig.add_trace(go.Bar(x=[r["method"] for r in have], y=[r[k] for r in have], name=k, showlegend=False,
                             error_y=None if spread is None else {"type": "data", "array": spread}), row=1, col=i)
    fig.update_layout(title=title, height=460, width=max(700, 330 * len(names)))
    # plotly.min.js goes beside the temporary file, the same folder
    write_atomically(path, lambda tmp: fig.write_html(tmp, include_plotlyjs="directory"), ".html")


TILE = 256
# The results ``write_all`` writes (beside them plotly.min.js, the chart's copy of plotly).
RESULT_FILES = ("results.csv", "per_image.csv", "results.md", "chart.html", "grid.png")


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    img = Image.fromarray(resize_to(tile, (TILE, TILE)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, 14], fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(img)


def write_grid(path: Path, out: Path, pairs: list[Pair], methods: list[str], rows: int) -> None:
    """Rows of samples: blurry input, each method's output, sharp target."""
    lines = []
    for pair in pairs[:rows]:
        blurry, sharp = read_image(pair.blurry), read_image(pair.sharp)
        tiles = [_label(blurry, "input")]
        for name in methods:
            f = out / "outputs" / name / f"{pair.id}.png"  # absent when the method failed on this face
            tiles.append(_label(read_image(f), name) if f.is_file()
                         else _label(np.zeros((TILE, TILE, 3), np.uint8), f"{name}: n/a"))
        tiles.append(_label(sharp, "target"))
        lines.append(np.concatenate(tiles, 1))
    write_png(path, np.concatenate(lines, 0))


def write_all(out: Path, rows: list[dict], per_image: list[dict], pairs: list[Pair], loaded: dict,
              unavailable: dict, grid_rows: int) -> None:
    write_csv(out / "results.csv", COLUMNS, rows)
    write_csv(out / "per_image.csv", ("method", "id", *PER_IMAGE), per_image)
    write_markdown(out / "results.md", rows, pairs, unavailable,
                   {n: m.weights for n, m in loaded.items() if not isinstance(m, str)})
    write_chart(out / "chart.html", rows, f"{len(pairs)} evaluation pairs")
    write_grid(out / "grid.png", out, pairs, [n for n in loaded if not isinstance(loaded[n], str)], grid_rows)
