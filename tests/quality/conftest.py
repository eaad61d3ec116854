import io

import numpy as np
import pytest
from PIL import Image

from tests import datasets as d


def jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((320, 576, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def clean_rows(n: int = 6):
    clips, labels = [], []
    for i in range(n):
        t0 = 2_000_000 + i * 500_000
        clip = d.clip_row("log-a", t0, vehicle_id=f"veh-00{i % 2}")
        clip["images"] = [jpeg(40 * (k % 4) + 30) for k in range(16)]
        clips.append(clip)
        labels.append(d.label_row("log-a", t0, [
            d.sample("Keep speed since the road ahead is clear.", 8, 0, "keep_speed"),
            d.sample("Maintain speed, no obstacles ahead.", 8, 0.2, "keep_speed"),
        ], vehicle_id=f"veh-00{i % 2}", spread=0.1 * i))
    quarantine = [d.quarantine_row("log-a", 9_000_000, "camera_stale", "clips")]
    return clips, labels, quarantine


@pytest.fixture()
def clean_dataset(tmp_path):
    clips, labels, quarantine = clean_rows()
    d.write_dataset(tmp_path, clips, labels, quarantine)
    return tmp_path
