"""Distil a student from the teacher: training shards (DIR/shards/), then a torch loop trains the
student on the teacher's samples. The shards come from one of two sources:

--labels DATASET: a labelled dataset (`coclabel label`). A Beam pipeline keys clips and labels by
  clip_id and joins them (CoGroupByKey); each joined clip is decoded at the student's image size
  and lands in one of --shards .npz files (by a hash of its clip_id, rows sorted by clip_id, so
  reruns write identical shards). A clip without a label (quarantined) or a label without a clip
  is listed in DIR/shards/_join.json, never dropped silently.
--from-sim SEEDS: no dataset and no Beam (e.g. a GPU host that cannot receive the dataset): one
  simulated drive per seed (sim/dataset.py, as the teacher's training clips; cached in --cache),
  labelled in-process by --teacher on --device with K=--samples samples seeded from the clip ids
  as the labelling pipeline seeds them; same examples, split and shards
  (models/students/simlabel.py). --pai-percent of the drives (default half) are written as
  PhysicalAI-AV clips (H.264 video, as `coclabel synth --format pai`) and read back through the
  PAI reader, so the student also learns the video-decoded image domain; the others carry the
  JPEG frames of MCAP logs. The label checks of transforms/validate.py are not applied.
Either way clips are split train/heldout per 20 s block of their log (--heldout-percent), and
--reuse-shards reuses DIR/shards/ only when it was built from the same source (dataset run id,
or seeds, teacher weights and options).

Training (models/students/train.py): min-over-K distance to the teacher's K samples, flow
matching on them, teacher-forced cross-entropy on the teacher's reasoning, optional ground-truth
weight; AdamW with a cosine schedule (over --steps, or over --minutes when that ends first),
bfloat16 autocast on CUDA, a checkpoint every --checkpoint-every steps, --resume to continue.
At the end the student is evaluated on the held-out clips of the shards (minADE against ground
truth, the teacher's own, meta-action agreement) at each of --noise-scales (the flow head's
starting noise times a scale: below 1 the K samples keep closer to the student's most likely
behaviour); the student keeps the scale of best agreement whose minADE stays within
--max-ade-ratio of the teacher's, all written into DIR/student.json.

Output: DIR/student.safetensors, DIR/tokenizer.json, DIR/student.json, DIR/shards/.

examples:
  coclabel distill --labels out/demo/dataset --student nano --out out/demo/student-nano --steps 600
  # on a GPU host: 120 two-minute drives, labelled by the bundled teacher on the GPU, 4 min of training
  coclabel distill --from-sim 20000-20119 --workers 15 --device cuda --out out/nano-sim \\
      --batch-size 512 --steps 20000 --minutes 4 --noise-scales 1.0,0.8,0.6
"""

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help="dataset folder or URL with clips/ and labels/ (from `coclabel label`)")
    source.add_argument("--from-sim", metavar="SEEDS",
                        help="simulate one drive per seed (e.g. 20000-20119 or 3,5,9) and label it with --teacher here")
    parser.add_argument("--student", default="nano",
                        help="student configuration: nano, small, optionally -regression or -flow1 (default nano)")
    parser.add_argument("--out", required=True, help="student folder to write (weights, tokenizer, shards, checkpoints)")
    parser.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-clock budget of the training; the schedule ends with it (default none)")
    parser.add_argument("--batch-size", type=int, default=32, help="clips per step (default 32)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, batching and noise (default 0)")
    parser.add_argument("--gt-weight", type=float, default=0.0, help="weight of the ground-truth loss (default 0: teacher only)")
    parser.add_argument("--ce-weight", type=float, default=1.0, help="weight of the reasoning cross-entropy (default 1)")
    parser.add_argument("--flow-weight", type=float, default=0.5, help="weight of flow matching on teacher samples (default 0.5)")
    parser.add_argument("--set-match", choices=("chamfer", "assignment"), default="chamfer",
                        help="how the student's K trajectories are matched to the teacher's K samples in the set loss: "
                             "chamfer (each to its nearest, both ways) or assignment (one-to-one, the cheapest of the K! "
                             "pairings, so the student's samples keep the teacher's proportions of behaviours); "
                             "default chamfer")
    parser.add_argument("--set-coverage", type=float, default=1.0,
                        help="weight of the chamfer match's coverage term (every teacher sample near a student sample); "
                             "below 1 the student's trajectories gather on the teacher's most common behaviour, which "
                             "raises meta-action agreement and may raise minADE (default 1)")
    parser.add_argument("--heldout-percent", type=int, default=20, help="share of 20 s log blocks held out (default 20)")
    parser.add_argument("--shards", type=int, default=4, help="number of training shards (default 4)")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/train_state.safetensors if present")
    parser.add_argument("--init", metavar="STUDENT_DIR",
                        help="start from this student folder's weights and tokenizer (same --student), e.g. to "
                             "distil a committed student further or from a new teacher; default: a fresh student")
    parser.add_argument("--reuse-shards", action="store_true",
                        help="skip building DIR/shards/ when it holds shards of the same source")
    parser.add_argument("--eval-clips", type=int, default=500, help="held-out clips evaluated at the end (default 500; 0: none)")
    parser.add_argument("--noise-scales", default="1.0",
                        help="sampling noise scales evaluated on the held-out clips, comma-separated; the student keeps "
                             "the one of best meta-action agreement within --max-ade-ratio (default 1.0)")
    parser.add_argument("--max-ade-ratio", type=float, default=1.3,
                        help="bound on held-out minADE against the truth, as a multiple of the teacher's, when choosing "
                             "the noise scale (default 1.3)")
    parser.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    sim = parser.add_argument_group("--from-sim options")
    sim.add_argument("--teacher", default="tiny", help="teacher that labels the simulated clips: tiny or tiny:DIR (default tiny)")
    sim.add_argument("--samples", type=int, default=6, help="teacher samples per clip, K (default 6)")
    sim.add_argument("--drive-minutes", type=float, default=2.0, help="length of each simulated drive (default 2)")
    sim.add_argument("--stride-s", type=float, default=1.0, help="seconds between clip t0s (default 1)")
    sim.add_argument("--cache", default="out/sim-clips", help="folder of cached clip .npz files (default out/sim-clips)")
    sim.add_argument("--workers", type=int, default=1,
                     help="processes that each simulate, render and label whole drives, each with its own copy of the "
                          "teacher (default 1: in this process)")
    sim.add_argument("--label-batch", type=int, default=64, help="clips per teacher call (default 64)")
    sim.add_argument("--pai-percent", type=int, default=50,
                     help="share of the drives, in percent, written as PhysicalAI-AV H.264 video and read back through "
                          "the PAI reader (the rest: JPEG frames as in MCAP logs); default 50")


def dataset_source(labels_uri: str, heldout_percent: int) -> dict:
    """What determines joined shards: the dataset's run id (its manifest: inputs, options,
    teacher) where it has one, and the split."""
    import json

    import fsspec

    from transforms.parquet import MANIFEST_NAME

    try:
        with fsspec.open(f"{labels_uri.rstrip('/')}/{MANIFEST_NAME}", "r") as f:
            run_id = json.load(f).get("run_id")
    except FileNotFoundError:
        run_id = None
    return {"labels": labels_uri, "run_id": run_id, "heldout_percent": heldout_percent}


def build_shards(labels_uri: str, out_dir: str, height: int, width: int, heldout_percent: int, n_shards: int,
                 beam_args: list[str]) -> dict:
    """The Beam join: clips x labels -> `out_dir`/shard-NNNNN.npz and `_join.json`; returns the report."""
    import json
    import typing
    from pathlib import Path

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from models.students.data import (
        shard_of,
        shard_summary,
        training_example,
        write_join_report,
        write_shard,
    )

    clip_columns = ["clip_id", "log_id", "t0_us", "source_uri", "images", "ego_history_xyz", "ego_history_rot", "ego_future_xyz", "ego_future_rot"]
    root = labels_uri.rstrip("/")

    class Join(beam.DoFn):
        def process(self, item):
            clip_id, grouped = item
            clips, labels = list(grouped["clips"]), list(grouped["labels"])
            if not clips or not labels:
                yield beam.pvalue.TaggedOutput("unmatched", json.dumps({"clip_id": clip_id, "missing": "label" if clips else "clip"}))
                return
            try:
                example = training_example(clips[0], labels[0], height, width, heldout_percent)
            except (ValueError, KeyError, OSError) as e:
                yield beam.pvalue.TaggedOutput("unmatched", json.dumps({"clip_id": clip_id, "missing": f"bad input: {e}"}))
                return
            yield shard_of(clip_id, n_shards), example

    def write(item):
        shard, examples = item
        write_shard(Path(out_dir) / f"shard-{shard:05d}.npz", list(examples))

    for old in Path(out_dir).glob("shard-*.npz"):
        old.unlink()
    options = PipelineOptions(beam_args or ["--runner=DirectRunner"])
    with beam.Pipeline(options=options) as p:
        clips = (p | "ReadClips" >> beam.io.ReadFromParquet(f"{root}/clips/*/*/*.parquet", columns=clip_columns)
                 | "KeyClips" >> beam.Map(lambda r: (r["clip_id"], r)))
        labels = (p | "ReadLabels" >> beam.io.ReadFromParquet(f"{root}/labels/*/*/*.parquet", columns=["clip_id", "samples"])
                  | "KeyLabels" >> beam.Map(lambda r: (r["clip_id"], r)))
        joined = ({"clips": clips, "labels": labels} | beam.CoGroupByKey()
                  | "Join" >> beam.ParDo(Join()).with_output_types(typing.Tuple[int, typing.Any]).with_outputs("unmatched", main="examples"))
        _ = joined.examples | beam.GroupByKey() | "Write" >> beam.Map(write)
        _ = joined.unmatched | "WriteUnmatched" >> beam.io.WriteToText(
            str(Path(out_dir) / "unmatched.jsonl"), num_shards=1, shard_name_template="")
    shards = shard_summary(out_dir)
    unmatched_path = Path(out_dir) / "unmatched.jsonl"
    unmatched = sorted(unmatched_path.read_text().splitlines()) if unmatched_path.exists() else []
    report = {"source": dataset_source(labels_uri, heldout_percent), "shards": shards,
              "clips": sum(s["clips"] for s in shards), "heldout": sum(s["heldout"] for s in shards),
              "unmatched": [json.loads(u) for u in unmatched]}
    write_join_report(out_dir, report)
    return report


def sim_shards(args, student, shard_dir, device: str) -> dict | None:
    """Simulated, teacher-labelled shards (models/students/simlabel.py); None when --reuse-shards
    finds shards of the same source."""
    from models.students.data import read_join_report
    from models.students.simlabel import (
        build_sim_shards,
        load_labeller,
        sim_source,
        teacher_identity,
    )
    from pipelines.progress import LineProgress
    from pipelines.teacher import parse_seeds

    seeds = parse_seeds(args.from_sim)
    teacher = teacher_identity(load_labeller(args.teacher, device, args.label_batch))
    source = sim_source(seeds, args.drive_minutes, args.stride_s, args.samples, args.heldout_percent, teacher, args.pai_percent)
    if args.reuse_shards and (read_join_report(shard_dir) or {}).get("source") == source:
        return None
    with LineProgress() as progress:
        task = progress.add_task(f"simulate + label {len(seeds)} drives", total=len(seeds))
        return build_sim_shards(seeds, shard_dir, args.teacher, device, student.image_height, student.image_width,
                                minutes=args.drive_minutes, stride_s=args.stride_s, cache=args.cache, workers=args.workers,
                                samples=args.samples, heldout_percent=args.heldout_percent, n_shards=args.shards,
                                label_batch=args.label_batch, pai_percent=args.pai_percent,
                                progress=lambda done, _: progress.update(task, completed=done))


def run(args, beam_args) -> int:
    import json
    from pathlib import Path

    import torch
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    from models.students import student_config
    from models.students.data import load_shards, read_join_report, select
    from models.students.metrics import heldout_metrics
    from models.students.train import STATE_FILE, TrainConfig, distill
    from pipelines.progress import LineProgress

    torch.set_num_threads(args.threads)
    student = student_config(args.student)
    shard_dir = Path(args.out) / "shards"
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.from_sim:
        report = sim_shards(args, student, shard_dir, device)
    elif args.reuse_shards and (read_join_report(shard_dir) or {}).get("source") == dataset_source(args.labels, args.heldout_percent):
        report = None
    else:
        report = build_shards(args.labels, str(shard_dir), student.image_height, student.image_width, args.heldout_percent,
                              args.shards, beam_args)
    if report is None:
        print(f"reusing the shards in {shard_dir} (same source)")
    else:
        print(f"wrote {report['clips']} clips ({report['heldout']} held out) into {len(report['shards'])} shards; "
              f"{len(report['unmatched'])} unmatched (see {shard_dir / '_join.json'})")
        state = Path(args.out) / STATE_FILE
        if args.resume and state.exists():
            print(f"new shards: not resuming from {state}")
            state.unlink()
    columns = load_shards(shard_dir)
    source = read_join_report(shard_dir)["source"]
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, ce_weight=args.ce_weight,
                      flow_weight=args.flow_weight, gt_weight=args.gt_weight, set_match=args.set_match,
                      set_coverage=args.set_coverage, checkpoint_every=args.checkpoint_every,
                      minutes=args.minutes, device=device)
    bar = [TextColumn(f"[bold]distil {student.name}[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
           TextColumn("{task.fields[losses]}"), TimeElapsedColumn()]
    with LineProgress(*bar) as progress:
        task = progress.add_task("distil", total=args.steps, losses="",
                                 budget_s=None if args.minutes is None else args.minutes * 60)

        def update(step, total, losses):
            progress.update(task, completed=step, losses=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))

        info = distill(select(columns, "train"), student, args.out, cfg, resume=args.resume, progress=update,
                       info_extra={"heldout_percent": args.heldout_percent, "labels": args.labels, "source": source},
                       init=args.init)
    if info["unknown_words"]:
        print(f"warning: words outside the --init tokenizer, learnt as <unk>: {' '.join(info['unknown_words'])}")
    print(f"wrote {args.out}/student.safetensors after {info['steps_done']} steps on {info['clips']} clips; "
          f"losses {info['final_losses']}")
    heldout = select(columns, "heldout")
    if args.eval_clips and len(heldout["clip_id"]):
        heldout = {k: v[: args.eval_clips] for k, v in heldout.items()}
        scales = [float(x) for x in args.noise_scales.split(",")]
        metrics = [heldout_metrics(args.out, heldout, args.samples, device, noise_scale=x) for x in scales]
        for m in metrics:
            print(f"held-out clips, noise scale {m['noise_scale']}:", json.dumps(m))
        best = choose_noise_scale(metrics, args.max_ade_ratio)
        by_domain = {}
        for domain in sorted(set(heldout.get("domain", ["jpeg"]))):
            part = select(heldout, "heldout", domain)
            by_domain[domain] = heldout_metrics(args.out, part, args.samples, device, noise_scale=best)
            print(f"held-out {domain} clips:", json.dumps(by_domain[domain]))
        path = Path(args.out, "student.json")
        path.write_text(json.dumps({**json.loads(path.read_text()), "heldout_metrics": metrics,
                                    "heldout_metrics_by_domain": by_domain, "sampling": {"noise_scale": best}}, indent=1))
        print(f"sampling noise scale {best} (written into {path})")
    return 0


def choose_noise_scale(metrics: list[dict], max_ade_ratio: float) -> float:
    """The noise scale of the best held-out meta-action agreement among those whose minADE to
    the truth stays within `max_ade_ratio` x the teacher's (ties: the larger scale); 1.0 when
    none does."""
    ok = [m for m in metrics if m.get("min_ade_gt_ratio", 0.0) <= max_ade_ratio]
    if not ok:
        return 1.0
    return max(ok, key=lambda m: (m["student"]["meta_agree"], m["noise_scale"]))["noise_scale"]
