"""Camera renderer speed on a simulated drive: render + JPEG encode per 320x576 frame.

Simulates one minute of one vehicle by day and by night (sim.fleet.simulate_drive), renders the
4 teacher cameras at 10 Hz with sim.render.Renderer and encodes each frame as the MCAP writer
does (sim.dataset.jpeg_bytes). CPU time per frame (process time, so other load on the machine
counts less) and wall-time percentiles. Target: <= 10 ms per frame to render, and the default
fleet (2 vehicles x 1 min x 4 cameras x 10 Hz = 4800 frames) rendered and encoded in < 2 min.

    python -m benchmarks.render_speed [--seed 1] [--seconds 60] [--out render_speed.json]

Prints one table and writes the JSON file.
"""

import argparse
import json
import time

import numpy as np

FLEET_FRAMES = 2 * 60 * 4 * 10


def measure(seed: int, seconds: float, night: bool) -> dict:
    from schemas.contract import STEP_US, TEACHER_CAMERAS
    from sim.cameras import RIG
    from sim.dataset import jpeg_bytes
    from sim.fleet import simulate_drive
    from sim.render import Renderer

    drive = simulate_drive("bench-000", seed=seed, duration_s=seconds, start_us=0, night=night)
    renderer = Renderer(drive.static_map)
    render_cpu, encode_cpu, render_wall = [], [], []
    for t_us in range(drive.start_us, drive.end_us, STEP_US):
        snapshot = drive.snapshot(t_us)
        for name in TEACHER_CAMERAS:
            c0, w0 = time.process_time(), time.perf_counter()
            image = renderer.render(snapshot, RIG[name])
            c1, w1 = time.process_time(), time.perf_counter()
            jpeg_bytes(image)
            render_cpu.append(c1 - c0)
            encode_cpu.append(time.process_time() - c1)
            render_wall.append(w1 - w0)
    wall = np.array(render_wall) * 1e3
    per_frame = (np.mean(render_cpu) + np.mean(encode_cpu)) * 1e3
    return {
        "lighting": "night" if night else "day", "frames": len(render_cpu),
        "ground_polygons": len(drive.static_map.ground), "boxes": len(drive.static_map.boxes),
        "render_cpu_ms": round(float(np.mean(render_cpu)) * 1e3, 3),
        "encode_cpu_ms": round(float(np.mean(encode_cpu)) * 1e3, 3),
        "render_wall_p50_ms": round(float(np.percentile(wall, 50)), 3),
        "render_wall_p95_ms": round(float(np.percentile(wall, 95)), 3),
        "fleet_render_encode_s": round(FLEET_FRAMES * per_frame / 1e3, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="drive seed (default 1)")
    parser.add_argument("--seconds", type=float, default=60.0, help="drive length in seconds (default 60)")
    parser.add_argument("--out", default="render_speed.json", help="JSON result file (default render_speed.json)")
    args = parser.parse_args(argv)
    rows = [measure(args.seed, args.seconds, night) for night in (False, True)]
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "fleet_frames": FLEET_FRAMES}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
