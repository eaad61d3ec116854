"""The synthetic fleet's camera renderer: flat-shaded pinhole images of a StaticMap + Snapshot.

Frames: world -> ego body (Snapshot.ego_xyz / ego_rot, body -> world) -> camera optical frame
(CameraSpec.rotation is optical -> body, CameraSpec.xyz the mount in the body frame).
Painter's algorithm: the background (sky gradient, far ground), ground polygons in GROUND_KINDS
order, then objects far to near with back faces culled. Polygons crossing the near plane are
clipped in camera space; the ground and static objects farther than `cull_radius_m` from the ego
are skipped, but signal heads are drawn out to `far_radius_m` and agents at any distance, so that
the cues the expert reacts to (a red light or a pedestrian at up to about 240 m, with the 6.4 s
the truth looks ahead) are in the images; they fade over the longer range, and lit lamps not at all.
Traffic-light heads are drawn from StaticMap.lights: a dark housing facing the approaching
traffic with red, yellow and green lamps, top to bottom; the lamp of the current state is lit.
A "light_head" box within 1 m of a TrafficLight is that head's stand-in and is not drawn; poles
and mast arms are ordinary map boxes.
"""

import numpy as np
from PIL import Image, ImageDraw

from sim import raster
from sim.cameras import CameraSpec
from sim.raster import Mesh
from sim.scene import BOX_KINDS, GROUND_KINDS, LIGHT_STATES, Agent, Box, Snapshot, StaticMap, TrafficLight

NEAR_M = 0.2
CULL_RADIUS_M = 150.0
FAR_RADIUS_M = 250.0  # signal heads, and the fog range of agents and signal heads

GROUND_DAY = {
    "grass": (88, 126, 64), "sidewalk": (168, 166, 158), "road": (86, 86, 90),
    "marking_white": (236, 236, 232), "marking_yellow": (228, 186, 40),
    "crosswalk": (236, 236, 232), "stop_line": (242, 242, 240),
}
NIGHT_GROUND_FACTOR = 0.2  # ground brightness at night; markings keep a little more (retroreflective)
NIGHT_MARKING_FACTOR = 0.32
SKY_DAY = dict(sky=(92, 146, 214), horizon=(196, 214, 230), far_ground=(98, 128, 78))
SKY_NIGHT = dict(sky=(6, 8, 20), horizon=(24, 27, 42), far_ground=(14, 18, 14))

SUN_XY = np.array([0.6, 0.8])
FOG_START, FOG_MAX = 0.6, 0.6  # objects fade towards the horizon from 60 % of the cull radius
# The ego's headlight pools on the ground at night (body frame x forward, y left) and their RGBA.
HEADLIGHT_POOLS = tuple(
    (np.array([[2.5, 0.9 + w], [reach, 2.5 + 7 * w], [reach, -2.5 - 7 * w], [2.5, -0.9 - w]]), (255, 244, 214, 16))
    for reach, w in ((34.0, 0.4), (24.0, 0.2), (14.0, 0.0))
)
AMBIENT_NIGHT = 0.22  # lighting of non-emissive faces at night, plus the ego headlights' share
HEADLIGHT_GAIN, HEADLIGHT_RANGE_M = 0.9, 60.0

LAMP_LIT = np.array([(255, 40, 30), (255, 196, 16), (36, 255, 110)], float)  # red, yellow, green
LAMP_DIM = np.array([(72, 20, 18), (72, 58, 14), (14, 58, 30)], float)
LAMP_GLOW = np.array([(170, 40, 30), (170, 130, 20), (30, 170, 80)], float)
HOUSING = (28, 30, 28)
HEAD_SIZE = (0.4, 0.8, 2.1)  # depth along the traffic direction, width, height (exaggerated)
LAMP_RADIUS_M, LAMP_SPACING_M, GLOW_RADIUS_M = 0.3, 0.66, 0.5
HEAD_PAINT_BIAS_M = 1.0
GLASS = (42, 50, 60)
SKIN = (222, 180, 150)
TRUNK = (92, 68, 44)
HEADLAMP_DAY, HEADLAMP_NIGHT = (210, 210, 200), (255, 250, 225)
TAILLAMP_DAY, TAILLAMP_NIGHT = (150, 24, 24), (255, 36, 24)


def _scaled(color, factor: float) -> tuple:
    return tuple(float(c) * factor for c in color)


def vehicle_mesh(size, color) -> Mesh:
    """A car on the ground under its centre: body, a cabin with dark windows and a darker roof,
    head lamps in front and tail lamps behind (lit at night)."""
    length, width, height = size
    body_h = 0.58 * height
    cabin = {f: GLASS for f in raster.FACES} | {"top": _scaled(color, 0.7)}
    lamp_y = (width / 2 - 0.45, width / 2 - 0.08)
    lamp_z = (0.34 * height, 0.48 * height)
    parts = [
        raster.box((0, 0, body_h / 2), (length, width, body_h), tuple(color), raster.FACES[:5]),
        raster.box((-0.05 * length, 0, body_h + 0.21 * height), (0.55 * length, 0.88 * width, 0.42 * height),
                   cabin, raster.FACES[:5]),
    ]
    for side in (1, -1):
        y = tuple(sorted(side * v for v in lamp_y))
        parts.append(raster.decal(length / 2 + 0.01, y, lamp_z, 1, HEADLAMP_DAY, HEADLAMP_NIGHT, emissive=True))
        parts.append(raster.decal(-length / 2 - 0.01, y, lamp_z, -1, TAILLAMP_DAY, TAILLAMP_NIGHT, emissive=True))
    return Mesh.concat(parts)


def pedestrian_mesh(size, color) -> Mesh:
    """A person on the ground under its centre: legs (darker), torso in `color`, a head."""
    length, width, height = size
    return Mesh.concat([
        raster.box((0, 0, 0.22 * height), (0.8 * length, 0.8 * width, 0.44 * height), _scaled(color, 0.6),
                   raster.FACES[:5]),
        raster.box((0, 0, 0.64 * height), (length, width, 0.40 * height), tuple(color), raster.FACES[:5]),
        raster.box((0, 0, 0.92 * height), (0.6 * length, 0.5 * width, 0.16 * height), SKIN, raster.FACES[:5]),
    ])


def tree_mesh(size, color) -> Mesh:
    """A tree on the ground under its centre: a brown trunk under a canopy box in `color`."""
    length, width, height = size
    return Mesh.concat([
        raster.box((0, 0, 0.2 * height), (0.25, 0.25, 0.4 * height), TRUNK, raster.FACES[:5]),
        raster.box((0, 0, 0.65 * height), (length, width, 0.7 * height), tuple(color)),
    ])


def light_head_mesh() -> Mesh:
    """A signal head centred on its origin, the controlled traffic travelling along +x (so the
    lamps face -x): housing, then night glows, then lamps red (top), yellow, green (bottom)."""
    depth, width, height = HEAD_SIZE
    front = -depth / 2
    parts = [raster.box((0, 0, 0), HEAD_SIZE, HOUSING)]
    for slot in range(3):
        z = LAMP_SPACING_M * (1 - slot)
        parts.append(raster.disc(front - 0.01, z, GLOW_RADIUS_M, -1, LAMP_GLOW[slot], lamp=slot, glow=True))
    for slot in range(3):
        z = LAMP_SPACING_M * (1 - slot)
        parts.append(raster.disc(front - 0.02, z, LAMP_RADIUS_M, -1, LAMP_DIM[slot], lamp=slot))
    return Mesh.concat(parts)


def lamp_center(light: TrafficLight, state: str) -> np.ndarray:
    """World position (3,) of the centre of the `state` lamp ("red", "yellow", "green") of `light`."""
    if state not in LIGHT_STATES[:3]:
        raise ValueError(f"a signal head has red, yellow and green lamps, not {state!r}")
    slot = LIGHT_STATES.index(state)
    c, s = np.cos(light.yaw), np.sin(light.yaw)
    front = -HEAD_SIZE[0] / 2 - 0.02
    return np.array([light.xy[0] + c * front, light.xy[1] + s * front,
                     light.height + LAMP_SPACING_M * (1 - slot)])


def _box_mesh(b: Box) -> tuple[Mesh, tuple]:
    """The mesh of a static map box and the position of its mesh origin."""
    if b.kind not in BOX_KINDS:
        raise ValueError(f"unknown box kind {b.kind!r}; expected one of {BOX_KINDS}")
    length, width, height = b.size
    ground = (b.center[0], b.center[1], b.center[2] - height / 2)
    if b.kind == "vehicle":
        return vehicle_mesh(b.size, b.color), ground
    if b.kind == "pedestrian":
        return pedestrian_mesh(b.size, b.color), ground
    if b.kind == "tree":
        return tree_mesh(b.size, b.color), ground
    faces = raster.FACES if b.center[2] - height / 2 > 0.05 else raster.FACES[:5]
    return raster.box((0, 0, 0), b.size, tuple(b.color), faces, emissive=b.emissive), b.center


def _agent_mesh(kind: str, size, color) -> Mesh:
    if kind not in ("vehicle", "pedestrian"):
        raise ValueError(f"unknown agent kind {kind!r}; expected 'vehicle' or 'pedestrian'")
    return pedestrian_mesh(size, color) if kind == "pedestrian" else vehicle_mesh(size, color)


def project(camera: CameraSpec, ego_xyz, ego_rot, points_world) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) (u right, v down; pixel (i, j) covers [i, i+1) x [j, j+1)) and
    depth along the optical axis (N,) of world points (N, 3); uv is NaN where depth <= 0."""
    rot, origin = _camera_pose(camera, np.asarray(ego_xyz, float), np.asarray(ego_rot, float))
    cam = (np.asarray(points_world, float).reshape(-1, 3) - origin) @ rot
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = camera.focal_px * cam[:, :2] / depth[:, None] + np.array([camera.width / 2, camera.height / 2])
    uv[depth <= 0] = np.nan
    return uv, depth


def _camera_pose(camera: CameraSpec, ego_xyz: np.ndarray, ego_rot: np.ndarray):
    """Optical -> world rotation and the camera centre in the world."""
    return ego_rot @ camera.rotation, ego_xyz + ego_rot @ np.asarray(camera.xyz, float)


class Renderer:
    """Renders one StaticMap from any ego pose and camera; build once per drive."""

    def __init__(self, static_map: StaticMap, cull_radius_m: float = CULL_RADIUS_M,
                 far_radius_m: float = FAR_RADIUS_M):
        self.cull_radius_m, self.far_radius_m = cull_radius_m, far_radius_m
        self._init_ground(static_map)
        self._init_objects(static_map)
        self._agent_meshes: dict = {}
        self._backgrounds: dict = {}

    def _init_ground(self, static_map: StaticMap) -> None:
        for poly in static_map.ground:
            if poly.kind not in GROUND_KINDS:
                raise ValueError(f"unknown ground kind {poly.kind!r}; expected one of {GROUND_KINDS}")
            if np.asarray(poly.xy).reshape(-1, 2).shape[0] < 3:
                raise ValueError(f"a {poly.kind} ground polygon needs at least 3 vertices, got {poly.xy!r}")
        polys = sorted(static_map.ground, key=lambda p: GROUND_KINDS.index(p.kind))
        xy = [np.asarray(p.xy, float).reshape(-1, 2) for p in polys]
        counts = np.array([len(v) for v in xy], np.int64)
        self._g_counts = counts
        self._g_starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        verts = np.concatenate(xy) if xy else np.zeros((0, 2))
        self._g_verts = np.concatenate([verts, np.zeros((len(verts), 1))], 1)
        self._g_lo = np.array([v.min(0) for v in xy]).reshape(-1, 2)
        self._g_hi = np.array([v.max(0) for v in xy]).reshape(-1, 2)
        day = np.array([GROUND_DAY[p.kind] for p in polys], float).reshape(-1, 3)
        factor = np.array([NIGHT_GROUND_FACTOR if p.kind in ("grass", "sidewalk", "road") else
                           NIGHT_MARKING_FACTOR for p in polys])
        self._g_colors = {False: day.astype(np.uint8), True: np.round(day * factor[:, None]).astype(np.uint8)}

    def _init_objects(self, static_map: StaticMap) -> None:
        head_xy = np.array([light.xy for light in static_map.lights]).reshape(-1, 2)
        meshes, positions, yaws, lights = [], [], [], []
        for b in static_map.boxes:
            if b.kind == "light_head" and (np.hypot(*(head_xy - b.center[:2]).T) < 1.0).any():
                continue  # a signal head: drawn from StaticMap.lights, with its lamps
            mesh, origin = _box_mesh(b)
            meshes.append(mesh), positions.append(origin), yaws.append(b.yaw), lights.append(-1)
        head = light_head_mesh()
        self._light_ids = [light.light_id for light in static_map.lights]
        for i, light in enumerate(static_map.lights):
            meshes.append(head), positions.append((*light.xy, light.height)), yaws.append(light.yaw)
            lights.append(i)
        self._static = _Scene.build(meshes, positions, yaws, lights)

    def _background(self, camera: CameraSpec, rot: np.ndarray, night: bool) -> Image.Image:
        up = np.round(rot[2], 4)  # world up in the optical frame: all the background depends on
        key = (camera.height, camera.width, camera.focal_px, night, tuple(up))
        image = self._backgrounds.get(key)
        if image is None:
            if len(self._backgrounds) > 256:
                self._backgrounds.clear()
            colors = SKY_NIGHT if night else SKY_DAY
            image = Image.fromarray(raster.sky_and_ground(camera.height, camera.width, camera.focal_px, up, **colors))
            self._backgrounds[key] = image
        return image

    def render(self, snapshot: Snapshot, camera: CameraSpec) -> np.ndarray:
        """(camera.height, camera.width, 3) uint8 image of the world at `snapshot` from `camera`."""
        ego_xyz = np.asarray(snapshot.ego_xyz, float)
        ego_rot = np.asarray(snapshot.ego_rot, float)
        rot, origin = _camera_pose(camera, ego_xyz, ego_rot)
        view = _View(camera, rot, origin)
        image = self._background(camera, rot, snapshot.night).copy()
        draw = ImageDraw.Draw(image)
        self._draw_ground(draw, view, ego_xyz, snapshot.night)
        if snapshot.night:
            _draw_headlight_pools(ImageDraw.Draw(image, "RGBA"), view, ego_xyz, ego_rot)
        self._draw_objects(draw, view, snapshot, ego_xyz, ego_rot)
        return np.asarray(image).copy()

    def _draw_ground(self, draw: ImageDraw.ImageDraw, view: "_View", ego_xyz: np.ndarray, night: bool) -> None:
        gap = np.maximum(np.maximum(self._g_lo - ego_xyz[:2], ego_xyz[:2] - self._g_hi), 0)
        near = np.flatnonzero((gap**2).sum(1) <= self.cull_radius_m**2)
        if not len(near):
            return
        counts = self._g_counts[near]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        index = np.repeat(self._g_starts[near] - starts, counts) + np.arange(counts.sum())
        cam = view.to_camera(self._g_verts[index])
        keep, crossing = view.cull(cam, starts)
        colors = self._g_colors[night][near]
        view.draw(draw, cam, starts[keep], counts[keep], crossing[keep], colors[keep])

    def _draw_objects(self, draw, view: "_View", snapshot: Snapshot, ego_xyz, ego_rot) -> None:
        scene = self._static.near(ego_xyz, self.cull_radius_m, self.far_radius_m)
        fog_end = np.where(scene.light >= 0, self.far_radius_m, self.cull_radius_m)
        if snapshot.agents:
            scene = _Scene.concat([scene, self._agents(snapshot.agents)])
            fog_end = np.r_[fog_end, np.full(len(scene.normals) - len(fog_end), self.far_radius_m)]
        if not len(scene.normals):
            return
        states = np.array([_state_index(snapshot.light_states.get(i, "off")) for i in self._light_ids] + [3])
        state = states[scene.light]  # light -1 (not a signal head) reads the trailing "off"
        lit = (scene.lamp >= 0) & (scene.lamp == state)
        facing = np.einsum("pk,pk->p", scene.normals, view.origin - scene.verts[:, 0]) > 0
        show = facing & (~scene.glow | (lit & snapshot.night))
        flat = scene.verts.reshape(-1, 3)
        cam = view.to_camera(flat)
        starts = np.arange(0, len(flat), raster.N_VERTS)
        inside, crossing = view.cull(cam, starts)
        order = np.flatnonzero(show & inside)
        distance = np.linalg.norm(scene.centers[order] - view.origin, axis=1)
        # A signal head goes after the pole or mast arm it hangs on, whose centre may be nearer.
        order_by_distance = np.argsort(-(distance - HEAD_PAINT_BIAS_M * (scene.light[order] >= 0)), kind="stable")
        order = order[order_by_distance]
        colors = _colors(scene, order, lit[order], snapshot.night, ego_xyz, ego_rot, distance[order_by_distance],
                         fog_end[order])
        view.draw(draw, cam, starts[order], np.full(len(order), raster.N_VERTS), crossing[order], colors)

    def _agents(self, agents: list[Agent]) -> "_Scene":
        meshes = []
        for a in agents:
            key = (a.kind, tuple(a.size), tuple(a.color))
            mesh = self._agent_meshes.get(key)
            if mesh is None:
                if len(self._agent_meshes) > 4096:
                    self._agent_meshes.clear()
                mesh = self._agent_meshes[key] = _agent_mesh(*key)
            meshes.append(mesh)
        return _Scene.build(meshes, [(*a.xy, 0.0) for a in agents], [a.yaw for a in agents], [-1] * len(agents))


def _draw_headlight_pools(draw: ImageDraw.ImageDraw, view: "_View", ego_xyz, ego_rot) -> None:
    """Blend the ego's headlight pools over the ground (night only)."""
    for xy, rgba in HEADLIGHT_POOLS:
        world = ego_xyz + np.concatenate([xy, np.zeros((len(xy), 1))], 1) @ ego_rot.T
        cam = view.to_camera(world)
        starts = np.zeros(1, np.int64)
        inside, crossing = view.cull(cam, starts)
        if inside[0]:
            view.draw(draw, cam, starts, np.array([len(xy)]), crossing, np.array([rgba]))


def _state_index(state: str) -> int:
    if state not in LIGHT_STATES:
        raise ValueError(f"unknown traffic-light state {state!r}; expected one of {LIGHT_STATES}")
    return LIGHT_STATES.index(state)


def _colors(scene: "_Scene", order: np.ndarray, lit: np.ndarray, night: bool, ego_xyz, ego_rot,
            distance: np.ndarray, fog_end: np.ndarray) -> np.ndarray:
    """Face colours (len(order), 3) uint8: flat shading by face direction by day; at night an
    ambient level plus the ego's headlights, except for emissive faces and lit lamps; far
    objects but lit lamps fade towards the horizon (`distance` from the camera, full fog at
    each face's `fog_end`)."""
    n = scene.normals[order]
    side = 0.72 + 0.2 * (n[:, :2] @ SUN_XY)
    shade = np.where(n[:, 2] > 0.5, 1.0, np.where(n[:, 2] < -0.5, 0.45, side))
    emissive = scene.emissive[order]
    if night:
        body = (scene.centers[order] - ego_xyz) @ ego_rot
        reach = np.clip(1 - np.linalg.norm(body[:, :2], axis=1) / HEADLIGHT_RANGE_M, 0, 1)
        in_beam = (body[:, 0] > 0) & (np.abs(body[:, 1]) < 0.3 * body[:, 0] + 2.0)
        light = AMBIENT_NIGHT + HEADLIGHT_GAIN * reach * in_beam
        color = scene.night[order] * np.where(emissive, 1.0, shade * light)[:, None]
    else:
        color = scene.day[order] * np.where(emissive, 1.0, shade)[:, None]
    lamp = scene.lamp[order][lit]
    color[lit] = np.where(scene.glow[order][lit, None], LAMP_GLOW[lamp], LAMP_LIT[lamp])
    fog = np.clip((distance / fog_end - FOG_START) / (1 - FOG_START), 0, 1)[:, None] * FOG_MAX * ~lit[:, None]
    horizon = np.asarray((SKY_NIGHT if night else SKY_DAY)["horizon"], float)
    color += (horizon - color) * fog
    return np.clip(np.round(color), 0, 255).astype(np.uint8)


class _Scene:
    """World polygons of many objects stacked: (P, N_VERTS, 3) plus per-polygon attributes;
    `centers` is the centre of each polygon's object (painter's order), `light` its signal index."""

    FIELDS = ("verts", "normals", "day", "night", "emissive", "lamp", "glow", "centers", "light")

    def __init__(self, **arrays):
        for name in self.FIELDS:
            setattr(self, name, arrays[name])
        self._firsts = None

    @classmethod
    def build(cls, meshes: list[Mesh], positions, yaws, lights) -> "_Scene":
        if not meshes:
            z = np.zeros
            return cls(verts=z((0, raster.N_VERTS, 3)), normals=z((0, 3)), day=z((0, 3)), night=z((0, 3)),
                       emissive=z(0, bool), lamp=z(0, np.int8), glow=z(0, bool), centers=z((0, 3)), light=z(0, int))
        verts, normals, centers = [], [], []
        for mesh, xyz, yaw in zip(meshes, positions, yaws):
            v, n = mesh.moved(yaw, xyz)
            verts.append(v), normals.append(n)
            centers.append(np.repeat(v.reshape(-1, 3).mean(0, keepdims=True), len(v), 0))
        counts = [len(m.normals) for m in meshes]
        parts = {f: np.concatenate([getattr(m, f) for m in meshes])
                 for f in ("day", "night", "emissive", "lamp", "glow")}
        return cls(verts=np.concatenate(verts), normals=np.concatenate(normals), centers=np.concatenate(centers),
                   light=np.repeat(np.asarray(lights, int), counts), **parts)

    @classmethod
    def concat(cls, scenes: list["_Scene"]) -> "_Scene":
        return cls(**{f: np.concatenate([getattr(s, f) for s in scenes]) for f in cls.FIELDS})

    def near(self, ego_xyz: np.ndarray, radius: float, light_radius: float) -> "_Scene":
        """The polygons of the objects whose centre lies within `radius` of the ego (in xy),
        `light_radius` for signal heads."""
        if not len(self.centers):
            return self
        if self._firsts is None:  # each object's polygons are contiguous and share its centre
            self._firsts = np.flatnonzero(np.r_[True, (self.centers[1:] != self.centers[:-1]).any(1)])
        firsts = self._firsts
        reach = np.where(self.light[firsts] >= 0, light_radius, radius)
        keep = ((self.centers[firsts, :2] - ego_xyz[:2]) ** 2).sum(1) <= reach**2
        counts = np.diff(np.r_[firsts, len(self.centers)])[keep]
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        index = np.repeat(firsts[keep] - starts, counts) + np.arange(counts.sum())
        return _Scene(**{f: getattr(self, f)[index] for f in self.FIELDS})


class _View:
    """One camera at one pose: world -> camera transform, frustum test, polygon drawing."""

    def __init__(self, camera: CameraSpec, rot: np.ndarray, origin: np.ndarray):
        self.camera, self.rot, self.origin = camera, rot, origin
        self.f = camera.focal_px
        self.cx, self.cy = camera.width / 2, camera.height / 2
        self.tan_x, self.tan_y = self.cx / self.f, self.cy / self.f

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (points - self.origin) @ self.rot

    def cull(self, cam: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per polygon (vertices cam[starts[i]:starts[i+1]], contiguous): whether it is not
        wholly outside one frustum plane, and whether it crosses the near plane."""
        if not len(starts):
            return np.zeros(0, bool), np.zeros(0, bool)
        x, y, z = cam.T
        outside = np.minimum.reduceat(NEAR_M - z, starts) > 0
        for plane in (x - self.tan_x * z, -x - self.tan_x * z, y - self.tan_y * z, -y - self.tan_y * z):
            outside |= np.minimum.reduceat(plane, starts) > 0
        return ~outside, np.minimum.reduceat(z, starts) < NEAR_M

    def draw(self, draw: ImageDraw.ImageDraw, cam: np.ndarray, starts, counts, crossing, colors) -> None:
        """Fill each polygon cam[s:s+c] in order, clipping those that cross the near plane;
        PIL puts pixel centres on integers, hence the half-pixel shift."""
        z = np.maximum(cam[:, 2], NEAR_M)
        uv = np.empty((len(cam), 2))
        uv[:, 0] = self.f * cam[:, 0] / z + (self.cx - 0.5)
        uv[:, 1] = self.f * cam[:, 1] / z + (self.cy - 0.5)
        flat = uv.ravel().tolist()
        ends = starts + counts
        for s, e, clip, color in zip(starts.tolist(), ends.tolist(), crossing.tolist(), map(tuple, colors.tolist())):
            if clip:
                poly = raster.clip_near(cam[s:e], NEAR_M)
                if len(poly) < 3:
                    continue
                xy = np.empty((len(poly), 2))
                xy[:, 0] = self.f * poly[:, 0] / poly[:, 2] + (self.cx - 0.5)
                xy[:, 1] = self.f * poly[:, 1] / poly[:, 2] + (self.cy - 0.5)
                draw.polygon(xy.ravel().tolist(), fill=color)
            else:
                draw.polygon(flat[2 * s:2 * e], fill=color)


def render(static_map: StaticMap, snapshot: Snapshot, camera: CameraSpec) -> np.ndarray:
    """One-off render; build a `Renderer` once per map to render many frames."""
    return Renderer(static_map).render(snapshot, camera)
