"""The cloud path end to end on the GCS emulator: logs read from gs://, datasets written to gs://,
queried and reported from gs://, each compared with the same command on local disk."""

import json

import pytest
import torch

from models.teacher import load_teacher, save_weights
from models.tokenizer import Tokenizer
from models.vla import TinyVLA, VLAConfig
from tests.datasets import write_dataset
from tests.quality.conftest import clean_rows
from transforms.parquet import read_table

MINUTES = "0.15"  # 9 s of driving per vehicle
LOCAL_ONLY = "source_uri"  # the one column that names where the log was read from


def synth(gcs, out: str, fmt: str):
    done = gcs.coclabel("synth", "--out", out, "--format", fmt, "--vehicles", "1", "--minutes", MINUTES,
                        "--workers", "1")
    assert done.returncode == 0, done.stderr


def rows(root, table: str) -> list[dict]:
    """`table`'s rows under the local `root` without LOCAL_ONLY, sorted by window and reason."""
    found = read_table(str(root), table)
    found = found.drop_columns([c for c in found.column_names if c == LOCAL_ONLY]).to_pylist()
    return sorted(found, key=lambda r: (r["log_id"], r["t0_us"] or -1, r.get("reason", "")))


def objects(gcs, prefix: str) -> dict[str, bytes]:
    """{path relative to gs://prefix: bytes} of every object under it."""
    gcs.fs.invalidate_cache()
    return {p[len(prefix) + 1:]: gcs.fs.cat_file(p) for p in gcs.fs.find(prefix)}


def download(gcs, prefix: str, to):
    """A local copy of gs://prefix (read back with the test's own emulator client)."""
    gcs.fs.invalidate_cache()
    gcs.fs.get(prefix, str(to), recursive=True)
    return to


def local_files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def mcap_logs(gcs):
    """gs://bucket/logs: one MCAP drive written through the emulator."""
    synth(gcs, "gs://bucket/logs", "mcap")
    return "gs://bucket/logs"


@pytest.fixture(scope="session")
def teacher(tmp_path_factory):
    """The bundled tiny teacher, or while it is being retrained and does not load, a small randomly
    initialised one ('tiny:DIR'); either labels deterministically."""
    try:
        load_teacher("tiny")
        return "tiny"
    except Exception:  # any failure to load the bundled weights: missing, partial, mismatched
        torch.manual_seed(0)
    out = tmp_path_factory.mktemp("teacher")
    tokenizer = Tokenizer.fit(["stop since the light is red", "keep speed since the road is clear"])
    save_weights(TinyVLA(VLAConfig(vocab_size=len(tokenizer), d_model=32, n_decoder_layers=1,
                                   n_expert_layers=1, max_text_len=8)), tokenizer, out)
    return f"tiny:{out}"


def test_synth_writes_the_same_bytes_to_gcs_as_to_disk(gcs, mcap_logs, tmp_path):
    synth(gcs, str(tmp_path), "mcap")
    written = objects(gcs, "bucket/logs")
    assert sorted(written) == ["veh-000/veh-000-1767254400.mcap", "veh-000/veh-000-1767254400.truth.json"]
    assert written == local_files(tmp_path)


@pytest.mark.slow
def test_labels_from_gcs_equal_labels_from_disk(gcs, mcap_logs, teacher, tmp_path):
    download(gcs, "bucket/logs", tmp_path / "logs")
    options = ["--teacher", teacher, "--samples", "2", "--quiet"]
    remote = gcs.coclabel("label", "--logs", mcap_logs, "--out", "gs://bucket/ds", *options)
    assert remote.returncode == 0, remote.stderr
    local = gcs.coclabel("label", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "ds"), *options)
    assert local.returncode == 0, local.stderr

    written = download(gcs, "bucket/ds", tmp_path / "from-gcs")
    for table in ("clips", "labels", "quarantine"):
        assert rows(written, table) == rows(tmp_path / "ds", table)
    labels, quarantine = rows(written, "labels"), rows(written, "quarantine")
    # 9 s of log, t0 every 0.5 s from 2.0 s (1.6 s of history first): 15 windows, each labelled
    # or quarantined (the random fallback teacher's trajectories break the physical bounds)
    windows = [r["clip_id"] for r in labels + quarantine]
    assert len(windows) == len(set(windows)) == 15
    assert all(len(r["samples"]) == 2 for r in labels)

    manifest_text = gcs.fs.cat_file("bucket/ds/_manifest.json").decode()
    manifest = json.loads(manifest_text)
    local_manifest = json.loads((tmp_path / "ds" / "_manifest.json").read_text())
    assert manifest["inputs"] == [mcap_logs]
    assert manifest["counts"] == local_manifest["counts"]
    assert manifest["counts"]["windows"] == 15
    assert gcs.fs.cat_file("bucket/ds/_SUCCESS").decode().strip() == manifest["run_id"]
    for secret in ("token", "anon", "credential", "STORAGE_EMULATOR_HOST", gcs.endpoint):
        assert secret.lower() not in manifest_text.lower()

    counted = gcs.coclabel("query", "gs://bucket/ds", "SELECT count(*) AS n FROM labels", "--format", "csv")
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split() == ['"n"', str(len(labels))]


@pytest.fixture(scope="session")
def built_dataset(gcs, tmp_path_factory):
    """gs://bucket/built: a hand-built dataset (tests/quality) of 6 labels, 6 clips, 1 quarantine row."""
    local = tmp_path_factory.mktemp("built")
    write_dataset(local, *clean_rows())
    gcs.fs.put(f"{local}/", "bucket/built/", recursive=True)
    assert sorted(objects(gcs, "bucket/built")) == sorted(local_files(local))
    return "gs://bucket/built"


def test_query_reads_gcs_and_refuses_copy(gcs, built_dataset):
    counted = gcs.coclabel("query", built_dataset, "SELECT count(*) AS n FROM labels", "--format", "csv")
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split() == ['"n"', "6"]
    copy = gcs.coclabel("query", built_dataset,
                        "COPY (SELECT * FROM labels) TO 'gs://bucket/built/stolen.csv'")
    assert copy.returncode != 0
    assert "refused" in copy.stderr
    gcs.fs.invalidate_cache()
    assert not gcs.fs.exists("bucket/built/stolen.csv")


def report(gcs, dataset: str) -> list[str]:
    """Run `coclabel report DATASET`; the objects then under DATASET/_quality/."""
    done = gcs.coclabel("report", dataset)
    assert done.returncode == 0, done.stderr
    assert f"report: {dataset}/_quality/index.html" in done.stdout
    return sorted(objects(gcs, f"{dataset.removeprefix('gs://')}/_quality"))


@pytest.fixture(scope="session")
def reported(gcs, built_dataset):
    return report(gcs, built_dataset)


def test_report_writes_its_html_to_gcs(gcs, reported):
    page = gcs.fs.cat_file("bucket/built/_quality/index.html").decode()
    assert "coclabel quality report: bucket/built" in page
    assert "Keep speed since the road ahead is clear." in page  # a reasoning text of the gallery
    assert "index.html" in reported and "gx/index.html" in reported  # the page and the Data Docs


@pytest.mark.slow
def test_report_rerun_replaces_the_report_in_place(gcs, built_dataset, reported):
    again = report(gcs, built_dataset)
    added = sorted(set(again) - set(reported))
    assert set(reported) <= set(again)
    # only the new validation results of the Data Docs' history (as on local disk); no nested _quality/
    assert added and all(p.startswith("gx/validations/") for p in added)


def test_pai_fleet_on_gcs_gives_the_clips_of_its_local_copy(gcs, tmp_path):
    synth(gcs, "gs://bucket/pai", "pai")
    download(gcs, "bucket/pai", tmp_path / "pai")
    remote = gcs.coclabel("clips", "--logs", "gs://bucket/pai", "--out", "gs://bucket/pai-clips", "--quiet")
    assert remote.returncode == 0, remote.stderr
    local = gcs.coclabel("clips", "--logs", str(tmp_path / "pai"), "--out", str(tmp_path / "clips"), "--quiet")
    assert local.returncode == 0, local.stderr

    written = download(gcs, "bucket/pai-clips", tmp_path / "from-gcs")
    clips = rows(written, "clips")
    assert clips == rows(tmp_path / "clips", "clips")
    assert rows(written, "quarantine") == rows(tmp_path / "clips", "quarantine")
    assert len(clips) == 15 and len({c["clip_id"] for c in clips}) == 15
    assert all(len(c["images"]) == 16 for c in clips)
    assert set(read_table(str(written), "clips").column("source_uri").to_pylist()) == {"gs://bucket/pai"}
