"""The closed list of quarantine reason codes. A quarantine row carries exactly one."""

from enum import Enum


class Stage(str, Enum):
    READ = "read"  # opening or decoding a log
    CLIPS = "clips"  # windowing a log into clips
    TEACHER = "teacher"  # running the teacher
    VALIDATE = "validate"  # checking a label


class Reason(str, Enum):
    """Why a log, clip window or label was quarantined (value = the code stored in Parquet)."""

    # read
    LOG_UNREADABLE = "log_unreadable"  # not a log, truncated beyond recovery, bad archive
    LOG_EMPTY = "log_empty"  # no ego poses (zero windows could be formed)
    UNSAFE_PATH = "unsafe_path"  # an archive member escaping its root ("../")
    # clips
    POSE_GAP = "pose_gap"  # ego poses spaced >= 1.5x the expected period in the window
    POSE_NONFINITE = "pose_nonfinite"  # NaN or inf in an ego pose
    TIME_BACKWARDS = "time_backwards"  # decreasing or duplicate timestamps in the window
    CAMERA_MISSING = "camera_missing"  # no frame at or before a requested time
    CAMERA_STALE = "camera_stale"  # nearest frame older than the tolerance (50 ms)
    IMAGE_CORRUPT = "image_corrupt"  # a frame that cannot be decoded
    # teacher
    TEACHER_ERROR = "teacher_error"  # the teacher raised on this clip
    # validate
    NONFINITE = "nonfinite"  # NaN or inf in a predicted trajectory
    BAD_SHAPE = "bad_shape"  # not 64 waypoints of xyz / yaw
    PHYSICAL_BOUNDS = "physical_bounds"  # |accel| > 9.8 m/s^2 or |curvature| > 0.33 1/m
    COMFORT_BOUNDS = "comfort_bounds"  # comfort bounds exceeded (only when configured to reject)
    REASONING_EMPTY = "reasoning_empty"
    REASONING_LENGTH = "reasoning_length"  # outside the configured length range
    REASONING_LANGUAGE = "reasoning_language"  # not in the expected language
    REASONING_INCONSISTENT = "reasoning_inconsistent"  # stated meta-action != trajectory's


STAGE_OF = {
    Reason.LOG_UNREADABLE: Stage.READ,
    Reason.LOG_EMPTY: Stage.READ,
    Reason.UNSAFE_PATH: Stage.READ,
    Reason.POSE_GAP: Stage.CLIPS,
    Reason.POSE_NONFINITE: Stage.CLIPS,
    Reason.TIME_BACKWARDS: Stage.CLIPS,
    Reason.CAMERA_MISSING: Stage.CLIPS,
    Reason.CAMERA_STALE: Stage.CLIPS,
    Reason.IMAGE_CORRUPT: Stage.CLIPS,
    Reason.TEACHER_ERROR: Stage.TEACHER,
    Reason.NONFINITE: Stage.VALIDATE,
    Reason.BAD_SHAPE: Stage.VALIDATE,
    Reason.PHYSICAL_BOUNDS: Stage.VALIDATE,
    Reason.COMFORT_BOUNDS: Stage.VALIDATE,
    Reason.REASONING_EMPTY: Stage.VALIDATE,
    Reason.REASONING_LENGTH: Stage.VALIDATE,
    Reason.REASONING_LANGUAGE: Stage.VALIDATE,
    Reason.REASONING_INCONSISTENT: Stage.VALIDATE,
}
