"""The pipeline benchmark: the child's own peak memory, the bare teacher's batches, the summary rows."""

import statistics

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


def test_the_marginal_ratio_takes_the_start_up_out():
    from benchmarks.pipeline import summarise

    def run(repeat, scale, clips, seconds, teacher):
        return {"repeat": repeat, "scale": scale, "clips": clips, "pipeline_s": seconds,
                "pipeline_clips_per_s": clips / seconds, "teacher_clips_per_s": teacher,
                "ratio": clips / seconds / teacher, "peak_rss_mib": 1000.0 + scale, "teacher_peak_rss_mib": 900.0}

    # 2 s of start-up, then 40 ms a clip (25 clips/s) against a 30 clips/s teacher: the marginal ratio
    # is 25 / 30, the whole runs' ratios (0.55, 0.66) carry the start-up. The second repeat ran on a
    # machine slowed by a fifth (both sides, 20 clips/s against 24): its marginal ratio is the same.
    runs = [run(0, 1, 100, 6.0, 30.0), run(0, 2, 200, 10.0, 30.0), run(1, 1, 100, 7.0, 24.0), run(1, 2, 200, 12.0, 24.0),
            run(2, 1, 100, 6.0, 30.0), run(2, 2, 200, 9.0, 30.0)]
    first, second = summarise(runs, [1, 2])
    assert first["pipeline_s"] == 6.0 and "marginal_ratio" not in first
    assert second["marginal_ratios"] == [0.833, 0.833, 1.111] and second["marginal_ratio"] == 0.833
    assert second["ratio"] == round(statistics.median([200 / 10.0 / 30, 200 / 12.0 / 24, 200 / 9.0 / 30]), 3)
    assert second["memory_vs_first"] == round(1002 / 1001, 3) and second["s_per_clip_vs_first"] == round(10.0 / 200 / (6.0 / 100), 3)
