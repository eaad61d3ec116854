"""Data-quality report of a labelled dataset: runs the expectation suites of schemas/expectations.py
with Great Expectations (Data Docs in DATASET/_quality/gx/) and writes a self-contained
DATASET/_quality/index.html (summary, distributions, a gallery of clips with the 4 cameras, the
teacher's trajectories against the driven future, and the reasoning texts).

examples:
  coclabel report out/demo
  coclabel report gs://bucket/dataset --fail-on critical     # for scheduled jobs
"""

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset root written by `coclabel label` (path or fsspec URL)")
    parser.add_argument("--fail-on", choices=("never", "critical", "warning"), default="never",
                        help="exit 1 when an expectation of this severity (or worse) fails (default never)")
    parser.add_argument("--max-age-days", type=int, default=365,
                        help="freshness: partitions older than this many days warn (default 365; -1 disables)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from transforms.quality import build_report

    report = build_report(args.dataset, None if args.max_age_days < 0 else args.max_age_days)
    failed = [o for o in report.outcomes if not o.success]
    print(f"report: {report.index_html} ({len(report.outcomes) - len(failed)} expectations passed, "
          f"{len(failed)} failed, {report.seconds:.1f} s)")
    for o in failed:
        print(f"  {o.expectation.severity:8s} {o.table}.{o.expectation.kwargs.get('column', '')} "
              f"{o.expectation.type}: {o.observed}", file=sys.stderr)
    if args.fail_on != "never" and report.failed(args.fail_on):
        return 1
    return 0
