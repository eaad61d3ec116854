from benchmarks.teacher_share import timed_label
from pipelines.cli import main


def test_timed_label_counts_every_window_through_the_teacher_once(tmp_path):
    assert main(["synth", "--out", str(tmp_path / "logs"), "--format", "mcap", "--vehicles", "1", "--minutes", "0.2",
                 "--workers", "1"]) == 0
    result = timed_label(tmp_path / "logs", tmp_path / "ds")
    assert result["windows"] == result["predicted_clips"] > 0
    assert 0 < result["predict_s"] < result["pipeline_s"] and 0 < result["predict_share"] < 1
    # the teacher's method is restored afterwards
    import models.teacher as teacher_module

    assert teacher_module.TinyTeacher.predict.__name__ == "predict"
