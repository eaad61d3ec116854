"""The pipeline benchmark's memory figure is the child's own peak, not its parent's."""

from benchmarks.pipeline import run_cli


def test_child_peak_is_its_own_not_the_parents():
    ballast = bytearray(600 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: 600 MiB resident here
    wall, peak = run_cli(["--help"])
    assert wall > 0
    assert 10 < peak < 300  # a CLI start-up, far below the 600 MiB its parent holds
    del ballast


def test_bare_teacher_batches_hold_every_clip_once_in_batches(tmp_path):
    """The bare teacher's batches are built one at a time from the Parquet files: every clip
    once, as read_table has it, in batches of the size asked for (the last one shorter)."""
    from benchmarks.pipeline import clip_batches
    from tests.datasets import clip_row, write_dataset
    from transforms.parquet import read_table

    clips = [clip_row(f"log-{v}", 1_000_000 * (i + 7), vehicle_id=f"veh-{v:03d}")
             for v in range(2) for i in range(18 + v)]
    write_dataset(tmp_path, clips=clips)
    batches = list(clip_batches(tmp_path, 16))
    assert [len(b) for b in batches] == [16, 16, 5]
    rows = [row for b in batches for row in b]
    assert sorted(rows, key=lambda r: r["clip_id"]) == sorted(read_table(str(tmp_path), "clips").to_pylist(),
                                                              key=lambda r: r["clip_id"])
