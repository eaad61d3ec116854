"""Fleet synthesis: simulate each vehicle's drive, render its cameras and write its logs."""

import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from schemas.contract import HYPERION8_CAMERAS, TEACHER_CAMERAS


@dataclass(frozen=True)
class FleetSpec:
    out: str
    format: str = "mcap"  # "mcap" or "pai"
    vehicles: int = 2
    minutes: float = 1.0
    seed: int = 0
    lighting: str = "mixed"  # "mixed", "day" or "night"
    cameras: tuple[str, ...] = TEACHER_CAMERAS
    camera_hz: float = 10.0
    height: int = 320
    width: int = 576
    start_us: int = 1_767_254_400_000_000  # 2026-01-01T08:00:00Z
    workers: int = 0

    @classmethod
    def from_args(cls, args) -> "FleetSpec":
        if args.vehicles < 1 or args.minutes <= 0:
            raise SystemExit("--vehicles must be >= 1 and --minutes > 0")
        if args.cameras == "teacher":
            cameras = TEACHER_CAMERAS
        elif args.cameras == "all":
            cameras = HYPERION8_CAMERAS
        else:
            cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
            unknown = sorted(set(cameras) - set(HYPERION8_CAMERAS))
            if unknown:
                raise SystemExit(f"unknown camera(s) {unknown}; choose from {list(HYPERION8_CAMERAS)}")
        try:
            height, width = (int(v) for v in args.resolution.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--resolution must be HEIGHTxWIDTH, got {args.resolution!r}") from None
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        if start.tzinfo is None:
            raise SystemExit("--start needs a timezone, e.g. 2026-01-01T08:00:00Z")
        return cls(out=args.out.rstrip("/"), format=args.format, vehicles=args.vehicles,
                   minutes=args.minutes, seed=args.seed, lighting=args.night, cameras=cameras,
                   camera_hz=args.camera_hz, height=height, width=width,
                   start_us=int(start.timestamp() * 1_000_000), workers=args.workers)

    def vehicle(self, index: int) -> tuple[str, int, bool]:
        """(vehicle_id, drive seed, night) of the index-th vehicle."""
        night = {"day": False, "night": True}.get(self.lighting, index % 2 == 1)
        return f"veh-{index:03d}", self.seed * 1_000 + index, night

    @property
    def frames_per_vehicle(self) -> int:
        return int(self.minutes * 60 * self.camera_hz) * len(self.cameras)


@dataclass
class FleetSummary:
    spec: FleetSpec
    files: list[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        s = self.spec
        lines = [f"wrote {len(self.files)} files ({s.format}, {s.vehicles} vehicles x {s.minutes:g} min, "
                 f"{self.frames} camera frames) to {s.out} in {self.seconds:.1f} s"]
        lines += [f"  {path}" for path in self.files[:20]]
        if len(self.files) > 20:
            lines.append(f"  ... and {len(self.files) - 20} more")
        return "\n".join(lines)


def simulate(spec: FleetSpec, index: int):
    from sim.fleet import simulate_drive

    vehicle_id, seed, night = spec.vehicle(index)
    return simulate_drive(vehicle_id=vehicle_id, seed=seed, duration_s=spec.minutes * 60,
                          start_us=spec.start_us, night=night)


_progress = None  # this worker's queue of frame counts (set by _init_worker)


def _init_worker(queue) -> None:
    global _progress
    _progress = queue


def _report(frames: int) -> None:
    _progress.put(frames)


def _write_mcap_vehicle(spec: FleetSpec, index: int) -> list[str]:
    from sim.render import Renderer
    from sim.truth import write_sidecar
    from sim.writers.mcap import write_mcap

    drive = simulate(spec, index)
    folder = f"{spec.out}/{drive.vehicle_id}"
    log_uri = f"{folder}/{drive.log_name}.mcap"
    truth_uri = f"{folder}/{drive.log_name}.truth.json"
    write_mcap(drive, log_uri, Renderer(drive.static_map).render, cameras=spec.cameras,
               camera_hz=spec.camera_hz, height=spec.height, width=spec.width, progress=_report)
    write_sidecar(drive, truth_uri)
    return [log_uri, truth_uri]


def _write_pai_fleet(spec: FleetSpec) -> list[str]:
    from sim.render import Renderer
    from sim.truth import write_sidecar
    from sim.writers.pai import write_pai

    drives = [simulate(spec, i) for i in range(spec.vehicles)]
    render = _RenderByDrive(drives, Renderer)
    result = write_pai(drives, spec.out, render, cameras=spec.cameras, camera_hz=spec.camera_hz,
                       height=spec.height, width=spec.width, progress=_report)
    files = list(result["files"])
    for drive in drives:
        truth_uri = f"{spec.out}/truth/{drive.log_name}.truth.json"
        write_sidecar(drive, truth_uri)
        files.append(truth_uri)
    return files


class _RenderByDrive:
    """One render callable for several drives: each drive's `snapshot` is wrapped so that the
    snapshot it returns is drawn with that drive's map (writers call render(snapshot(t), cam))."""

    def __init__(self, drives, renderer_cls):
        self._current = None
        for drive in drives:
            drive.snapshot = self._wrap(drive.snapshot, renderer_cls(drive.static_map))

    def _wrap(self, snapshot_fn, renderer):
        def snapshot(t_us):
            self._current = renderer
            return snapshot_fn(t_us)

        return snapshot

    def __call__(self, snapshot, camera):
        return self._current.render(snapshot, camera)


def synthesize(spec: FleetSpec, progress=None) -> FleetSummary:
    """Write the fleet of `spec`; vehicles render in parallel processes (MCAP). `progress`: a
    rich Progress (not started) that shows the frames written; default none."""
    from rich.progress import Progress

    started = time.perf_counter()
    total = spec.frames_per_vehicle * spec.vehicles
    summary = FleetSummary(spec)
    # A plain queue handed to the workers at start-up: a Manager's proxies break once Beam's
    # multi_process_shared (imported by RunInference) has patched multiprocessing's AutoProxy.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with progress or Progress(disable=True) as progress:
        task = progress.add_task(f"synth {spec.format} frames", total=total)
        workers = spec.workers or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=min(workers, spec.vehicles), mp_context=ctx,
                                 initializer=_init_worker, initargs=(queue,)) as pool:
            if spec.format == "mcap":
                futures = [pool.submit(_write_mcap_vehicle, spec, i) for i in range(spec.vehicles)]
            else:
                futures = [pool.submit(_write_pai_fleet, spec)]
            while not all(f.done() for f in futures):
                _drain(queue, progress, task, timeout=0.2)
            _drain(queue, progress, task, timeout=0.0)
            for future in futures:
                summary.files += future.result()
        summary.frames = int(progress.tasks[0].completed)
    summary.seconds = time.perf_counter() - started
    return summary


def _drain(queue, progress, task, timeout: float) -> None:
    import queue as queue_module

    try:
        n = queue.get(timeout=timeout) if timeout else queue.get_nowait()
        progress.advance(task, n)
        while True:
            progress.advance(task, queue.get_nowait())
    except queue_module.Empty:
        pass
