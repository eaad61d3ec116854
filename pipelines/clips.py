"""Window fleet logs into 1.6 s multi-camera clips (the teacher's input, REFERENCE.md section 1)
without running the teacher: writes clips/ and quarantine/ as Hive partitions
date=YYYY-MM-DD/vehicle_id=V/, one file per block of a log, then _manifest.json and _SUCCESS.

--logs is searched recursively for .mcap files, rosbag2 folders and PhysicalAI-AV roots. Every
t0 (a multiple of --stride-s in log time, with 1.6 s of log before it) ends as one clips row or
one quarantine row with a reason code; a log that cannot be read is one quarantine row. A rerun
into the same --out replaces the same files.

examples:
  coclabel clips --logs /data/fleet --out /data/clips
  coclabel clips --logs gs://bucket/logs --out gs://bucket/clips --stride-s 1.0 --block-s 120
  coclabel clips --logs /data/bags --out /tmp/clips --topic-map topics.yaml --direct_num_workers 2
"""

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from pipelines.label import configure as configure_logs

    configure_logs(parser, teacher=False)


def build(p, args, log_uris: list[str], topic_map):
    """Add the clips pipeline to `p`; returns the PCollection of (table, path, rows) written."""
    import apache_beam as beam

    from pipelines.label import write_clip_blocks
    from transforms.parquet import WriteBlocks, block_stem
    from transforms.read_clips import ReadClips

    stride_us, block_us = round(args.stride_s * 1e6), round(args.block_s * 1e6)
    blocks = p | "ReadClips" >> ReadClips(log_uris, stride_us, block_us, topic_map)
    clip_files = write_clip_blocks(blocks, args.out)
    quarantine_files = (
        blocks
        | "QuarantineRows" >> beam.Map(lambda b: (block_stem(b.info.log_id, b.block_start_us), b.quarantine))
        | "WriteQuarantine" >> beam.ParDo(WriteBlocks(args.out, "quarantine"))
    )
    return (clip_files, quarantine_files) | "Written" >> beam.Flatten()


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    import sys

    from pipelines.run import execute

    stride_us, block_us = round(args.stride_s * 1e6), round(args.block_s * 1e6)
    if stride_us <= 0 or block_us <= 0 or block_us % stride_us:
        print(f"error: --stride-s ({args.stride_s}) and --block-s ({args.block_s}) must be positive, "
              "and --block-s a multiple of --stride-s", file=sys.stderr)
        return 2
    return execute(args, beam_args, build, tables=("clips", "quarantine"), title="clips")
