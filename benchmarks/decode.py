"""Decoding throughput of the PhysicalAI-AV mp4 reader against the ffmpeg command line, and the
share of labelling time spent decoding.

Both decoders run on the same H.264 files of one PAI clip (the teacher's 4 cameras) and the same
cores (this process and its ffmpeg children are pinned to the first --cores CPUs):
- reader: `PaiClipSource(root, clip, TEACHER_CAMERAS).messages()`, every frame decoded from the
  zip members and converted to RGB, the egomotion stream beside them (what the label pipeline gets);
- ffmpeg: `ffmpeg -threads 1 -i FILE -f null -` on each camera's mp4, extracted from its zip,
  CPU time from its `-benchmark` line (the decode loop, without process start-up);
- PyAV decode only and decode + rgb24 on the extracted files, to show where a gap comes from.
Frames/s per core = frames / CPU seconds (best of --repeats), so a busy machine shifts it little;
wall-clock frames/s are shown beside it. Target: reader >= 0.8x ffmpeg.

Decoding share: the reader decodes every frame of the 4 cameras in order, so a log of W clip
windows costs (its frames) / W decoded frames per window (about 4 cameras x 10 Hz x 0.5 s stride
= 20, of which the teacher uses 16). That many frames at the reader's rate, against the label
pipeline's time per window (`_manifest.json`: timings_s.pipeline / counts.windows) of a
`coclabel label` run on the same fleet (or --manifest of an earlier one), and, for a run made
here, against its CPU seconds per window.

    python -m benchmarks.decode --json out/bench/decode.json
    python -m benchmarks.decode --fleet /tmp/fleet-pai --manifest /tmp/ds/_manifest.json --cores 1

Needs the ffmpeg command (Debian/Ubuntu: `apt-get install ffmpeg`).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TARGET_RATIO = 0.8
CLIP_SECONDS = 20  # one full PAI clip per vehicle
BENCH_LINE = re.compile(r"bench: utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s")
FRAME_LINE = re.compile(r"frame=\s*(\d+)")


def synth_fleet(out: Path, resolution: str) -> None:
    """One vehicle driving one 20 s PAI clip."""
    from pipelines.cli import main

    if main(["synth", "--out", str(out), "--format", "pai", "--vehicles", "1", "--resolution", resolution,
             "--minutes", str(CLIP_SECONDS / 60), "--workers", "1"]) != 0:
        raise SystemExit(f"synth into {out} failed")


def read_member(root: Path, camera: str, alias: str, clip_id: str) -> bytes:
    """One zip member of a local PAI dataset (`alias`: "video" or "frame_timestamps")."""
    import pandas as pd

    from transforms.sources.pai import check_member_name

    row = pd.read_csv(root / "features.csv", index_col="feature").loc[camera]
    chunk = int(pd.read_parquet(root / "clip_index.parquet").at[clip_id, "chunk"])
    archive = root / check_member_name(row["chunk_path"].format(chunk_id=chunk))
    member = check_member_name(json.loads(row["clip_files_in_zip"])[alias].format(clip_id=clip_id))
    with zipfile.ZipFile(archive) as z:
        return z.read(member)


def extract_videos(root: Path, clip_id: str, cameras, into: Path) -> list[Path]:
    """Each camera's mp4 of `clip_id`, copied out of its zip (ffmpeg reads plain files)."""
    paths = [into / f"{camera}.mp4" for camera in cameras]
    for camera, path in zip(cameras, paths):
        path.write_bytes(read_member(root, camera, "video", clip_id))
    return paths


def timed(fn, repeats: int) -> dict:
    """Best CPU and wall seconds of `fn()` (which returns its frame count) over `repeats` runs."""
    cpu, wall, frames = [], [], set()
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        frames.add(fn())
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    (n,) = frames
    return rates(n, min(cpu), min(wall), statistics.median(cpu))


def rates(frames: int, cpu_s: float, wall_s: float, median_cpu_s: float) -> dict:
    return {"frames": frames, "cpu_s": round(cpu_s, 4), "median_cpu_s": round(median_cpu_s, 4),
            "wall_s": round(wall_s, 4), "fps_per_core": round(frames / cpu_s, 1), "wall_fps": round(frames / wall_s, 1)}


def reader_frames(root: Path, clip_id: str, cameras) -> int:
    from transforms.sources.base import CameraFrame
    from transforms.sources.pai import PaiClipSource

    return sum(isinstance(m, CameraFrame) for m in PaiClipSource(str(root), clip_id, cameras).messages())


def pyav_frames(videos: list[Path], fmt: str | None) -> int:
    """Frames of `videos` decoded with PyAV in one thread, converted to `fmt` (one swscale thread)
    unless None."""
    import av
    from av.video.reformatter import VideoReformatter

    n = 0
    for path in videos:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"
            convert = VideoReformatter()
            for frame in container.decode(stream):
                if fmt:
                    convert.reformat(frame, format=fmt, threads=1).to_ndarray()
                n += 1
    return n


def ffmpeg_command(path: Path) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-nostats", "-benchmark", "-threads", "1", "-i", str(path), "-f", "null", "-"]


def ffmpeg_run(videos: list[Path]) -> tuple[int, float, float]:
    """(frames, CPU s, wall s) of ffmpeg decoding each video to null, from its -benchmark lines."""
    frames, cpu, wall = 0, 0.0, 0.0
    for path in videos:
        done = subprocess.run(ffmpeg_command(path), capture_output=True, text=True, check=True)
        utime, stime, rtime = map(float, BENCH_LINE.search(done.stderr).groups())
        frames += int(FRAME_LINE.findall(done.stderr)[-1])
        cpu, wall = cpu + utime + stime, wall + rtime
    return frames, cpu, wall


def ffmpeg_timed(videos: list[Path], repeats: int) -> dict:
    runs = [ffmpeg_run(videos) for _ in range(repeats)]
    (frames,) = {r[0] for r in runs}
    return rates(frames, min(r[1] for r in runs), min(r[2] for r in runs), statistics.median(r[1] for r in runs))


def label_manifest(fleet: Path, out: Path) -> tuple[dict, float]:
    """The manifest of `coclabel label` (default options, local runner, in this process) on
    `fleet`, and the CPU seconds the run took."""
    from pipelines.cli import main

    started = time.process_time()
    if main(["label", "--logs", str(fleet), "--out", str(out), "--quiet"]) != 0:
        raise SystemExit(f"coclabel label on {fleet} failed")
    return json.loads((out / "_manifest.json").read_text()), time.process_time() - started


def decoding_share(reader: dict, frames_in_fleet: int, manifest: dict, label_cpu_s: float | None) -> dict:
    """Decoding time per clip window against the label pipeline's: wall (the manifest's) and, when
    the run was made here, CPU (which a busy machine inflates less)."""
    windows = manifest["counts"]["windows"]
    per_window_s = manifest["timings_s"]["pipeline"] / windows
    frames_per_window = frames_in_fleet / windows
    decode_s = frames_per_window / reader["fps_per_core"]
    share = {"windows": windows, "pipeline_s": manifest["timings_s"]["pipeline"],
             "pipeline_s_per_window": round(per_window_s, 4), "frames_per_window": round(frames_per_window, 2),
             "frames_used_per_window": 16, "decode_cpu_s_per_window": round(decode_s, 5),
             "decode_share_of_wall": round(decode_s / per_window_s, 4)}
    if label_cpu_s is not None:
        share.update(label_cpu_s_per_window=round(label_cpu_s / windows, 4),
                     decode_share_of_cpu=round(decode_s * windows / label_cpu_s, 4))
    return share


def fleet_frames(root: Path, cameras) -> int:
    """Frames of `cameras` in every clip of the fleet (rows of their frame-timestamps members)."""
    import io

    import pyarrow.parquet as pq

    from transforms.sources.pai import list_pai_clips

    return sum(pq.read_metadata(io.BytesIO(read_member(root, camera, "frame_timestamps", clip))).num_rows
               for clip in list_pai_clips(str(root)) for camera in cameras)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleet", help="a PAI fleet (coclabel synth --format pai); default: synthesise one 20 s clip")
    parser.add_argument("--resolution", default="320x576",
                        help="HEIGHTxWIDTH of the synthesised fleet (default 320x576, the teacher's input; "
                             "the PAI dataset records 1080x1920)")
    parser.add_argument("--manifest", help="_manifest.json of a `coclabel label` run on --fleet "
                                           "(default: run the label pipeline here)")
    parser.add_argument("--cores", type=int, default=1, help="CPUs both decoders are pinned to (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each decoder; the best counts (default 5)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("error: the ffmpeg command is missing; install it (Debian/Ubuntu: apt-get install ffmpeg)",
              file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    from schemas.contract import TEACHER_CAMERAS
    from transforms.sources.pai import list_pai_clips

    console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="coclabel-bench-decode-") as work:
        work = Path(work)
        fleet = Path(args.fleet) if args.fleet else work / "fleet"
        if not args.fleet:
            synth_fleet(fleet, args.resolution)
        clip_id = list_pai_clips(str(fleet))[0]
        videos = extract_videos(fleet, clip_id, TEACHER_CAMERAS, work)
        resolution = video_resolution(videos[0])

        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[: args.cores])  # inherited by the ffmpeg children
        try:
            results = {
                "reader": timed(lambda: reader_frames(fleet, clip_id, TEACHER_CAMERAS), args.repeats),
                "ffmpeg": ffmpeg_timed(videos, args.repeats),
                "pyav_decode": timed(lambda: pyav_frames(videos, None), args.repeats),
                "pyav_decode_rgb24": timed(lambda: pyav_frames(videos, "rgb24"), args.repeats),
            }
        finally:
            os.sched_setaffinity(0, cpus)
        ratio = results["reader"]["fps_per_core"] / results["ffmpeg"]["fps_per_core"]
        if args.manifest:
            manifest, label_cpu_s = json.loads(Path(args.manifest).read_text()), None
        else:
            manifest, label_cpu_s = label_manifest(fleet, work / "ds")
        share = decoding_share(results["reader"], fleet_frames(fleet, TEACHER_CAMERAS), manifest, label_cpu_s)

    table = Table(title=f"decoding one PAI clip: 4 cameras, {resolution}, H.264 10 Hz, {args.cores} core(s), "
                        f"best of {args.repeats}")
    for column in ("decoder", "frames", "CPU s", "frames/s per core", "wall frames/s", "vs ffmpeg"):
        table.add_column(column, justify="left" if column == "decoder" else "right")
    names = {"reader": "PaiClipSource (zip -> PyAV -> rgb24)", "ffmpeg": "ffmpeg -threads 1 -f null",
             "pyav_decode": "PyAV decode only", "pyav_decode_rgb24": "PyAV decode + rgb24"}
    for key, r in results.items():
        table.add_row(names[key], str(r["frames"]), f"{r['cpu_s']:.3f}", f"{r['fps_per_core']:.0f}",
                      f"{r['wall_fps']:.0f}", f"{r['fps_per_core'] / results['ffmpeg']['fps_per_core']:.2f}x")
    table.add_section()
    table.add_row(f"decoding per window ({share['frames_per_window']:.1f} frames)", "",
                  f"{share['decode_cpu_s_per_window']:.4f}", "", "", "")
    table.add_row("label pipeline per window, wall s", "", f"{share['pipeline_s_per_window']:.3f}", "", "",
                  f"decoding {share['decode_share_of_wall']:.1%}")
    if label_cpu_s is not None:
        table.add_row("label pipeline per window, CPU s", "", f"{share['label_cpu_s_per_window']:.3f}", "", "",
                      f"decoding {share['decode_share_of_cpu']:.1%}")
    console.print(table)
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    console.print(f"reader / ffmpeg = {ratio:.3f} ({verdict} the target >= {TARGET_RATIO}); "
                  f"command: {' '.join(ffmpeg_command(Path('FILE')))}")
    if args.json:
        out = {"resolution": resolution, "cores": args.cores, "repeats": args.repeats, "clip_id": clip_id,
               "ffmpeg_version": ffmpeg_version(), "results": results, "reader_vs_ffmpeg": round(ratio, 3),
               "target_ratio": TARGET_RATIO, "labelling": share}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        console.print(f"wrote {args.json}")
    return 0


def video_resolution(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return f"{stream.codec_context.height}x{stream.codec_context.width}"


def ffmpeg_version() -> str:
    return subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]


if __name__ == "__main__":
    raise SystemExit(main())
