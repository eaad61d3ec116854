"""The teacher contract (REFERENCE.md section 1) as constants every stage agrees on."""

# The 7 Hyperion-8 cameras of the PhysicalAI-AV dataset.
HYPERION8_CAMERAS = (
    "camera_cross_left_120fov",
    "camera_front_wide_120fov",
    "camera_cross_right_120fov",
    "camera_front_tele_30fov",
    "camera_rear_left_70fov",
    "camera_rear_right_70fov",
    "camera_rear_tele_30fov",
)
# The 4 cameras the teacher reads, in the order it reads them (images are camera-major).
TEACHER_CAMERAS = HYPERION8_CAMERAS[:4]

STEP_US = 100_000  # 10 Hz poses and frames
NUM_HISTORY = 16  # t0-1.5 s ... t0
NUM_FUTURE = 64  # t0+0.1 s ... t0+6.4 s
NUM_FRAMES = 4  # per camera: t0-0.3 s ... t0
HISTORY_OFFSETS_US = tuple((i - NUM_HISTORY + 1) * STEP_US for i in range(NUM_HISTORY))
FUTURE_OFFSETS_US = tuple((i + 1) * STEP_US for i in range(NUM_FUTURE))
FRAME_OFFSETS_US = tuple((i - NUM_FRAMES + 1) * STEP_US for i in range(NUM_FRAMES))
# A t0 must leave this much log before it (REFERENCE.md: "1.6 s of history").
MIN_HISTORY_US = 1_600_000
DEFAULT_STRIDE_US = 500_000

IMAGE_HEIGHT, IMAGE_WIDTH = 320, 576  # the teacher's input resolution (JPEG in clips)
CAMERA_TOLERANCE_US = 50_000  # nearest-frame tolerance
GAP_FACTOR = 1.5  # an interval >= 1.5x the expected period is a gap

# Unicycle action space bounds (release values).
MAX_ACCEL = 9.8  # m/s^2
MAX_CURVATURE = 0.33  # 1/m
MIN_SPEED_FOR_CURVATURE = 0.6  # m/s; curvature treated as zero below
DEFAULT_NUM_SAMPLES = 6

# Ego-history delta token clipping (metres).
HISTORY_DELTA_CLIP_XY = 4.0
HISTORY_DELTA_CLIP_Z = 10.0

# Meta-actions (REFERENCE.md section 3).
LONGITUDINAL_ACTIONS = ("stop", "decelerate", "keep_speed", "accelerate")
LATERAL_ACTIONS = ("keep_lane", "lane_change_left", "lane_change_right", "turn_left", "turn_right")
