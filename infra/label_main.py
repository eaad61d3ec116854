"""`coclabel label` as a Python file, for launchers that run a file (the Dataflow Flex Template,
Airflow's Beam operators): options arrive as `--name=value` arguments and go to `coclabel
label` unchanged; the ones it does not know (--runner, --project, --sdk_container_image, ...)
go to Beam."""

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
