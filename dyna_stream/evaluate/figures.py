"""Figures: the importance map beside its input and the future change (the paper's Fig. 3),
and forecast strips. Written atomically as PNG.

NaN in a data panel means "no coverage" (no measurement) and is drawn in light grey, apart from
every value of the colour scale (the lowest of which is "no echo" on radar)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import write_with  # noqa: E402

NO_COVERAGE = "lightgrey"


def _colours(name: str, bad: str = NO_COVERAGE) -> matplotlib.colors.Colormap:
    """Colour map ``name`` with NaN drawn in ``bad``."""
    return matplotlib.colormaps[name].with_extremes(bad=bad)


def _save(figure: plt.Figure, path: str | Path) -> None:
    write_with(path, lambda tmp: figure.savefig(tmp, dpi=110, bbox_inches="tight"))
    plt.close(figure)


def importance_figure(last_frame: np.ndarray, importance: np.ndarray, change: np.ndarray | None,
                      kept_tiles: np.ndarray | None, path: str | Path, *, units: str, title: str = "") -> None:
    """Input | S | |future change| (| kept tiles), each (H, W).

    last_frame : latest input, physical units.  importance : S ∈ [0, 1].
    change : mean |truth − last frame| over the forecast leads (units), or None when the future
    is unknown.  kept_tiles : {0, 1} data mask at pixel resolution, or None.
    """
    panels = [(last_frame, f"input, last frame [{units}]", _colours("viridis"), None),
              (importance, "importance S", _colours("magma"), (0.0, 1.0))]
    if change is not None:
        panels.append((change, f"|future change| [{units}]", _colours("inferno"), None))
    if kept_tiles is not None:
        panels.append((np.where(kept_tiles > 0, importance, np.nan), "kept tiles (S shown, white: pruned)",
                       _colours("magma", "white"), (0.0, 1.0)))
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 4.2), squeeze=False)
    for axis, (image, label, cmap, limits) in zip(axes[0], panels):
        shown = axis.imshow(image, cmap=cmap, vmin=None if limits is None else limits[0],
                            vmax=None if limits is None else limits[1])
        axis.set_title(label, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.03)
    if title:
        figure.suptitle(title, fontsize=10)
    _save(figure, path)


def frame_label(offset: int, step_minutes: float | None, last_time: np.datetime64 | None) -> str:
    """Title of the frame ``offset`` steps from the last input (≤ 0: inputs, > 0: leads): the time
    from the last input in minutes and, when the last input's time is known, the valid time (UTC)."""
    if step_minutes is None:
        return f"{offset:+d} step{'' if abs(offset) == 1 else 's'}" if offset else "0 steps"
    minutes = offset * step_minutes
    label = f"{minutes:+g} min" if offset else "0 min"
    if last_time is not None and not np.isnat(last_time):
        valid = last_time + np.timedelta64(int(round(minutes * 60)), "s")
        label += f"\n{str(valid.astype('datetime64[m]'))[11:16]} UTC"
    return label


def forecast_strip(inputs: np.ndarray, forecast: np.ndarray, path: str | Path, *, units: str,
                   truth: np.ndarray | None = None, limits: tuple[float, float] | None = None,
                   step_minutes: float | None = None, last_time: np.datetime64 | None = None) -> None:
    """Rows: inputs (T_in, H, W), forecast (T_out, H, W) and optionally truth (T_out, H, W), on one
    colour scale (``limits``, else the data's); frames titled by :func:`frame_label`."""
    rows = [("input", inputs), ("forecast", forecast)] + ([("truth", truth)] if truth is not None else [])
    offsets = {"input": lambda c: c - len(inputs) + 1, "forecast": lambda c: c + 1, "truth": lambda c: c + 1}
    cols = max(len(r[1]) for r in rows)
    low, high = limits or (float(min(np.nanmin(r[1]) for r in rows)), float(max(np.nanmax(r[1]) for r in rows)))
    figure, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 3.0 * len(rows)), squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(cols):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c < len(frames):
                shown = axis.imshow(frames[c], cmap=_colours("viridis"), vmin=low, vmax=high)
                axis.set_title(f"{label} {frame_label(offsets[label](c), step_minutes, last_time)}", fontsize=8)
            else:
                axis.axis("off")
    figure.colorbar(shown, ax=axes, fraction=0.02, pad=0.01, label=units)
    if any(np.isnan(r[1]).any() for r in rows):
        figure.suptitle(f"grey: no coverage (no measurement); {low:g} {units}: lowest value", fontsize=9, y=1.0)
    _save(figure, path)
