"""The `coclabel` command. Each sub-command lives in its own module of `pipelines/` with
`configure(parser)` (cheap: no heavy imports) and `run(args, beam_args) -> int`."""

import argparse
import importlib
import sys

# name -> (module, one-line help, accepts Beam pipeline options)
COMMANDS = {
    "synth": ("pipelines.synth", "write a synthetic fleet of MCAP or PhysicalAI-AV logs", False),
    "clips": ("pipelines.clips", "window logs into 1.6 s multi-camera clips (clips/, quarantine/)", True),
    "label": ("pipelines.label", "label logs with the teacher into a partitioned Parquet dataset", True),
    "report": ("pipelines.report", "data-quality report (Great Expectations + HTML) of a dataset", False),
    "query": ("pipelines.query", "read-only DuckDB SQL over a dataset", False),
    "teacher": ("pipelines.teacher", "train or evaluate the tiny teacher on the synthetic fleet", False),
    "distill": ("pipelines.distill", "distil a student from a labelled dataset", True),
    "bench": ("pipelines.bench", "benchmark students and the teacher", False),
    "demo": ("pipelines.demo", "synth -> label -> report -> query on the embedded defaults", False),
}

EPILOG = """examples:
  coclabel synth --out /tmp/fleet --format mcap --vehicles 2 --minutes 1 --seed 0
  coclabel label --logs /tmp/fleet --out /tmp/dataset
  coclabel query /tmp/dataset "SELECT count(*) FROM labels"
  coclabel demo --out out/demo
Run `coclabel COMMAND --help` for a command's options."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported and its options configured."""
    parser = argparse.ArgumentParser(
        prog="coclabel",
        description="Label fleet driving logs with a reasoning teacher (Chain-of-Causation + 6.4 s trajectory).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text, beam) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="Any other --option is passed to Apache Beam (e.g. --runner FlinkRunner)." if beam else None,
        )
        mod.configure(p)
        p.set_defaults(_module=mod, _beam=beam)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra and not args._beam:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args._module.run(args, extra) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
