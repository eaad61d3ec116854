import json

import pytest

from pipelines import query
from schemas.views import open_dataset
from tests import datasets as d
from tests.datasets import assert_examples_match


@pytest.fixture()
def dataset(tmp_path):
    labels = [
        d.label_row("log-a", 2_000_000, [d.sample("Stop since the light is red.", 5, -2, "stop"),
                                         d.sample("Go on, the light is red.", 8, 0.5, "keep_speed")], spread=0.4),
        d.label_row("log-a", 2_500_000, [d.sample("Keep speed on the clear road.", 10, 0, "keep_speed")], spread=2.5),
        d.label_row("log-b", 2_000_000, [d.sample("Red light ahead, accelerate.", 6, 1.5, "accelerate")],
                    vehicle_id="veh-001", spread=1.0),
    ]
    clips = [d.clip_row("log-a", 2_000_000, luma=30.0), d.clip_row("log-a", 2_500_000, luma=20.0),
             d.clip_row("log-b", 2_000_000, vehicle_id="veh-001", luma=140.0)]
    quarantine = [d.quarantine_row("log-a", 3_000_000, "camera_stale", "clips"),
                  d.quarantine_row("log-a", 3_500_000, "camera_stale", "clips"),
                  d.quarantine_row("log-b", None, "log_unreadable", "read", vehicle_id="veh-001")]
    d.write_dataset(tmp_path, clips, labels, quarantine)
    return tmp_path, labels, clips, quarantine


def test_views_expose_samples_and_waypoints(dataset):
    root, labels, _, _ = dataset
    con = open_dataset(str(root))
    assert query.run_query(con, "SELECT count(*) AS n FROM samples").to_pylist() == [{"n": 4}]
    assert query.run_query(con, "SELECT count(*) AS n FROM waypoints").to_pylist() == [{"n": 4 * 64}]
    row = query.run_query(con, "SELECT x, t_s FROM waypoints WHERE clip_id = '%s' AND sample_index = 0 "
                               "AND step = 9" % labels[1]["clip_id"]).to_pylist()[0]
    assert row["x"] == pytest.approx(10.0, abs=1e-5) and row["t_s"] == pytest.approx(1.0)
    described = query.run_query(con, "DESCRIBE SELECT * FROM labels").to_pylist()
    types = {r["column_name"]: r["column_type"] for r in described}
    assert types["date"] == "VARCHAR" and types["t0_us"] == "BIGINT"


def test_examples_return_what_they_promise(dataset):
    root, labels, clips, quarantine = dataset
    red, night, by_reason, mix = assert_examples_match(open_dataset(str(root)), labels, clips, quarantine)
    assert (len(red), len(night), len(by_reason), len(mix)) == (2, 2, 2, 3)


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO '/tmp/coclabel-escape.csv'",
    "CREATE TABLE t AS SELECT 1",
    "ATTACH '/tmp/coclabel-escape.duckdb'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access=true",
    "PRAGMA version",
    "SELECT 1; SELECT 2",
])
def test_writes_and_state_changes_are_refused(dataset, sql):
    con = open_dataset(str(dataset[0]))
    with pytest.raises(query.QueryRefused):
        query.run_query(con, sql)


def test_reads_outside_the_dataset_are_blocked(dataset, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.csv"
    outside.write_text("a\n1\n")
    con = open_dataset(str(dataset[0]))
    with pytest.raises(Exception, match="(?i)permission|disabled"):
        query.run_query(con, f"SELECT * FROM read_csv('{outside}')")


def test_empty_tables_are_queryable(tmp_path):
    d.write_dataset(tmp_path, labels=[d.label_row("log-a", 2_000_000, [d.sample("Keep speed.", 5, 0, "keep_speed")])])
    con = open_dataset(str(tmp_path))
    assert query.run_query(con, "SELECT count(*) AS n FROM quarantine").to_pylist() == [{"n": 0}]


def test_memory_filesystem(dataset):
    import fsspec

    root, labels, clips, quarantine = dataset
    mem = fsspec.filesystem("memory")
    for path in root.rglob("*.parquet"):
        mem.pipe(f"/ds/{path.relative_to(root)}", path.read_bytes())
    con = open_dataset("memory://ds")
    assert query.run_query(con, "SELECT count(*) AS n FROM labels").to_pylist() == [{"n": 3}]


def test_cli_formats(dataset, capsys, tmp_path):
    from pipelines.cli import main

    root = str(dataset[0])
    assert main(["query", root, "SELECT vehicle_id, count(*) AS n FROM labels GROUP BY 1 ORDER BY 1", "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"vehicle_id": "veh-000", "n": 2}, {"vehicle_id": "veh-001", "n": 1}]
    assert main(["query", root, "DROP VIEW labels"]) == 2
    assert "read-only" in capsys.readouterr().err
    out = tmp_path / "r.parquet"
    assert main(["query", root, "SELECT clip_id FROM clips", "--format", "parquet", "--out", str(out)]) == 0
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 3
