"""Decode once: the clip assembly's JPEG check decodes each image to the teacher's input, and the
teacher takes those arrays instead of decoding the JPEGs again, with the same rows and labels."""

import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from models.teacher import (
    DECODED_IMAGES,
    WEIGHTS_DIR,
    clip_arrays,
    decode_image,
    image_size,
    load_model,
    load_teacher,
)
from schemas.ids import seed_of
from tests.fakes import analytic_drive
from transforms.sources.base import CameraFrame
from tests.transforms.clip_messages import drive_info, drive_messages, frame_jpeg
from tests.transforms.test_clips import EXPECTED_FAULTS, START_US, S, faulty_messages, reasons_by_t0
from transforms.clips import ClipAssembler, ImageError, teacher_jpeg, teacher_pixels
from transforms.inference import TeacherModelHandler, teacher_decoder

torch.set_num_threads(1)
SIZE = (80, 144)  # the tiny teacher's input: the clips' 320x576 JPEGs at 1/4 scale
DECODE = functools.partial(decode_image, height=SIZE[0], width=SIZE[1])


@pytest.fixture(scope="module")
def circle():
    drive = analytic_drive("circle", 20.0)
    return drive_messages(drive), drive_info(drive)


def rows(info, messages, decode=None):
    out = ClipAssembler(info, decode=decode).push_all(messages)
    return {o.row["t0_us"]: o.row for o in out if o.table == "clips"}, [o.row for o in out if o.table == "quarantine"]


def test_the_decode_check_gives_the_same_rows_and_the_teachers_arrays(circle):
    messages, info = circle
    faulty = faulty_messages(messages)
    checked, checked_quarantine = rows(info, faulty)
    decoded, decoded_quarantine = rows(info, faulty, DECODE)
    assert reasons_by_t0(decoded_quarantine) == reasons_by_t0(checked_quarantine) == EXPECTED_FAULTS
    corrupt = {(q["t0_us"] - START_US) / S: q["detail"] for q in decoded_quarantine if q["reason"] == "image_corrupt"}
    assert "camera_front_wide_120fov: frame at" in corrupt[4.5] and "cannot be decoded" in corrupt[10.5]
    assert sorted(decoded) == sorted(checked) and len(decoded) == 37 - len(EXPECTED_FAULTS)
    for t0, row in decoded.items():
        arrays = row.pop(DECODED_IMAGES)
        assert row == checked[t0] and DECODED_IMAGES not in checked[t0]
        assert arrays.shape == (16, *SIZE, 3) and arrays.dtype == np.uint8
        assert np.array_equal(arrays, np.stack([DECODE(jpeg) for jpeg in row["images"]]))


def test_teacher_pixels_decode_a_passed_through_jpeg_as_pil_opened_it():
    seen = []

    def decode(jpeg):
        seen.append(type(jpeg))
        return DECODE(jpeg)

    data = frame_jpeg("camera_front_wide_120fov", 7)
    jpeg, pixels = teacher_pixels(CameraFrame("camera_front_wide_120fov", 0, data, "jpeg"), decode)
    assert jpeg == data and np.array_equal(pixels, DECODE(data)) and pixels.shape == (*SIZE, 3)
    assert seen == [JpegImageFile]  # opened once, for the pass-through test, and decoded from there
    png = io.BytesIO()
    Image.fromarray(np.full((40, 72, 3), 90, np.uint8)).save(png, format="PNG")
    frame = CameraFrame("camera_front_wide_120fov", 0, png.getvalue(), "png")
    jpeg, pixels = teacher_pixels(frame, decode)
    assert jpeg == teacher_jpeg(frame) and np.array_equal(pixels, DECODE(jpeg)) and seen[1:] == [bytes]
    with pytest.raises(ImageError):
        teacher_pixels(CameraFrame("camera_front_wide_120fov", 0, data[:len(data) // 2], "jpeg"), decode)


def test_the_teacher_gives_the_same_samples_from_the_decoded_arrays(circle):
    messages, info = circle
    clips = list(rows(info, messages, DECODE)[0].values())[:3]
    jpeg_only = [{k: v for k, v in c.items() if k != DECODED_IMAGES} for c in clips]
    teacher = load_teacher("tiny")
    seeds = [seed_of(c["clip_id"]) for c in clips]
    with_arrays, from_jpegs = teacher.predict(clips, 2, seeds), teacher.predict(jpeg_only, 2, seeds)
    for a, b in zip(with_arrays, from_jpegs):
        for x, y in zip(a, b):
            assert x["reasoning"] == y["reasoning"]
            assert np.array_equal(x["traj_xyz"], y["traj_xyz"]) and np.array_equal(x["traj_yaw"], y["traj_yaw"])


def test_arrays_of_another_size_are_ignored(circle):
    messages, info = circle
    clip = next(iter(rows(info, messages, DECODE)[0].values()))
    wrong = dict(clip, **{DECODED_IMAGES: np.zeros((16, 40, 72, 3), np.uint8)})
    images, _, _ = clip_arrays(wrong, *SIZE)
    assert np.array_equal(images, clip[DECODED_IMAGES])


def test_image_size_is_the_teachers_and_only_the_tiny_teacher_gets_a_decoder(tmp_path):
    model, _, _ = load_model(WEIGHTS_DIR)
    assert image_size("tiny") == (model.cfg.image_height, model.cfg.image_width) == SIZE
    assert image_size("alpamayo-r1:/models/x") is None and teacher_decoder("alpamayo-r1:/models/x") is None
    assert image_size(f"tiny:{tmp_path}") is None  # no weights there: loading the teacher reports it
    jpeg = drive_messages(analytic_drive("circle", 2.0))[-1].data
    assert np.array_equal(teacher_decoder("tiny")(jpeg), DECODE(jpeg))


def test_the_handler_passes_on_the_clip_without_its_images():
    clip = {"clip_id": "c", "log_id": "l", "images": [b"abc", b"de"], DECODED_IMAGES: np.zeros((16, 2, 3, 3), np.uint8)}

    class Model:
        def identity(self):
            return {"name": "n", "version": "v", "weights_sha256": "s"}

        def predict(self, clips, num_samples, seeds):
            return [[{"reasoning": "r"}] * num_samples for _ in clips]

    handler = TeacherModelHandler("tiny", 1)
    (result,) = handler.run_inference([clip], Model())
    assert result["clip"] == {"clip_id": "c", "log_id": "l"}
    assert handler.get_num_bytes([clip]) == 5 + 16 * 2 * 3 * 3
