"""Decoding throughput of the PhysicalAI-AV mp4 reader against the ffmpeg command line, and the
share of labelling time spent decoding.

For each resolution, both decoders run on the same H.264 files of one 20 s PAI clip (the
teacher's 4 cameras, --camera-hz) and the same cores: this process and its ffmpeg children are pinned
to the first --cores CPUs (as `taskset` would), and both use the same decoder threads
(--threads; default 0: libavcodec's automatic count for the pinned CPUs, which is the ffmpeg
command's default; 1 thread on 1 core).
- reader, teacher's frames: `PaiClipSource(root, clip, TEACHER_CAMERAS).messages()` over the
  whole clip, from the zip members (each read once into a spool), with the egomotion stream
  beside them, the cameras decoding in runs of RUN_FRAMES in time order; every frame decoded,
  and the pixels used of the frames the clip's t0 windows take (the latest frame at or before
  t0-0.3 s, -0.2, -0.1, t0, on the 0.5 s grid): what the label pipeline asks of it. Pixels are
  RGB at the clips' stored size (320x576; larger videos are scaled down by swscale first).
- reader, every frame: the same with every frame's pixels used.
- reader, no pixels: the same with no pixels used: decoding and the time-ordered merge alone.
  Per frame the teacher takes, the reader's time less this is what converting costs, and the
  target's time (ffmpeg's CPU seconds / 0.8) less this is what the target leaves for it.
- ffmpeg: `ffmpeg -i FILE -f null -` on each camera's mp4, extracted from its zip; CPU time from
  its `-benchmark` line (the decode loop, without process start-up). The null output converts
  nothing. Beside it, ffmpeg doing the reader's conversion for every frame
  (`-vf scale=576:320:flags=bilinear,format=rgb24`; at the video's size when it is not larger).
- PyAV decode only, and decode + rgb24 at the video's size, on the extracted files: the floor and
  what converting every frame at full size costs. Beside them, PyAV decoding one camera's file
  after another and converting the teacher's frames right after their decode with the reader's
  converter: the reader without its time-ordered merge of the 4 cameras.
Frames/s per core = frames decoded / CPU seconds. The decoders take turns, --repeats rounds; the
best round counts (the median, and the median of the rounds' own ratios, are beside it), so a
busy machine shifts the ratio little. The load average is printed before and after.
Target: reader (teacher's frames) >= 0.8x ffmpeg.
For a video larger than the stored size, ways of shrinking with swscale are timed apart (same
core), on the first camera's first 40 frames, with the PSNR of their pixels against the
reader's and against PIL's bilinear resize of the full-size frame.

Decoding share: the reader decodes every frame of the 4 cameras in order, so a log of W clip
windows costs (its frames) / W decoded frames per window (about 4 cameras x 10 Hz x 0.5 s stride
= 20, of which the teacher uses 16). That many frames at the reader's rate, against the label
pipeline's time per window (`_manifest.json`: timings_s.pipeline / counts.windows) of a
`coclabel label` run on the same fleet (or --manifest of an earlier one), and, for a run made
here, against its CPU seconds per window.

    python -m benchmarks.decode --repeats 9 --json out/bench/decode.json
    python -m benchmarks.decode --resolution 1080x1920 --no-share
    python -m benchmarks.decode --fleet /tmp/fleet-pai --manifest /tmp/ds/_manifest.json --cores 2

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
from typing import Callable

TARGET_RATIO = 0.8
CLIP_SECONDS = 20  # one full PAI clip per vehicle
BENCH_LINE = re.compile(r"bench: utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s")
FRAME_LINE = re.compile(r"frame=\s*(\d+)")
NAMES = {"reader": "PaiClipSource, teacher's frames -> RGB", "reader_all": "PaiClipSource, every frame -> RGB",
         "reader_none": "PaiClipSource, no pixels (decode + merge)",
         "ffmpeg": "ffmpeg -f null", "ffmpeg_rgb": "ffmpeg -vf scale,format=rgb24 -f null",
         "pyav_taken": "PyAV, one camera after another, teacher's frames -> RGB as the reader",
         "pyav_decode": "PyAV decode only",
         "pyav_decode_rgb24": "PyAV decode + rgb24 at video size"}


def synth_fleet(out: Path, resolution: str, camera_hz: float) -> None:
    """One vehicle driving one 20 s PAI clip."""
    from pipelines.cli import main

    if main(["synth", "--out", str(out), "--format", "pai", "--vehicles", "1", "--resolution", resolution,
             "--camera-hz", str(camera_hz), "--minutes", str(CLIP_SECONDS / 60), "--workers", "1"]) != 0:
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


def frame_times(root: Path, clip_id: str, camera: str):
    """The timestamps (us) of a camera's frames in `clip_id`, in video order."""
    import io

    import pandas as pd

    return pd.read_parquet(io.BytesIO(read_member(root, camera, "frame_timestamps", clip_id)))["timestamp"].to_numpy()


def teacher_frames(root: Path, clip_id: str, cameras) -> set[tuple[str, int]]:
    """(camera, t_us) of the frames the clip's t0 windows take: per t0 of its grid and per frame
    offset, the latest frame at or before t0 + offset."""
    import numpy as np

    from schemas.contract import FRAME_OFFSETS_US
    from transforms.clips import t0_grid
    from transforms.sources.pai import PaiClipSource

    info = PaiClipSource(str(root), clip_id, cameras).info()
    wanted = np.array([t0 + offset for t0 in t0_grid(info) for offset in FRAME_OFFSETS_US])
    taken = set()
    for camera in cameras:
        t = frame_times(root, clip_id, camera)
        i = np.searchsorted(t, wanted, "right") - 1
        taken |= {(camera, int(t[k])) for k in i[i >= 0]}
    return taken


def taken_indices(root: Path, clip_id: str, cameras, taken: set[tuple[str, int]]) -> list[set[int]]:
    """Per camera, the indices in its video of its frames in `taken`."""
    return [{i for i, t in enumerate(frame_times(root, clip_id, camera)) if (camera, int(t)) in taken}
            for camera in cameras]


def in_process(fn: Callable[[], int]) -> Callable[[], tuple[int, float, float]]:
    """`fn` (returning its frame count) as a decoder: (frames, CPU s of this process, wall s)."""
    def run():
        cpu, wall = time.process_time(), time.perf_counter()
        frames = fn()
        return frames, time.process_time() - cpu, time.perf_counter() - wall
    return run


def measure(decoders: dict[str, Callable[[], tuple[int, float, float]]], repeats: int) -> dict:
    """Each decoder `repeats` times, taking turns (a change of load hits them alike); per decoder
    the rates of its best round, its median CPU seconds and its CPU seconds in each round."""
    runs = {name: [] for name in decoders}
    for _ in range(repeats):
        for name, decoder in decoders.items():
            runs[name].append(decoder())
    results = {}
    for name, rounds in runs.items():
        (frames,) = {r[0] for r in rounds}
        cpu = [r[1] for r in rounds]
        results[name] = {**rates(frames, min(cpu), min(r[2] for r in rounds), statistics.median(cpu)),
                         "rounds_cpu_s": [round(c, 4) for c in cpu]}
    return results


def paired_ratio(results: dict, name: str) -> float:
    """Median over rounds of ffmpeg's CPU seconds / `name`'s in the same round (the frame counts
    are equal): the load of a round cancels out."""
    return statistics.median(f / r for f, r in zip(results["ffmpeg"]["rounds_cpu_s"], results[name]["rounds_cpu_s"],
                                                   strict=True))


def convert_ms(results: dict, frames_taken: int) -> dict:
    """CPU ms per frame taken, best rounds: what converting it costs the reader (its time less
    its time without pixels) and what the target leaves for it (ffmpeg's time / TARGET_RATIO
    less the reader's without pixels)."""
    decoding = results["reader_none"]["cpu_s"]
    return {"spent": round(1000 * (results["reader"]["cpu_s"] - decoding) / frames_taken, 3),
            "budget": round(1000 * (results["ffmpeg"]["cpu_s"] / TARGET_RATIO - decoding) / frames_taken, 3)}


def rates(frames: int, cpu_s: float, wall_s: float, median_cpu_s: float) -> dict:
    return {"frames": frames, "cpu_s": round(cpu_s, 4), "median_cpu_s": round(median_cpu_s, 4),
            "wall_s": round(wall_s, 4), "fps_per_core": round(frames / cpu_s, 1),
            "median_fps_per_core": round(frames / median_cpu_s, 1), "wall_fps": round(frames / wall_s, 1)}


def reader_frames(root: Path, clip_id: str, cameras, threads: int, convert: set | None) -> int:
    """Frames the reader decodes over the whole clip; the pixels of those in `convert` (of every
    frame when None) are used."""
    from transforms.sources.base import CameraFrame
    from transforms.sources.pai import PaiClipSource

    frames = 0
    for m in PaiClipSource(str(root), clip_id, cameras, decoder_threads=threads).messages():
        if isinstance(m, CameraFrame):
            frames += 1
            if (convert is None or (m.camera, m.t_us) in convert) and m.pixels.ndim != 3:
                raise AssertionError(f"{m.camera} {m.t_us}: pixels of shape {m.pixels.shape}")
    return frames


def pyav_frames(videos: list[Path], threads: int, convert: Callable | None = None,
                taken: list[set[int]] | None = None) -> int:
    """Frames of `videos` decoded with PyAV, one file after another (`threads` decoder threads, as
    the reader); `convert(frame)` right after the decode of each frame, or with `taken` (frame
    indices per video) of those frames only."""
    import av

    n = 0
    for k, path in enumerate(videos):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if threads == 1:
                stream.thread_type = "NONE"
            else:
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = threads
            for i, frame in enumerate(container.decode(stream)):
                if convert is not None and (taken is None or i in taken[k]):
                    convert(frame)
                n += 1
    return n


def shrink_steps(size: tuple[int, int], video_size: tuple[int, int]) -> dict[str, list[dict]]:
    """Ways to scale a frame of `video_size` down to `size` (both height, width) and make it rgb24
    with swscale, as the arguments of successive `VideoReformatter.reformat` calls; the first is
    the reader's (`RgbConverter`)."""
    rgb = {"format": "rgb24"}

    def scale(interpolation: str, to: tuple[int, int] = size) -> dict:
        return {"height": to[0], "width": to[1], "interpolation": interpolation}

    half = (video_size[0] // 2, video_size[1] // 2)
    return {"bilinear, then rgb24 (the reader's)": [scale("BILINEAR"), rgb],
            "area, then rgb24": [scale("AREA"), rgb],
            "area to half the video's size, bilinear, then rgb24": [scale("AREA", half), scale("BILINEAR"), rgb],
            "bilinear straight to rgb24": [{**scale("BILINEAR"), **rgb}],
            "fast_bilinear, then rgb24": [scale("FAST_BILINEAR"), rgb],
            "point (nearest), then rgb24": [scale("POINT"), rgb]}


def bench_shrinks(video: Path, size: tuple[int, int], frames: int = 40, passes: int = 3) -> dict:
    """Each of `shrink_steps` on the first `frames` frames of `video` (decoded beforehand and held,
    so cold in cache as the reader's): CPU ms per frame (best of `passes`, ending with a copy to
    an array), and PSNR (dB; None: identical) of its pixels against the reader's and against
    PIL's bilinear resize of the full-size RGB frame."""
    import itertools

    import av
    from PIL import Image

    from transforms.sources.pai import RgbConverter

    with av.open(str(video)) as container:
        decoded = list(itertools.islice(container.decode(video=0), frames))
    reader = RgbConverter(size)
    reader_pixels = [reader(f).copy() for f in decoded]
    pil = [Image.fromarray(f.to_ndarray(format="rgb24")).resize(size[::-1], Image.Resampling.BILINEAR) for f in decoded]
    results = {}
    for name, steps in shrink_steps(size, (decoded[0].height, decoded[0].width)).items():
        shrink = reformat_steps(steps)
        pixels = [shrink(f) for f in decoded]
        results[name] = {"ms_per_frame": round(cpu_ms_per_frame(shrink, decoded, passes), 3),
                         "psnr_vs_reader_db": psnr(pixels, reader_pixels), "psnr_vs_pil_db": psnr(pixels, pil)}
    return results


def cpu_ms_per_frame(fn: Callable, frames: list, passes: int) -> float:
    """CPU ms of `fn` per frame of `frames`, best of `passes` over all of them."""
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        for frame in frames:
            fn(frame)
        best = min(best, time.process_time() - started)
    return 1000 * best / len(frames)


def reformat_steps(steps: list[dict]) -> Callable:
    """frame -> the array of `steps` of VideoReformatter.reformat (one swscale thread, one
    reformatter per step) applied to it."""
    from av.video.reformatter import VideoReformatter

    reformatters = [VideoReformatter() for _ in steps]

    def run(frame):
        for reformatter, step in zip(reformatters, steps, strict=True):
            frame = reformatter.reformat(frame, threads=1, **step)
        return frame.to_ndarray()
    return run


def psnr(images, references) -> float | None:
    """PSNR (dB) of uint8 `images` against `references` over all of them; None when identical."""
    import numpy as np

    errors = [np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
              for a, b in zip(images, references, strict=True)]
    mse = np.mean(errors)
    return None if mse == 0 else round(float(10 * np.log10(255**2 / mse)), 2)


def ffmpeg_command(path: Path, threads: int, size: tuple[int, int] | None = None) -> list[str]:
    """Decode `path` to null; `threads` 0 leaves ffmpeg's default (automatic) thread count; with
    `size` (height, width), every frame is also scaled to it (bilinear) and converted to rgb24."""
    threading = ["-threads", str(threads)] if threads else []
    convert = ["-vf", f"scale={size[1]}:{size[0]}:flags=bilinear,format=rgb24"] if size else []
    return ["ffmpeg", "-hide_banner", "-nostats", "-benchmark", *threading, "-i", str(path), *convert,
            "-f", "null", "-"]


def ffmpeg_decoder(videos: list[Path], threads: int,
                   size: tuple[int, int] | None = None) -> Callable[[], tuple[int, float, float]]:
    """(frames, CPU s, wall s) of ffmpeg decoding each video to null, from its -benchmark lines."""
    def run():
        frames, cpu, wall = 0, 0.0, 0.0
        for path in videos:
            done = subprocess.run(ffmpeg_command(path, threads, size), capture_output=True, text=True, check=True)
            utime, stime, rtime = map(float, BENCH_LINE.search(done.stderr).groups())
            frames += int(FRAME_LINE.findall(done.stderr)[-1])
            cpu, wall = cpu + utime + stime, wall + rtime
        return frames, cpu, wall
    return run


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


def bench_fleet(fleet: Path, work: Path, cores: int, threads: int, repeats: int) -> dict:
    """The decoders on the first clip of `fleet`, pinned to the first `cores` CPUs."""
    from schemas.contract import IMAGE_HEIGHT, IMAGE_WIDTH, TEACHER_CAMERAS
    from transforms.sources.pai import RUN_FRAMES, RgbConverter, list_pai_clips

    clip_id = list_pai_clips(str(fleet))[0]
    videos = extract_videos(fleet, clip_id, TEACHER_CAMERAS, work)
    taken = teacher_frames(fleet, clip_id, TEACHER_CAMERAS)
    indices = taken_indices(fleet, clip_id, TEACHER_CAMERAS, taken)
    height, width = map(int, video_resolution(videos[0]).split("x"))
    stored = (IMAGE_HEIGHT, IMAGE_WIDTH) if height >= IMAGE_HEIGHT and width >= IMAGE_WIDTH else (height, width)
    decoders = {
        "reader": in_process(lambda: reader_frames(fleet, clip_id, TEACHER_CAMERAS, threads, taken)),
        "reader_all": in_process(lambda: reader_frames(fleet, clip_id, TEACHER_CAMERAS, threads, None)),
        "reader_none": in_process(lambda: reader_frames(fleet, clip_id, TEACHER_CAMERAS, threads, set())),
        "ffmpeg": ffmpeg_decoder(videos, threads),
        "ffmpeg_rgb": ffmpeg_decoder(videos, threads, stored),
        "pyav_taken": in_process(lambda: pyav_frames(videos, threads, RgbConverter((IMAGE_HEIGHT, IMAGE_WIDTH)),
                                                     indices)),
        "pyav_decode": in_process(lambda: pyav_frames(videos, threads)),
        "pyav_decode_rgb24": in_process(lambda: pyav_frames(videos, threads, reformat_steps([{"format": "rgb24"}]))),
    }
    cpus = sorted(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    os.sched_setaffinity(0, cpus[:cores])  # inherited by the ffmpeg children
    try:
        results = measure(decoders, repeats)
        shrinks = bench_shrinks(videos[0], stored) if stored != (height, width) else None
    finally:
        os.sched_setaffinity(0, cpus)
    ffmpeg = results["ffmpeg"]
    return {"resolution": video_resolution(videos[0]), "camera_hz": video_rate(videos[0]), "clip_id": clip_id,
            "frames_taken": len(taken), "reader_run_frames": RUN_FRAMES, "results": results,
            "reader_vs_ffmpeg": round(results["reader"]["fps_per_core"] / ffmpeg["fps_per_core"], 3),
            "reader_vs_ffmpeg_median": round(results["reader"]["median_fps_per_core"]
                                             / ffmpeg["median_fps_per_core"], 3),
            "reader_vs_ffmpeg_paired": round(paired_ratio(results, "reader"), 3),
            "reader_none_vs_ffmpeg": round(results["reader_none"]["fps_per_core"] / ffmpeg["fps_per_core"], 3),
            "convert_ms_per_frame": convert_ms(results, len(taken)), "shrinks": shrinks,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def print_run(console, run: dict, cores: int, threads: int, repeats: int) -> None:
    from rich.table import Table

    table = Table(title=f"decoding one PAI clip: 4 cameras, {run['resolution']}, H.264 {run['camera_hz']:g} Hz, "
                        f"{cores} core(s), "
                        f"decoder threads {threads or 'auto'}, best of {repeats} rounds")
    for column in ("decoder", "frames", "CPU s", "frames/s per core", "median", "wall frames/s", "vs ffmpeg"):
        table.add_column(column, justify="left" if column == "decoder" else "right")
    ffmpeg = run["results"]["ffmpeg"]["fps_per_core"]
    for key, r in run["results"].items():
        table.add_row(NAMES[key], str(r["frames"]), f"{r['cpu_s']:.3f}", f"{r['fps_per_core']:.0f}",
                      f"{r['median_fps_per_core']:.0f}", f"{r['wall_fps']:.0f}", f"{r['fps_per_core'] / ffmpeg:.2f}x")
    share = run.get("labelling")
    if share:
        table.add_section()
        table.add_row(f"decoding per window ({share['frames_per_window']:.1f} frames)", "",
                      f"{share['decode_cpu_s_per_window']:.4f}", "", "", "", "")
        table.add_row("label pipeline per window, wall s", "", f"{share['pipeline_s_per_window']:.3f}", "", "", "",
                      f"decoding {share['decode_share_of_wall']:.1%}")
        if "label_cpu_s_per_window" in share:
            table.add_row("label pipeline per window, CPU s", "", f"{share['label_cpu_s_per_window']:.3f}", "", "",
                          "", f"decoding {share['decode_share_of_cpu']:.1%}")
    console.print(table)
    ratio = run["reader_vs_ffmpeg"]
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    console.print(f"{run['resolution']}: reader (teacher's frames) / ffmpeg = {ratio:.3f} best, "
                  f"{run['reader_vs_ffmpeg_median']:.3f} median, {run['reader_vs_ffmpeg_paired']:.3f} median of "
                  f"the rounds' ratios ({verdict} the target >= {TARGET_RATIO}); "
                  f"{run['frames_taken']} of {run['results']['reader']['frames']} frames converted; "
                  f"load average {run['load_average_before']} before, {run['load_average_after']} after")
    convert = run["convert_ms_per_frame"]
    console.print(f"without pixels the reader is {run['reader_none_vs_ffmpeg']:.3f}x ffmpeg: converting each frame "
                  f"taken costs {convert['spent']:.3f} ms of CPU, the target leaves {convert['budget']:.3f} ms")
    if run["shrinks"]:
        print_shrinks(console, run["shrinks"])


def print_shrinks(console, shrinks: dict) -> None:
    from rich.table import Table

    table = Table(title="swscale, shrinking a held frame of the first camera to the stored size as RGB")
    for column in ("steps", "CPU ms per frame", "PSNR vs the reader's, dB", "PSNR vs PIL bilinear, dB"):
        table.add_column(column, justify="left" if column == "steps" else "right")
    for name, r in shrinks.items():
        table.add_row(name, f"{r['ms_per_frame']:.3f}", *("identical" if r[key] is None else f"{r[key]:.1f}"
                                                           for key in ("psnr_vs_reader_db", "psnr_vs_pil_db")))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleet", action="append",
                        help="a PAI fleet (coclabel synth --format pai), repeatable; default: synthesise one "
                             "20 s clip per --resolution")
    parser.add_argument("--resolution", default="320x576,1080x1920",
                        help="HEIGHTxWIDTH of the synthesised fleets, comma-separated (default 320x576,1080x1920: "
                             "the teacher's input and what the PAI dataset records)")
    parser.add_argument("--camera-hz", type=float, default=10,
                        help="camera frame rate of the synthesised fleets (default 10, as `coclabel synth`); "
                             "at 30 Hz the teacher takes 4 of every 15 frames")
    parser.add_argument("--manifest", action="append",
                        help="_manifest.json of a `coclabel label` run on each --fleet, in the same order "
                             "(default: run the label pipeline here on each fleet)")
    parser.add_argument("--no-share", action="store_true",
                        help="skip the share of labelling time (no label pipeline run)")
    parser.add_argument("--cores", type=int, default=1, help="CPUs both decoders are pinned to (default 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="decoder threads of both: ffmpeg -threads N and the reader's decoder_threads "
                             "(default 0: libavcodec's automatic count for --cores, ffmpeg's default)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the decoders; the best counts (default 5)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("error: the ffmpeg command is missing; install it (Debian/Ubuntu: apt-get install ffmpeg)",
              file=sys.stderr)
        return 2
    if args.manifest and len(args.manifest) != len(args.fleet or []):
        parser.error("give one --manifest per --fleet")
    from rich.console import Console

    from schemas.contract import TEACHER_CAMERAS

    console = Console(width=170)
    runs = []
    with tempfile.TemporaryDirectory(prefix="coclabel-bench-decode-") as work:
        work = Path(work)
        fleets = [Path(f) for f in args.fleet] if args.fleet else []
        for resolution in [] if args.fleet else args.resolution.split(","):
            fleets.append(work / f"fleet-{resolution}")
            synth_fleet(fleets[-1], resolution, args.camera_hz)
        for k, fleet in enumerate(fleets):
            videos = work / f"videos-{k}"
            videos.mkdir()
            run = bench_fleet(fleet, videos, args.cores, args.threads, args.repeats)
            if args.manifest:
                manifest, label_cpu_s = json.loads(Path(args.manifest[k]).read_text()), None
            elif not args.no_share:
                manifest, label_cpu_s = label_manifest(fleet, work / f"ds-{k}")
            if args.manifest or not args.no_share:
                run["labelling"] = decoding_share(run["results"]["reader"], fleet_frames(fleet, TEACHER_CAMERAS),
                                                  manifest, label_cpu_s)
            print_run(console, run, args.cores, args.threads, args.repeats)
            runs.append(run)
    console.print(f"ffmpeg: {ffmpeg_version()}; command: {' '.join(ffmpeg_command(Path('FILE'), args.threads))}; "
                  f"PyAV {pyav_version()}")
    if args.json:
        out = {"cores": args.cores, "threads": args.threads, "repeats": args.repeats,
               "ffmpeg_version": ffmpeg_version(), "pyav": pyav_version(), "target_ratio": TARGET_RATIO, "runs": runs}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        console.print(f"wrote {args.json}")
    return 0


def video_resolution(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return f"{stream.codec_context.height}x{stream.codec_context.width}"


def video_rate(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate)


def ffmpeg_version() -> str:
    return subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]


def pyav_version() -> str:
    import av

    return f"{av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})"


if __name__ == "__main__":
    raise SystemExit(main())
