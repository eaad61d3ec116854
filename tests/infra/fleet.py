"""A small synthetic fleet for the engine tests."""

import subprocess
import sys


def synth(root, seconds: float = 8) -> None:
    """Two clean MCAP drives of `seconds` each, one per vehicle, under `root`.

    In a subprocess: once Beam's multi_process_shared is imported (RunInference does), it
    replaces multiprocessing.managers.AutoProxy and the synthesizer's spawned Manager can no
    longer start in this process.
    """
    subprocess.run([sys.executable, "-m", "pipelines.cli", "synth", "--out", str(root), "--format", "mcap",
                    "--vehicles", "2", "--minutes", str(seconds / 60), "--workers", "1"],
                   check=True, capture_output=True)
