"""Credentials in URLs (user:password@, tokens and signatures in the query) are never printed,
logged or written to the run manifest."""

import logging

import fsspec
import pytest

from pipelines.cli import main
from transforms.redact import redact
from tests.fakes import analytic_drive
from tests.faults.logs import random_teacher, write_log
from tests.transforms.clip_messages import drive_messages

SECRET = "s3cr3t-Tok3n"


@pytest.mark.parametrize("url, expected", [
    (f"gs://alice:{SECRET}@bucket/logs", "gs://***@bucket/logs"),
    (f"--temp_location=gs://alice:{SECRET}@bucket/tmp", "--temp_location=gs://***@bucket/tmp"),
    (f"https://host/a.mcap?X-Goog-Signature={SECRET}&alt=media", "https://host/a.mcap?X-Goog-Signature=***&alt=media"),
    (f"https://acct.blob/c/x?sv=2024&sig={SECRET}&se=1", "https://acct.blob/c/x?sv=2024&sig=***&se=1"),
    (f"s3://bucket/key?token={SECRET}#frag", "s3://bucket/key?token=***#frag"),
    (f"https://api/x?api_key={SECRET}", "https://api/x?api_key=***"),
    ("/data/fleet/veh-000/drive.mcap", "/data/fleet/veh-000/drive.mcap"),
    ("gs://bucket/logs?generation=7", "gs://bucket/logs?generation=7"),
])
def test_redact(url, expected):
    assert redact(url) == expected


@pytest.fixture(scope="module")
def memory_fleet(tmp_path_factory):
    """One 3 s log at memory://alice:SECRET@fleet/... (a URL with credentials)."""
    path = write_log(tmp_path_factory.mktemp("log") / "drive.mcap", drive_messages(analytic_drive("circle", 3.0)))
    fsspec.filesystem("memory").pipe_file(f"memory://alice:{SECRET}@fleet/veh-000/drive.mcap", path.read_bytes())
    return f"memory://alice:{SECRET}@fleet"


def test_a_run_with_credentials_never_shows_them(memory_fleet, tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO)  # (at DEBUG the memory filesystem echoes its paths, which hold them)
    out = tmp_path / "out"
    teacher = random_teacher(tmp_path / "teacher")
    assert main(["label", "--logs", memory_fleet, "--out", str(out), "--teacher", teacher, "--samples", "1",
                 f"--temp_location=gs://alice:{SECRET}@bucket/tmp"]) == 0
    manifest = (out / "_manifest.json").read_text()
    console = capfd.readouterr()
    assert SECRET not in manifest
    assert SECRET not in console.out + console.err
    assert SECRET not in caplog.text
    assert '"memory://***@fleet"' in manifest and "gs://***@bucket/tmp" in manifest
    assert "windows" in console.out  # the summary was printed


def test_errors_name_the_input_without_its_credentials(capfd):
    assert main(["label", "--logs", f"memory://bob:{SECRET}@nowhere/logs", "--out", "memory://out-creds",
                 "--quiet"]) == 2
    err = capfd.readouterr().err
    assert SECRET not in err and "memory://***@nowhere/logs" in err


def test_clip_and_quarantine_rows_never_store_credentials():
    from schemas.reasons import Reason
    from transforms.clips import quarantine_row
    from transforms.sources.base import LogInfo

    info = LogInfo("gs://fleet:hunter2@bucket/log.mcap?X-Goog-Signature=abc", "log", "veh", "2026-01-01", 0, 0)
    row = quarantine_row(info, None, Reason.LOG_EMPTY, "no poses")
    assert row["source_uri"] == "gs://***@bucket/log.mcap?X-Goog-Signature=***"
