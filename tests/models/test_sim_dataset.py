"""Clips straight from a (fake, analytic) drive: t0 grid, poses in the t0 frame, images, truth, cache."""

import io

import numpy as np
from PIL import Image

from sim.dataset import ClipDataset, clip_times, drive_clips
from tests.fakes import START_US, analytic_drive, circle_pose, solid_render


def test_clips_of_an_analytic_circle(tmp_path):
    drive = analytic_drive("circle", seconds=10.0)
    times = clip_times(drive, 1_000_000)
    assert times[0] == START_US + 1_600_000 and times[-1] <= drive.end_us - 6_400_000
    assert len(times) == 3  # t0 = 1.6, 2.6, 3.6 s
    clips = list(drive_clips(drive, 1_000_000, solid_render))
    clip = clips[1]
    assert clip["t0_us"] == START_US + 2_600_000
    # ego frame at t0 on a circle of radius 20 m at 8 m/s: the pose at t0 + dt is the circle
    # started at the origin heading +x
    dt = np.arange(1, 65) * 0.1
    expected, yaw = circle_pose(dt)
    np.testing.assert_allclose(clip["ego_future_xyz"], expected, atol=1e-3)
    np.testing.assert_allclose(clip["ego_future_rot"][:, 1], -np.sin(yaw), atol=1e-5)  # R[0, 1]
    hist, _ = circle_pose(np.arange(-15, 1) * 0.1)
    np.testing.assert_allclose(clip["ego_history_xyz"], hist, atol=1e-3)
    np.testing.assert_allclose(clip["ego_history_xyz"][-1], 0.0, atol=1e-6)
    # 16 JPEGs, camera-major: solid_render encodes the frame tick (red) and camera (green)
    assert len(clip["images"]) == 16
    pixels = [np.asarray(Image.open(io.BytesIO(b)))[10, 10] for b in clip["images"]]
    ticks = np.array([p[0] for p in pixels], float).reshape(4, 4)  # JPEG: within a level or two
    assert np.abs(ticks - [23, 24, 25, 26]).max() <= 2
    assert [round(pixels[4 * k][1] / 40) for k in range(4)] == [0, 1, 2, 3]
    assert clip["reasoning"] == "Keep speed since the road ahead is clear." and clip["cause"] == "clear_road"

    data = ClipDataset.from_clips(clips)
    data.save(tmp_path / "d.npz")
    back = ClipDataset.concat([ClipDataset.load(tmp_path / "d.npz"), data])
    assert len(back) == 6
    assert back.clip(4)["images"] == clips[1]["images"]
    np.testing.assert_array_equal(back.clip(4)["ego_future_xyz"], clips[1]["ego_future_xyz"])
