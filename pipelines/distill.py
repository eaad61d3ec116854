"""Distil a student from a labelled dataset: a Beam pipeline joins clips with their labels into
training shards (DIR/shards/), then a torch loop trains the student on the teacher's samples.

Shards: clips and labels are keyed by clip_id and joined (CoGroupByKey); each joined clip is
decoded at the student's image size and lands in one of --shards .npz files (by a hash of its
clip_id, rows sorted by clip_id, so reruns write identical shards). A clip without a label
(quarantined) or a label without a clip is listed in DIR/shards/_join.json, never dropped
silently. Clips are split train/heldout per 20 s block of their log (--heldout-percent).

Training (models/students/train.py): min-over-K distance to the teacher's K samples, flow
matching on them, teacher-forced cross-entropy on the teacher's reasoning, optional ground-truth
weight; AdamW with a cosine schedule, bfloat16 autocast on CUDA, a checkpoint every
--checkpoint-every steps, --resume to continue from the last one.

Output: DIR/student.safetensors, DIR/tokenizer.json, DIR/student.json, DIR/shards/.

example:
  coclabel distill --labels out/demo/dataset --student nano --out out/demo/student-nano --steps 600
"""

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", required=True, help="dataset folder or URL with clips/ and labels/ (from `coclabel label`)")
    parser.add_argument("--student", default="nano",
                        help="student configuration: nano, small, optionally -regression or -flow1 (default nano)")
    parser.add_argument("--out", required=True, help="student folder to write (weights, tokenizer, shards, checkpoints)")
    parser.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget; stops early when spent (default none)")
    parser.add_argument("--batch-size", type=int, default=32, help="clips per step (default 32)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, batching and noise (default 0)")
    parser.add_argument("--gt-weight", type=float, default=0.0, help="weight of the ground-truth loss (default 0: teacher only)")
    parser.add_argument("--ce-weight", type=float, default=1.0, help="weight of the reasoning cross-entropy (default 1)")
    parser.add_argument("--flow-weight", type=float, default=0.5, help="weight of flow matching on teacher samples (default 0.5)")
    parser.add_argument("--heldout-percent", type=int, default=20, help="share of 20 s log blocks held out (default 20)")
    parser.add_argument("--shards", type=int, default=4, help="number of training shards (default 4)")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/train_state.safetensors if present")
    parser.add_argument("--reuse-shards", action="store_true", help="skip the join when DIR/shards/ already has shards")
    parser.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")


def shard_of(clip_id: str, n: int) -> int:
    from schemas.ids import seed_of

    return seed_of(clip_id, salt=11) % n


def build_shards(labels_uri: str, out_dir: str, height: int, width: int, heldout_percent: int, n_shards: int,
                 beam_args: list[str]) -> dict:
    """The Beam join: clips x labels -> `out_dir`/shard-NNNNN.npz and `_join.json`; returns the report."""
    import json
    import typing
    from pathlib import Path

    import apache_beam as beam
    import numpy as np
    from apache_beam.options.pipeline_options import PipelineOptions

    from models.students.data import training_example, write_join_report, write_shard

    clip_columns = ["clip_id", "log_id", "t0_us", "images", "ego_history_xyz", "ego_history_rot", "ego_future_xyz", "ego_future_rot"]
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
    shards = []
    for path in sorted(Path(out_dir).glob("shard-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            shards.append({"file": path.name, "clips": len(data["clip_id"]), "heldout": int((data["split"] == "heldout").sum())})
    unmatched_path = Path(out_dir) / "unmatched.jsonl"
    unmatched = sorted(unmatched_path.read_text().splitlines()) if unmatched_path.exists() else []
    report = {"shards": shards, "clips": sum(s["clips"] for s in shards), "heldout": sum(s["heldout"] for s in shards),
              "unmatched": [json.loads(u) for u in unmatched]}
    write_join_report(out_dir, report)
    return report


def run(args, beam_args) -> int:
    from pathlib import Path

    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from models.students import student_config
    from models.students.data import load_shards, select
    from models.students.train import TrainConfig, distill

    torch.set_num_threads(args.threads)
    student = student_config(args.student)
    shard_dir = Path(args.out) / "shards"
    if not (args.reuse_shards and any(shard_dir.glob("shard-*.npz"))):
        report = build_shards(args.labels, str(shard_dir), student.image_height, student.image_width, args.heldout_percent,
                              args.shards, beam_args)
        print(f"joined {report['clips']} clips ({report['heldout']} held out) into {len(report['shards'])} shards; "
              f"{len(report['unmatched'])} unmatched (see {shard_dir / '_join.json'})")
    train = select(load_shards(shard_dir), "train")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, ce_weight=args.ce_weight,
                      flow_weight=args.flow_weight, gt_weight=args.gt_weight, checkpoint_every=args.checkpoint_every,
                      minutes=args.minutes, device=device)
    columns = [TextColumn(f"[bold]distil {student.name}[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[losses]}"), TimeElapsedColumn()]
    with Progress(*columns) as progress:
        task = progress.add_task("distil", total=args.steps, losses="")

        def update(step, total, losses):
            progress.update(task, completed=step, losses=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))

        info = distill(train, student, args.out, cfg, resume=args.resume, progress=update,
                       info_extra={"heldout_percent": args.heldout_percent, "labels": args.labels})
    print(f"wrote {args.out}/student.safetensors after {info['steps_done']} steps on {info['clips']} clips; "
          f"losses {info['final_losses']}")
    return 0
