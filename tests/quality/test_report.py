import numpy as np

from pipelines.cli import main
from tests import datasets as d
from tests.quality.conftest import clean_rows
from transforms.quality import build_report


def failed(report):
    return {(o.table, o.expectation.type, o.expectation.kwargs.get("column")) for o in report.outcomes if not o.success}


def test_clean_dataset_passes_and_writes_the_page(clean_dataset):
    report = build_report(str(clean_dataset), today="2026-02-01")
    assert failed(report) == set()
    assert len(report.outcomes) == 25
    page = (clean_dataset / "_quality" / "index.html").read_text()
    assert page.count('src="data:image/jpeg;base64,') == 4 + 3 + 3  # gallery, worst ADE, worst spread
    assert page.count('src="data:image/png;base64,') >= 2 + 10  # distributions + bird's-eye plots
    assert (clean_dataset / "_quality" / "gx" / "index.html").exists()
    assert 'href="gx/validations/labels/' in page
    assert main(["report", str(clean_dataset), "--fail-on", "critical"]) == 0


def test_planted_faults_fail_their_expectations(tmp_path):
    clips, labels, quarantine = clean_rows()
    labels[0]["samples"][0]["traj_xyz"][10][0] = float("nan")  # a NaN
    labels[1]["clip_id"] = labels[2]["clip_id"]  # a duplicated clip_id
    t = np.arange(1, 65) * 0.1  # a tight circle: curvature 0.5 1/m at 8 m/s
    circle = np.stack([2 * np.sin(4 * t), 2 * (1 - np.cos(4 * t)), 0 * t], -1)
    labels[3]["samples"][1]["traj_xyz"] = circle.tolist()
    labels[3]["samples"][1]["traj_yaw"] = (4 * t).tolist()
    d.write_dataset(tmp_path, clips, labels, quarantine)
    report = build_report(str(tmp_path), today="2026-02-01")
    assert failed(report) == {
        ("samples", "ExpectColumnValuesToBeInSet", "all_finite"),
        ("labels", "ExpectColumnValuesToBeUnique", "clip_id"),
        ("samples", "ExpectColumnValuesToBeBetween", "max_abs_curvature"),
    }
    assert {o.expectation.severity for o in report.failed("critical")} == {"critical"}
    assert main(["report", str(tmp_path), "--fail-on", "critical"]) == 1
    assert main(["report", str(tmp_path)]) == 0


def test_stale_partitions_warn_but_do_not_fail_critical(clean_dataset):
    report = build_report(str(clean_dataset), max_age_days=30, today="2026-11-24")
    assert failed(report) == {("clips", "ExpectColumnValuesToBeBetween", "age_days"),
                              ("labels", "ExpectColumnValuesToBeBetween", "age_days")}
    assert report.failed("critical") == [] and len(report.failed("warning")) == 2


def test_unknown_reason_code_fails(tmp_path):
    clips, labels, quarantine = clean_rows()
    quarantine.append(d.quarantine_row("log-a", 9_500_000, "cosmic_rays", "clips"))
    d.write_dataset(tmp_path, clips, labels, quarantine)
    assert ("quarantine", "ExpectColumnValuesToBeInSet", "reason") in failed(build_report(str(tmp_path), today="2026-02-01"))


def test_reasoning_is_escaped(tmp_path):
    clips, labels, quarantine = clean_rows(2)
    labels[0]["samples"][0]["reasoning"] = "Stop <script>alert('x')</script> & wait."
    d.write_dataset(tmp_path, clips, labels, quarantine)
    build_report(str(tmp_path), today="2026-02-01")
    page = (tmp_path / "_quality" / "index.html").read_text()
    assert "<script>" not in page
    assert "Stop &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; wait." in page
