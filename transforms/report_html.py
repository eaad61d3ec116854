"""The self-contained HTML page of the quality report: every picture is inlined (base64), every
text from the data is escaped."""

import base64
import html
import io

import numpy as np
import pandas as pd

from schemas.contract import NUM_FRAMES, TEACHER_CAMERAS

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d1d1f;max-width:1280px}
h1{margin-bottom:0}.sub{color:#666;margin-top:4px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px}
th{background:#f3f3f3;text-align:left}.ok{color:#137333}.fail{color:#b00020;font-weight:600}
.warn{color:#b06000}.grid{display:flex;flex-wrap:wrap;gap:12px}
.clip{border:1px solid #ddd;border-radius:6px;padding:10px;margin:10px 0}
.clip img{max-width:100%}.row{display:flex;gap:12px;align-items:flex-start;flex-wrap:wrap}
ol.reasoning li{margin:2px 0;font-size:13px}.mono{font-family:ui-monospace,monospace;font-size:12px}
"""

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def png(fig) -> str:
    """A matplotlib figure as an <img> with a base64 PNG."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def jpeg_img(data: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data).decode()}">'


def distributions(frames: dict[str, pd.DataFrame]) -> str:
    """Histograms per vehicle (speed, acceleration, curvature, reasoning length), the meta-action
    mix, and counts per day and vehicle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = frames["samples"]
    parts = []
    if not samples.empty:
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
        for ax, (column, title) in zip(axes, [("speed_mps", "speed at t0 (m/s)"),
                                             ("max_abs_accel", "max |accel| (m/s²)"),
                                             ("max_abs_curvature", "max |curvature| (1/m)"),
                                             ("reasoning_chars", "reasoning length (chars)")]):
            for k, (vehicle, group) in enumerate(samples.groupby("vehicle_id")):
                values = group[column].dropna()
                if len(values):
                    ax.hist(values, bins=20, alpha=0.55, label=str(vehicle), color=_COLORS[k % len(_COLORS)])
            ax.set_title(title, fontsize=10)
        axes[0].legend(fontsize=8, title="vehicle")
        parts.append(png(fig))
        mix = samples.groupby(["meta_longitudinal", "meta_lateral"]).size().sort_values(ascending=False)
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(mix) + 1))
        ax.barh([f"{a} / {b}" for a, b in mix.index], mix.values, color="#1f77b4")
        ax.invert_yaxis()
        ax.set_title("meta-action mix of the teacher's samples", fontsize=10)
        parts.append(png(fig))
    counts = []
    for table in ("clips", "labels", "quarantine"):
        frame = frames[table]
        if not frame.empty:
            counts.append(frame.groupby(["date", "vehicle_id"]).size().rename(table))
    if counts:
        table = pd.concat(counts, axis=1).fillna(0).astype(int).reset_index()
        parts.append(frame_table(table))
    return "\n".join(parts)


def frame_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def camera_grid(images: list[bytes]) -> bytes:
    """The t0 frame of each of the 4 cameras in a 2x2 JPEG grid (camera order of the teacher)."""
    from PIL import Image

    frames = [Image.open(io.BytesIO(images[c * NUM_FRAMES + NUM_FRAMES - 1])).convert("RGB")
              for c in range(len(TEACHER_CAMERAS))]
    w, h = 288, 160
    grid = Image.new("RGB", (2 * w, 2 * h))
    for i, frame in enumerate(frames):
        grid.paste(frame.resize((w, h)), ((i % 2) * w, (i // 2) * h))
    buf = io.BytesIO()
    grid.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def birds_eye(history: np.ndarray, future: np.ndarray | None, samples: list[np.ndarray]) -> str:
    """The K predicted trajectories against the ground-truth future, t0 ego frame (x forward)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 4.2))
    ax.plot(-history[:, 1], history[:, 0], color="#555", lw=2, label="history")
    for k, traj in enumerate(samples):
        ax.plot(-traj[:, 1], traj[:, 0], color=_COLORS[k % len(_COLORS)], lw=1.2, label=f"sample {k}")
    if future is not None and np.isfinite(future).any():
        ax.plot(-future[:, 1], future[:, 0], "k--", lw=2, label="ground truth")
    ax.scatter([0], [0], marker="^", color="k", zorder=5)
    ax.set_xlabel("left  ← y (m) →  right", fontsize=8)
    ax.set_ylabel("x forward (m)", fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=6, loc="upper left")
    ax.grid(alpha=0.3)
    return png(fig)


def clip_card(clip: dict, label: dict) -> str:
    """Camera grid, bird's-eye plot and the K reasoning texts of one clip."""
    history = np.asarray(clip["ego_history_xyz"], dtype=np.float64)
    future_rows = clip["ego_future_xyz"]
    future = np.asarray([r if r is not None else [np.nan] * 3 for r in future_rows], dtype=np.float64)
    samples = [np.asarray(s["traj_xyz"], dtype=np.float64) for s in label["samples"]]
    texts = "".join(
        f"<li><b>{esc(s['meta_action']['longitudinal'] if s.get('meta_action') else '')}"
        f" / {esc(s['meta_action']['lateral'] if s.get('meta_action') else '')}</b>: {esc(s['reasoning'])}</li>"
        for s in label["samples"])
    ade = label.get("min_ade_m")
    spread = (label.get("checks") or {}).get("sample_spread_m")
    return (
        f'<div class="clip"><div class="mono">clip {esc(clip["clip_id"])} · vehicle {esc(clip["vehicle_id"])}'
        f' · log {esc(clip["log_id"])} · t0 {esc(clip["t0_us"])} µs · minADE '
        f'{"n/a" if ade is None else f"{ade:.2f} m"} · spread {"n/a" if spread is None else f"{spread:.2f} m"}</div>'
        f'<div class="row">{jpeg_img(camera_grid(clip["images"]), "cameras at t0")}'
        f'{birds_eye(history, future, samples)}<ol class="reasoning" start="0">{texts}</ol></div></div>'
    )


def page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{esc(name)}</h2>\n{content}" for name, content in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{body}</body></html>")
