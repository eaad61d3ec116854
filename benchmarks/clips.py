"""Clip assembly throughput and memory on a 1-minute and a 10-minute MCAP log.

Writes two synthetic logs (a circle drive, 4 cameras at 30 Hz, 320x576 JPEG, solid-colour
frames so that writing stays fast), then, for each log in a fresh process, reads it with
McapLogSource and runs the ClipAssembler over the whole log: clips/s, messages/s, peak RSS and
peak RSS above the process's baseline before reading (the memory that could grow with the log).
Target: the 10-minute log's peak within 1.3x of the 1-minute log's.

    python -m benchmarks.clips [--work DIR] [--minutes 1 10]

Prints one table and writes DIR/clips.json.
"""

import argparse
import json
import multiprocessing
import os
import time

import numpy as np

CAMERA_HZ = 30


def _render(snapshot, camera) -> np.ndarray:
    image = np.empty((camera.height, camera.width, 3), dtype=np.uint8)
    image[...] = ((snapshot.t_us // 100_000) % 250, len(camera.name) * 5, 128)
    return image


def write_log(path: str, minutes: float) -> None:
    from sim.writers.mcap import write_mcap
    from tests.fakes import analytic_drive

    drive = analytic_drive("circle", seconds=60.0 * minutes, log_name=os.path.basename(path)[:-5])
    write_mcap(drive, path, _render, camera_hz=CAMERA_HZ)


def status_mib(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: Linux keeps that across
    execve, so a spawned child would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def _measure(path: str, queue) -> None:
    from transforms.clips import ClipAssembler
    from transforms.sources.mcap import McapLogSource

    source = McapLogSource(path)
    info = source.info()
    baseline = status_mib("VmRSS")
    assembler = ClipAssembler(info)
    counts = {"clips": 0, "quarantine": 0}
    messages = 0
    started = time.perf_counter()
    for message in source.messages():
        messages += 1
        for table, _ in assembler.push(message):
            counts[table] += 1
    for table, _ in assembler.finish():
        counts[table] += 1
    seconds = time.perf_counter() - started
    peak = status_mib("VmHWM")
    queue.put({"log_s": (info.end_us - info.start_us) / 1e6, "messages": messages, "windows": assembler.windows,
               **counts, "seconds": round(seconds, 2), "clips_per_s": round(counts["clips"] / seconds, 1),
               "messages_per_s": round(messages / seconds), "baseline_rss_mib": round(baseline, 1),
               "peak_rss_mib": round(peak, 1), "peak_above_baseline_mib": round(peak - baseline, 1)})


def measure(path: str) -> dict:
    """Run the assembler over the log in a fresh process (so peaks do not mix)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(path, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/coclabel-bench-clips", help="folder for the logs and clips.json")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0], help="log lengths (default 1 10)")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    os.makedirs(args.work, exist_ok=True)
    results = {}
    for minutes in args.minutes:
        path = os.path.join(args.work, f"circle-{minutes:g}min.mcap")
        if not os.path.exists(path):
            started = time.perf_counter()
            write_log(path, minutes)
            print(f"wrote {path} in {time.perf_counter() - started:.1f} s")
        results[f"{minutes:g}min"] = measure(path)
    first, last = results[f"{args.minutes[0]:g}min"], results[f"{args.minutes[-1]:g}min"]
    summary = {"peak_rss_ratio": round(last["peak_rss_mib"] / first["peak_rss_mib"], 3),
               "peak_above_baseline_ratio": round(last["peak_above_baseline_mib"]
                                                  / max(first["peak_above_baseline_mib"], 1e-9), 3),
               "target_ratio": 1.3}
    table = Table(title="clip assembly (MCAP, 4 cameras at 30 Hz, 320x576 JPEG)")
    columns = ("log_s", "messages", "windows", "clips", "quarantine", "seconds", "clips_per_s", "messages_per_s",
               "baseline_rss_mib", "peak_rss_mib", "peak_above_baseline_mib")
    table.add_column("log")
    for c in columns:
        table.add_column(c, justify="right")
    for name, r in results.items():
        table.add_row(name, *(str(r[c]) for c in columns))
    console = Console(width=180)
    console.print(table)
    console.print(f"peak RSS ratio {summary['peak_rss_ratio']} (above baseline: {summary['peak_above_baseline_ratio']}); "
                  f"target <= {summary['target_ratio']}")
    out = os.path.join(args.work, "clips.json")
    with open(out, "w") as f:
        json.dump({"results": results, "summary": summary}, f, indent=2)
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
