"""`coclabel label --follow` on the local runner: landing detection, and two logs dropped 10 s
apart each labelled once while the command keeps running, then a clean stop."""

import sys
import time

import pytest

from pipelines.cli import main
from pipelines.follow import LandedLogs
from tests.infra.fleet import synth
from tests.infra.follow_run import follow_process, land, stop
from transforms.parquet import read_table

SECONDS = 8
OPTIONS = ["--quiet", "--block-s", "3", "--samples", "2"]


def test_a_log_lands_once_its_size_holds_and_is_returned_once(tmp_path):
    watcher = LandedLogs(str(tmp_path / "incoming"))
    assert watcher.poll() == []  # no folder yet: nothing, no error
    log = tmp_path / "incoming" / "veh-000" / "a.mcap"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"x" * 10)
    assert watcher.poll() == []  # first sight
    log.write_bytes(b"x" * 20)
    assert watcher.poll() == []  # still growing
    (tmp_path / "incoming" / "notes.txt").write_text("not a log")
    assert watcher.poll() == [str(log)]
    assert watcher.poll() == [str(log)]  # landed until marked done
    watcher.done(str(log))
    assert watcher.poll() == []
    other = log.with_name("b.mcap")
    other.write_bytes(b"y")
    assert watcher.poll() == []
    assert watcher.poll() == [str(other)]


def test_follow_needs_a_positive_poll(tmp_path, capsys):
    assert main(["label", "--follow", "--poll-s", "0", "--logs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--poll-s must be positive" in capsys.readouterr().err


def test_follow_for_stops_by_itself_when_nothing_lands(tmp_path, capsys):
    started = time.monotonic()
    assert main(["label", "--follow", "--poll-s", "0.2", "--follow-for", "1", "--logs", str(tmp_path),
                 "--out", str(tmp_path / "out")]) == 0
    assert 1 <= time.monotonic() - started < 5
    assert "0 log(s) labelled" in capsys.readouterr().out


@pytest.fixture(scope="module")
def fleet_and_reference(tmp_path_factory):
    fleet, reference = tmp_path_factory.mktemp("fleet"), tmp_path_factory.mktemp("reference")
    synth(fleet, SECONDS)
    assert main(["label", "--logs", str(fleet), "--out", str(reference), *OPTIONS]) == 0
    return fleet, reference


def labels(out):
    return sorted(read_table(str(out), "labels").to_pylist(), key=lambda r: r["clip_id"])


@pytest.mark.slow
def test_follow_labels_two_logs_dropped_10_s_apart_once_each(fleet_and_reference, tmp_path):
    fleet, reference = fleet_and_reference
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    command = [sys.executable, "-m", "pipelines.cli", "label", "--follow", "--poll-s", "1",
               "--logs", str(incoming), "--out", str(out), *OPTIONS]
    with follow_process(command) as proc:
        for i, log in enumerate(sorted(fleet.glob("veh-*/*.mcap"))):
            if i:
                time.sleep(10)
            land(log, incoming)
        deadline = time.time() + 600  # generous: the machine may be shared
        while time.time() < deadline and len({r["log_id"] for r in labels(out)}) < 2:
            time.sleep(0.5)
        assert len({r["log_id"] for r in labels(out)}) == 2, "both logs not labelled in 600 s"
        output = stop(proc)
    assert proc.returncode == 0, output
    assert output.count("follow: labelling") == 2 and "2 log(s) labelled" in output
    assert labels(out) == labels(reference)  # every window of both logs, once
    assert (out / "_SUCCESS").exists()
