"""Training inputs of `coclabel teacher train`: images decoded in worker processes exactly as the
teacher decodes them, and the family-balanced clip sampling weights."""

import numpy as np
import pytest

from models.teacher import decode_image
from pipelines import teacher as cli
from sim.dataset import ClipDataset
from tests.fakes import jpeg


def _dataset(n: int) -> ClipDataset:
    rng = np.random.default_rng(0)
    clips = [{"clip_id": f"c{i}", "family": "cruise" if i % 3 else "curve",
              "images": [jpeg(rng.integers(0, 255, (320, 576, 3), dtype=np.uint8)) for _ in range(16)]}
             for i in range(n)]
    return ClipDataset.from_clips(clips)


def test_decoded_images_are_the_teachers_in_clip_and_camera_order(monkeypatch):
    monkeypatch.setattr(cli, "DECODE_CHUNK", 2)  # several chunks, the last one short
    data = _dataset(5)
    expected = np.stack([[decode_image(b, 80, 144) for b in data.images(i)] for i in range(5)])
    serial = cli.decode_images(data, 80, 144, workers=1)
    assert serial.shape == (5, 16, 80, 144, 3) and serial.dtype == np.uint8
    assert np.array_equal(serial, expected)
    assert np.array_equal(cli.decode_images(data, 80, 144, workers=2), expected)


def test_family_weights_balance_the_families():
    families = np.array(["a", "a", "a", "b"])
    assert cli.family_weights(families, 0.0).tolist() == [1.0, 1.0, 1.0, 1.0]
    full = cli.family_weights(families, 1.0)
    assert full.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert full[:3].sum().item() == pytest.approx(full[3].item())  # each family drawn equally often
    assert cli.family_weights(families, 0.5).tolist() == pytest.approx([3 ** -0.5] * 3 + [1.0])
