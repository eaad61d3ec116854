"""Label fleet logs with the teacher: logs -> 1.6 s clips -> teacher (K reasoning + trajectory
samples per clip) -> checks -> a partitioned Parquet dataset (clips/, labels/, quarantine/,
_manifest.json, _SUCCESS). Every clip window ends in labels/ or quarantine/; a rerun into the
same output replaces files and never duplicates rows.

examples:
  coclabel label --logs /data/fleet --out /data/labelled
  coclabel label --logs gs://bucket/logs --out gs://bucket/labelled --samples 6 --report
  coclabel label --logs /data/fleet --out /tmp/ds --direct_num_workers 2 --direct_running_mode multi_processing
  coclabel label --logs /data/fleet --out /tmp/ds --teacher alpamayo-r1:/models/Alpamayo-R1-10B --device cuda
  coclabel label --follow --logs /data/incoming --out /data/labelled   (label each new log as it lands)
  coclabel label --logs /data/fleet --out /tmp/ds --runner FlinkRunner --flink_master localhost:8081 \
    --flink_version 1.19 --flink_job_server_jar JAR --environment_type EXTERNAL \
    --environment_config localhost:50000 --parallelism 2   (after `make flink-up`; docs/ENGINES.md)
"""

import argparse


def configure(parser: argparse.ArgumentParser, teacher: bool = True) -> None:
    parser.add_argument("--logs", required=True, help="log file, folder (searched recursively) or fsspec URL")
    parser.add_argument("--out", required=True, help="dataset root (path or fsspec URL)")
    parser.add_argument("--stride-s", type=float, default=0.5, help="seconds between clip t0s (default 0.5)")
    parser.add_argument("--block-s", type=float, default=60.0,
                        help="seconds of t0 per work unit and output file (default 60)")
    parser.add_argument("--topic-map", help="JSON/YAML topic map for MCAP logs (default: DESIGN.md topics)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if not teacher:
        return
    parser.add_argument("--teacher", default="tiny",
                        help="'tiny' (bundled) or 'alpamayo-r1:PATH' (needs the alpamayo_r1 package and a GPU)")
    parser.add_argument("--samples", type=int, default=6, help="reasoning + trajectory samples per clip (default 6)")
    parser.add_argument("--device", default="cpu", help="teacher device: cpu or cuda[:N] (default cpu)")
    parser.add_argument("--batch-size", type=int, default=16, help="largest teacher batch (default 16)")
    parser.add_argument("--min-batch-size", type=int,
                        help="smallest teacher batch (default: --batch-size, so that a teacher padding its "
                             "batches to a fixed shape never computes padding but at the end of a bundle)")
    parser.add_argument("--large-model", action="store_true",
                        help="share one teacher across a worker's processes (big teachers)")
    parser.add_argument("--accelerator",
                        help="Beam resource hint for the inference step only, e.g. "
                             "'type:nvidia-l4;count:1;install-nvidia-driver' on Dataflow")
    parser.add_argument("--reject-comfort", action="store_true",
                        help="comfort-bound violations quarantine a clip (default: recorded as flags)")
    parser.add_argument("--report", action="store_true", help="run `coclabel report` on the dataset at the end")
    parser.add_argument("--fail-on", choices=("never", "critical", "warning"), default="never",
                        help="with --report: exit 1 when an expectation of this severity fails")
    from pipelines.follow import configure as configure_follow

    configure_follow(parser)


def build(p, args, sources, topic_map):
    """Add the label pipeline to `p` over `sources` (log URIs or planned BlockTasks, as
    `ReadClips` takes them); returns the PCollection of (table, path, rows) written."""
    import apache_beam as beam

    from transforms.clips import block_key
    from transforms.inference import TeacherInference, TeacherModelHandler, teacher_decoder
    from transforms.parquet import WriteGroupedRows, block_stem
    from transforms.read_clips import ReadClips
    from transforms.validate import CheckConfig, ValidateLabels

    stride_us, block_us = round(args.stride_s * 1e6), round(args.block_s * 1e6)
    blocks = p | "ReadClips" >> ReadClips(sources, stride_us, block_us, topic_map,
                                          decode=teacher_decoder(args.teacher))
    clip_files = write_clip_blocks(blocks, args.out)
    handler = TeacherModelHandler(
        args.teacher, args.samples, args.device, max_batch_size=args.batch_size, large_model=args.large_model,
        min_batch_size=args.batch_size if args.min_batch_size is None else args.min_batch_size)
    results = (blocks
               | "Clips" >> beam.FlatMap(lambda block: block.clips)
               | "Teacher" >> TeacherInference(handler, args.accelerator))
    checked = results | "Validate" >> beam.ParDo(
        ValidateLabels(CheckConfig(reject_comfort=args.reject_comfort))).with_outputs(
        ValidateLabels.QUARANTINE, main="labels")

    def stem(row):
        return block_stem(*block_key(row["log_id"], row["t0_us"], block_us)), row

    label_files = (checked.labels | "KeyLabels" >> beam.Map(stem)
                   | "WriteLabels" >> WriteGroupedRows(args.out, "labels"))
    read_quarantine = blocks | "ReadQuarantine" >> beam.FlatMap(
        lambda block: [(block_stem(block.info.log_id, block.block_start_us), row) for row in block.quarantine])
    label_quarantine = checked[ValidateLabels.QUARANTINE] | "KeyQuarantine" >> beam.Map(stem)
    quarantine_files = ((read_quarantine, label_quarantine) | "AllQuarantine" >> beam.Flatten()
                        | "WriteQuarantine" >> WriteGroupedRows(args.out, "quarantine"))
    return (clip_files, label_files, quarantine_files) | "Written" >> beam.Flatten()


def write_clip_blocks(blocks, out_uri: str):
    """Each block's clips file, written where the block was assembled (image bytes never move)."""
    import apache_beam as beam

    from transforms.parquet import WriteBlocks

    return blocks | "WriteClips" >> beam.ParDo(WriteBlocks(out_uri, "clips", stem_rows=block_clip_rows))


def block_clip_rows(block) -> tuple[str, list[dict]]:
    """(file stem, clip rows) of a ClipBlock."""
    from transforms.parquet import block_stem

    return block_stem(block.info.log_id, block.block_start_us), block.clips


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.run import execute

    if args.follow:
        from pipelines.follow import run as follow

        return follow(args, beam_args)

    return execute(args, beam_args, build, tables=("labels", "quarantine"), title="label",
                   imports=("transforms.inference",))
