"""The pipeline benchmark's memory figure is the child's own peak, not its parent's."""

from benchmarks.pipeline import run_cli


def test_child_peak_is_its_own_not_the_parents():
    ballast = bytearray(600 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: 600 MiB resident here
    wall, peak = run_cli(["--help"])
    assert wall > 0
    assert 10 < peak < 300  # a CLI start-up, far below the 600 MiB its parent holds
    del ballast
