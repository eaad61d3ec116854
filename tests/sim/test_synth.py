import hashlib

import pytest

from pipelines.cli import main


def digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["mcap", "pai"])
def test_same_seed_writes_byte_identical_fleets(tmp_path, fmt):
    argv = ["synth", "--format", fmt, "--vehicles", "2", "--minutes", "0.05", "--workers", "1"]
    assert main([*argv, "--seed", "7", "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--seed", "7", "--out", str(tmp_path / "b")]) == 0
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b
    logs = [name for name in a if name.endswith(".mcap")] if fmt == "mcap" else \
        [name for name in a if name.endswith(".zip")]
    truth = [name for name in a if name.endswith(".truth.json")]
    assert len(truth) == 2 and len(logs) == (2 if fmt == "mcap" else 5)  # pai: 4 camera zips + egomotion
    assert main([*argv, "--seed", "8", "--out", str(tmp_path / "c")]) == 0
    assert digests(tmp_path / "c") != a


def test_bad_arguments_are_explained(capsys):
    with pytest.raises(SystemExit, match="unknown camera"):
        main(["synth", "--out", "/tmp/x", "--cameras", "camera_roof"])
    with pytest.raises(SystemExit, match="HEIGHTxWIDTH"):
        main(["synth", "--out", "/tmp/x", "--resolution", "big"])


def test_synth_runs_in_a_process_that_imported_beams_shared_models(tmp_path):
    """RunInference imports multi_process_shared, which patches multiprocessing's AutoProxy; the
    synth workers must not depend on a Manager's proxies."""
    import apache_beam.utils.multi_process_shared  # noqa: F401

    assert main(["synth", "--out", str(tmp_path), "--format", "mcap", "--vehicles", "2", "--minutes", "0.05"]) == 0
    assert len(list(tmp_path.rglob("*.mcap"))) == 2
