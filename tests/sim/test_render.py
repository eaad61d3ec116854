"""The camera renderer on a hand-made street: geometry, colours, lights, night, determinism."""

import dataclasses

import numpy as np
import pytest

from models.geometry import yaw_to_matrix
from sim import raster
from sim.cameras import RIG
from sim.render import Renderer, lamp_center, project, render
from sim.scenarios import FAMILIES
from sim.scene import Agent, Box, GroundPolygon, Snapshot, StaticMap, TrafficLight

FRONT = RIG["camera_front_wide_120fov"]
ROAD = (86, 86, 90)
SIDE_SHADE = 0.6  # flat shading of a face whose outward normal is -x (facing an ego heading +x)


def rect(x0, x1, y0, y1, kind):
    return GroundPolygon(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float), kind)


def street(light_x: float = 26.8, extra_boxes=()) -> StaticMap:
    """A straight two-lane road along +x through the origin, a crosswalk at x 14..18, a signal
    head at `light_x` over the right lane, buildings and trees on both sides."""
    ground = [rect(-200, 400, -60, 60, "grass"), rect(-200, 400, -6, -3.5, "sidewalk"),
              rect(-200, 400, 3.5, 6, "sidewalk"), rect(-200, 400, -3.5, 3.5, "road"),
              rect(-200, 400, -0.1, 0.1, "marking_yellow"), rect(12.5, 13.0, -3.5, 0, "stop_line")]
    ground += [rect(x, x + 3, -3.4, -3.25, "marking_white") for x in range(-200, 400, 9)]
    ground += [rect(14, 18, y, y + 0.5, "crosswalk") for y in np.arange(-3.4, 3.4, 1.0)]
    boxes = [Box((x, 15.0, 6.0), (12.0, 8.0, 12.0), 0.0, (150, 120, 100), "building") for x in range(-100, 300, 20)]
    boxes += [Box((x, -9.0, 3.0), (3.0, 3.0, 6.0), 0.0, (50, 110, 50), "tree") for x in range(-100, 300, 15)]
    boxes += list(extra_boxes)
    lights = [TrafficLight("L1", (light_x, -2.0), 5.0, 0.0, ((12.5, -3.5), (12.5, 0.0)))]
    return StaticMap(ground, boxes, lights)


def snapshot(state="red", night=False, agents=(), x=0.0, yaw=0.0) -> Snapshot:
    return Snapshot(0, np.array([x, 0.0, 0.0]), yaw_to_matrix(yaw), list(agents), {"L1": state}, night)


def pixel(image, camera, world_xyz, s: Snapshot):
    uv, depth = project(camera, s.ego_xyz, s.ego_rot, np.asarray(world_xyz, float)[None])
    (u, v) = uv[0]
    assert depth[0] > 0 and 0 <= u < camera.width and 0 <= v < camera.height
    return image[int(v), int(u)].astype(int)


@pytest.fixture(scope="module")
def renderer():
    return Renderer(street())


def test_project_exact_pinhole_values():
    tele = RIG["camera_front_tele_30fov"]  # mounted at (1.8, 0, 1.5), no yaw, no pitch
    f = tele.focal_px
    pts = np.array([[11.8, 0.0, 1.5], [11.8, 1.0, 1.0], [-5.0, 0.0, 1.5]])
    uv, depth = project(tele, np.zeros(3), np.eye(3), pts)
    np.testing.assert_allclose(depth, [10.0, 10.0, -6.8])
    np.testing.assert_allclose(uv[0], [288.0, 160.0])
    np.testing.assert_allclose(uv[1], [288.0 - f * 0.1, 160.0 + f * 0.05])
    assert np.isnan(uv[2]).all()
    # The same point relative to a turned, moved ego projects to the same pixel.
    rot = yaw_to_matrix(np.pi / 2)
    ego = np.array([100.0, -50.0, 0.0])
    uv2, depth2 = project(tele, ego, rot, ego + pts[1] @ rot.T)
    np.testing.assert_allclose(uv2[0], uv[1])
    np.testing.assert_allclose(depth2[0], 10.0)


def test_clip_near_keeps_the_part_in_front():
    square = np.array([[-1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
    clipped = raster.clip_near(square, 0.2)
    np.testing.assert_allclose(clipped, [[-1.0, 0.0, 0.2], [1.0, 0.0, 0.2], [1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
    assert len(raster.clip_near(square - [0, 0, 5], 0.2)) == 0


def test_road_and_sky(renderer):
    s = snapshot()
    image = renderer.render(s, FRONT)
    assert image.shape == (320, 576, 3) and image.dtype == np.uint8
    # Road 8 m ahead in the ego lane, away from markings: the exact road colour.
    assert tuple(pixel(image, FRONT, (9.8, -1.5, 0.0), s)) == ROAD
    top = image[0, 288].astype(int)
    assert top[2] > top[0] + 60  # blue sky overhead


def test_red_light_25m_ahead_then_green(renderer):
    red = snapshot("red")
    image = renderer.render(red, FRONT)
    r, g, b = pixel(image, FRONT, lamp_center(street().lights[0], "red"), red)
    assert r >= 240 and g <= 60 and b <= 60
    r, g, b = pixel(image, FRONT, lamp_center(street().lights[0], "green"), red)
    assert max(r, g, b) < 80  # the unlit green lamp is dim
    green = snapshot("green")
    image = renderer.render(green, FRONT)
    r, g, b = pixel(image, FRONT, lamp_center(street().lights[0], "green"), green)
    assert g >= 240 and r <= 60 and b <= 130
    r, g, b = pixel(image, FRONT, lamp_center(street().lights[0], "red"), green)
    assert max(r, g, b) < 80


def test_lit_lamp_spans_pixels_at_40m():
    light_x = 41.8  # the head is 40 m ahead of the front camera
    s = snapshot("red")
    image = Renderer(street(light_x)).render(s, FRONT)
    uv, _ = project(FRONT, s.ego_xyz, s.ego_rot, lamp_center(street(light_x).lights[0], "red")[None])
    u, v = uv[0]
    patch = image[int(v) - 4:int(v) + 5, int(u) - 4:int(u) + 5].astype(int)
    red = (patch[..., 0] > 200) & (patch[..., 1] < 80) & (patch[..., 2] < 80)
    assert red.sum() >= 3


@pytest.mark.parametrize("night", [False, True])
def test_red_light_220m_ahead_reaches_the_teachers_input(night):
    """The expert brakes for a red light from 150 m, so a clip's truth names one up to ~240 m
    ahead: beyond the ground's cull radius, its lit lamp must still show, unfaded, in the tele
    camera at the teacher's 80x144 input (decoded as the teacher decodes)."""
    from models.teacher import decode_image
    from sim.dataset import jpeg_bytes

    tele = RIG["camera_front_tele_30fov"]
    light_x = 221.8  # 220 m ahead of the camera
    s = snapshot("red", night=night)
    image = Renderer(street(light_x)).render(s, tele)
    r, g, b = pixel(image, tele, lamp_center(street(light_x).lights[0], "red"), s)
    assert r >= 240 and g <= 60 and b <= 60  # no fog on a lit lamp
    small = decode_image(jpeg_bytes(image), 80, 144).astype(int)
    uv, _ = project(tele, s.ego_xyz, s.ego_rot, lamp_center(street(light_x).lights[0], "red")[None])
    u, v = (uv[0] / 4).astype(int)
    patch = small[v - 1:v + 2, u - 1:u + 2]
    assert (patch[..., 0] - patch[..., 1:].max(-1)).max() >= 60  # a clearly red pixel
    far = Renderer(street(261.8)).render(s, tele)  # past the signal heads' 250 m: not drawn
    red = (far[..., 0].astype(int) - far[..., 1:].max(-1)) > 60
    assert not red.any()


def test_signal_head_seen_from_behind_shows_no_lamp():
    # Ego heading -x, 25 m beyond the head: it sees the back of the housing, not the lamps.
    s = snapshot("red", x=26.8 + 26.8, yaw=np.pi)
    image = Renderer(street()).render(s, FRONT)
    head = np.array([[26.8, -2.0, 5.0 + d] for d in (-0.66, 0.0, 0.66)])
    uv, depth = project(FRONT, s.ego_xyz, s.ego_rot, head)
    assert (depth > 0).all()
    for u, v in uv:
        assert image[int(v), int(u)].max() < 60  # dark housing only


def test_vehicle_20m_ahead_has_its_shaded_colour(renderer):
    car = Agent("v1", "vehicle", (1.8 + 20.0, -1.2), 0.0, (4.5, 1.9, 1.5), (200, 30, 30))
    centre = (21.8, -1.2, 0.75)
    with_car, without = snapshot(agents=[car]), snapshot()
    seen = pixel(renderer.render(with_car, FRONT), FRONT, centre, with_car)
    empty = pixel(renderer.render(without, FRONT), FRONT, centre, without)
    assert tuple(seen) == (round(200 * SIDE_SHADE), round(30 * SIDE_SHADE), round(30 * SIDE_SHADE))
    assert tuple(empty) == ROAD


def test_pedestrian_on_crosswalk_15m_ahead(renderer):
    ped = Agent("p1", "pedestrian", (16.8, -1.0), np.pi / 2, (0.5, 0.6, 1.75), (40, 60, 200))
    s = snapshot(agents=[ped])
    centre = (16.8, -1.0, 0.875 + 0.1)  # the torso
    seen = pixel(renderer.render(s, FRONT), FRONT, centre, s)
    assert tuple(seen) == (round(40 * SIDE_SHADE), round(60 * SIDE_SHADE), round(200 * SIDE_SHADE))
    empty = pixel(renderer.render(snapshot(), FRONT), FRONT, centre, s)
    assert np.abs(seen - empty).max() > 40


def test_night_is_dark_but_the_lit_lamp_stays_bright(renderer):
    car = Agent("v1", "vehicle", (21.8, -1.75), 0.0, (4.5, 1.9, 1.5), (200, 30, 30))
    day, night = snapshot("green", agents=[car]), snapshot("green", night=True, agents=[car])
    day_image, night_image = renderer.render(day, FRONT), renderer.render(night, FRONT)
    assert night_image.mean() < 0.35 * day_image.mean()
    r, g, b = pixel(night_image, FRONT, lamp_center(street().lights[0], "green"), night)
    assert g >= 240 and r <= 60
    # The lead car's tail lamps glow at night: a bright red pixel at the left lamp's centre.
    r, g, b = pixel(night_image, FRONT, (21.8 - 2.26, -1.75 + 0.68, 0.61), night)
    assert r >= 250 and g < 60


def test_deterministic(renderer):
    car = Agent("v1", "vehicle", (21.8, -1.75), 0.3, (4.5, 1.9, 1.5), (200, 30, 30))
    s = snapshot("yellow", night=True, agents=[car])
    first = renderer.render(s, FRONT)
    assert first.tobytes() == renderer.render(s, FRONT).tobytes()
    assert first.tobytes() == render(street(), s, FRONT).tobytes()


@pytest.mark.parametrize("name", list(RIG))
def test_every_rig_camera_renders_at_its_resolution(renderer, name):
    camera = RIG[name]
    image = renderer.render(snapshot(), camera)
    assert image.shape == (camera.height, camera.width, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 5  # sky, ground and objects, not a blank
    small = renderer.render(snapshot(), camera.with_resolution(160, 288))
    assert small.shape == (160, 288, 3)


def test_objects_behind_the_camera_are_not_drawn():
    behind = [Box((-15.0, 0.0, 5.0), (6.0, 30.0, 10.0), 0.0, (255, 0, 255), "building")]
    car = Agent("v9", "vehicle", (-8.0, -1.75), 0.0, (4.5, 1.9, 1.5), (0, 255, 0))
    s, plain = snapshot(agents=[car]), snapshot()
    with_behind = Renderer(street(extra_boxes=behind)).render(s, FRONT)
    assert with_behind.tobytes() == Renderer(street()).render(plain, FRONT).tobytes()


def test_signal_head_is_drawn_over_its_fixture():
    """The world builder hangs heads on a mast arm (a pole box through the head, its centre
    possibly nearer the camera) and adds a plain "light_head" box at the head: the lit lamp
    must still show."""
    fixture = [Box((26.65, 0.0, 5.66), (0.1, 5.0, 0.25), 0.0, (90, 90, 90), "pole"),
               Box((26.8, -2.0, 5.0), (0.45, 0.45, 1.2), 0.0, (30, 30, 30), "light_head")]
    s = snapshot("red")
    image = Renderer(street(extra_boxes=fixture)).render(s, FRONT)
    r, g, b = pixel(image, FRONT, lamp_center(street().lights[0], "red"), s)
    assert r >= 240 and g <= 60 and b <= 60


def test_bad_input_is_a_clear_error(renderer):
    with pytest.raises(ValueError, match="traffic-light state 'blue'"):
        renderer.render(Snapshot(0, np.zeros(3), np.eye(3), [], {"L1": "blue"}), FRONT)
    with pytest.raises(ValueError, match="agent kind 'bus'"):
        renderer.render(snapshot(agents=[Agent("b", "bus", (10.0, 0.0), 0.0, (9, 2.5, 3), (1, 2, 3))]), FRONT)
    with pytest.raises(ValueError, match="ground kind 'lava'"):
        Renderer(StaticMap([rect(0, 1, 0, 1, "lava")], [], []))


# ---------------------------------------------------------------- the fleet's showcase frames

TELE = RIG["camera_front_tele_30fov"]
LAMP_CHANNEL = {"red": 0, "green": 1}


def in_view(camera, s: Snapshot, world_xyz) -> bool:
    uv, depth = project(camera, s.ego_xyz, s.ego_rot, np.asarray(world_xyz, float)[None])
    return bool(depth[0] > 0 and 0 <= uv[0, 0] < camera.width and 0 <= uv[0, 1] < camera.height)


def assert_agent_visible(renderer: Renderer, s: Snapshot, agent_id: str, night: bool) -> None:
    """By day the pixel where the agent's body projects is a shade of its colour; by day and by
    night the agent changes at least 3 pixels of its projected outline by more than 20 levels."""
    agent = next(a for a in s.agents if a.agent_id == agent_id)
    seen = renderer.render(s, FRONT)
    empty = renderer.render(dataclasses.replace(s, agents=[a for a in s.agents if a.agent_id != agent_id]), FRONT)
    length, width, height = agent.size
    c, si = np.cos(agent.yaw), np.sin(agent.yaw)
    corners = np.array([[agent.xy[0] + c * dx - si * dy, agent.xy[1] + si * dx + c * dy, z]
                        for dx in (-length / 2, length / 2) for dy in (-width / 2, width / 2) for z in (0, height)])
    uv, depth = project(FRONT, s.ego_xyz, s.ego_rot, corners)
    assert (depth > 0).all()
    (u0, v0), (u1, v1) = np.floor(uv.min(0)).astype(int), np.ceil(uv.max(0)).astype(int)
    changed = np.abs(seen[v0:v1, u0:u1].astype(int) - empty[v0:v1, u0:u1]).max(-1) > 20
    assert changed.sum() >= 3, (agent, changed.sum())
    if not night:
        body_z = 0.64 * height if agent.kind == "pedestrian" else 0.5 * height
        rgb = pixel(seen, FRONT, (*agent.xy, body_z), s)
        color = np.asarray(agent.color, float)
        k = rgb @ color / (color @ color)
        assert 0.35 <= k <= 1.05 and np.abs(rgb - k * color).max() <= 3, (agent, rgb)


def test_dark_agents_stay_visible_at_night():
    black_car = Agent("v", "vehicle", (31.8, -1.2), 0.0, (4.6, 1.9, 1.5), (25, 25, 25))
    dark_walker = Agent("p", "pedestrian", (31.8, 2.0), np.pi / 2, (0.5, 0.6, 1.75), (30, 30, 30))
    s = snapshot(night=True, agents=[black_car, dark_walker])
    renderer = Renderer(street())
    assert_agent_visible(renderer, s, "v", night=True)
    assert_agent_visible(renderer, s, "p", night=True)


@pytest.mark.parametrize("night", [False, True], ids=["day", "night"])
@pytest.mark.parametrize("family", FAMILIES)
def test_showcase_cue_is_visible_where_the_geometry_puts_it(family, night):
    from sim.fleet import showcase

    drive, t_us, cues = showcase(family, night, seed=0)
    s = drive.snapshot(t_us)
    assert s.night == night
    renderer = Renderer(drive.static_map)
    image = renderer.render(s, FRONT)
    if "light_id" in cues:
        light = next(light for light in drive.static_map.lights if light.light_id == cues["light_id"])
        state = cues["light_state"]
        assert s.light_states[light.light_id] == state
        rgb = pixel(image, FRONT, lamp_center(light, state), s)
        channel = LAMP_CHANNEL[state]
        assert rgb[channel] >= 200 and np.delete(rgb, channel).max() <= 120, rgb
    if "lead_agent_id" in cues:
        assert_agent_visible(renderer, s, cues["lead_agent_id"], night)
    if "pedestrian_agent_id" in cues:
        assert_agent_visible(renderer, s, cues["pedestrian_agent_id"], night)
    if "turn_arrow_xy" in cues:  # the painted arrow is brighter than the asphalt beside it
        camera = TELE if in_view(TELE, s, (*cues["turn_arrow_xy"], 0.0)) else FRONT
        tele = renderer.render(s, camera)
        arrow = pixel(tele, camera, (*cues["turn_arrow_xy"], 0.0), s)
        beside_xy = np.asarray(cues["turn_arrow_xy"]) + 1.2 * s.ego_rot[:2, 1]  # 1.2 m to the ego's left
        beside = pixel(tele, camera, (*beside_xy, 0.0), s)
        assert arrow.mean() > beside.mean() + (25 if night else 100), (arrow, beside)
    if family in ("curve", "cruise") and not night:  # the lane ahead is plain asphalt
        ahead = s.ego_xyz + s.ego_rot @ np.array([1.8 + 12.0, 0.0, 0.0])
        assert tuple(pixel(image, FRONT, (ahead[0], ahead[1], 0.0), s)) == ROAD
    day_image = Renderer(drive.static_map).render(dataclasses.replace(s, night=False), FRONT)
    assert image.mean() < 0.35 * day_image.mean() if night else image.tobytes() == day_image.tobytes()


def test_wall_crossing_the_near_plane_is_clipped_not_smeared():
    wall = Box((10.0, 6.0, 3.0), (60.0, 1.0, 6.0), 0.0, (255, 0, 255), "building")  # from 20 m behind to 40 m ahead
    s = snapshot()
    image = Renderer(street(extra_boxes=[wall])).render(s, FRONT)
    shade = 0.72 - 0.2 * 0.8  # its face towards the road looks along -y
    assert tuple(pixel(image, FRONT, (10.0, 5.5, 2.0), s)) == (round(255 * shade), 0, round(255 * shade))
    assert tuple(pixel(image, FRONT, (10.0, -1.5, 0.0), s)) == ROAD
    magenta = (image[..., 0] > 100) & (image[..., 1] < 30) & (image[..., 2] > 100)
    assert magenta[:, :288].sum() > 10_000 and magenta[:, 288:].sum() == 0  # all of it left of centre
