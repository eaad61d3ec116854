"""Other road users in road coordinates (s along the main road, d to its left).

Vehicles on the main road follow the Intelligent Driver Model (Treiber et al. 2000) toward
the nearest obstacle ahead: the vehicle in front in their lane, a red stop line, a crosswalk
a pedestrian is using. Cross-road vehicles and pedestrians move along d at constant speed.
"""

from dataclasses import dataclass

import numpy as np

VEHICLE_COLORS = (
    (200, 30, 30), (30, 60, 170), (230, 230, 230), (25, 25, 25), (150, 150, 155),
    (20, 110, 60), (230, 180, 20), (120, 70, 30), (90, 20, 110), (60, 140, 200),
)
VEHICLE_SIZES = ((4.6, 1.9, 1.5), (3.9, 1.7, 1.45), (4.9, 2.0, 1.8), (5.4, 2.1, 2.3))  # car, small, SUV, van
CLOTHES_COLORS = ((200, 40, 40), (40, 40, 160), (230, 200, 40), (30, 30, 30), (40, 150, 60), (220, 110, 20))
PEDESTRIAN_SIZE = (0.5, 0.6, 1.75)
EGO_FRONT = 3.8  # rear axle (the ego pose) to the front bumper, m
EGO_REAR = 1.0  # rear axle to the rear bumper, m


@dataclass(frozen=True)
class IDM:
    """Intelligent Driver Model parameters."""

    a_max: float = 1.4  # m/s^2
    b: float = 2.0  # comfortable deceleration, m/s^2
    headway: float = 1.4  # s
    s0: float = 2.5  # standstill gap, m

    def accel(self, v: float, v0: float, gap: float | None = None, dv: float = 0.0) -> float:
        """Acceleration at speed `v` toward desired `v0`, `gap` (bumper to obstacle) closing at `dv`."""
        a = self.a_max * (1.0 - (v / max(v0, 0.1)) ** 4)
        if gap is None:
            return a
        s_star = self.s0 + max(0.0, v * self.headway + v * dv / (2.0 * np.sqrt(self.a_max * self.b)))
        return a - self.a_max * (s_star / max(gap, 0.1)) ** 2


@dataclass
class Vehicle:
    """A main-road vehicle: `direction` +1 travels with s (the ego's way), -1 against it."""

    agent_id: str
    s: float
    d: float
    v: float
    v_desired: float
    direction: int
    color: tuple[int, int, int]
    role: str  # "lead" (followed), "overtake" (passed by the ego) or "oncoming"
    size: tuple[float, float, float] = VEHICLE_SIZES[0]
    release_s: float = float("inf")  # a lead speeds up and leaves once the ego is past this s

    @property
    def half_length(self) -> float:
        return self.size[0] / 2

    @property
    def yaw_rel(self) -> float:
        return 0.0 if self.direction > 0 else np.pi


@dataclass
class CrossVehicle:
    """A vehicle crossing the main road on a cross road at `s`, moving along d."""

    agent_id: str
    s: float
    d: float
    v: float
    direction: int  # +1: toward the main road's left
    color: tuple[int, int, int]
    size: tuple[float, float, float] = VEHICLE_SIZES[0]

    @property
    def yaw_rel(self) -> float:
        return np.pi / 2 if self.direction > 0 else -np.pi / 2


@dataclass
class Pedestrian:
    """A pedestrian waiting at a crosswalk who crosses from `d` to `d_goal` once triggered."""

    agent_id: str
    s: float
    d: float
    d_goal: float
    speed: float
    trigger_s: float  # starts walking when the ego's front passes this s (or the ego slows down near it)
    color: tuple[int, int, int]
    walking: bool = False
    size: tuple[float, float, float] = PEDESTRIAN_SIZE

    @property
    def direction(self) -> int:
        return 1 if self.d_goal > self.d else -1

    @property
    def yaw_rel(self) -> float:
        return np.pi / 2 if self.direction > 0 else -np.pi / 2

    @property
    def arrived(self) -> bool:
        return self.d == self.d_goal

    def step(self, dt: float) -> None:
        if self.walking and not self.arrived:
            nxt = self.d + self.direction * self.speed * dt
            self.d = min(nxt, self.d_goal) if self.direction > 0 else max(nxt, self.d_goal)

    def blocks(self, direction: int, half_width: float) -> bool:
        """Whether traffic travelling `direction` must yield: the pedestrian waits at the kerb or
        is on the road, and is in (or heading into) that direction's half."""
        if self.arrived or abs(self.d) > half_width + 2.0:
            return False
        side = -direction  # the ego direction (+1) drives on d < 0
        in_half = side * self.d > -1.0
        heading_in = side * self.direction > 0
        return in_half or heading_in
