"""Low-level pieces of the camera renderer: object meshes, near-plane clipping, the sky.

Object meshes are lists of flat convex polygons, each padded to `N_VERTS` vertices (a quad
repeats its last vertex) so that a whole scene's polygons stack into one (P, N_VERTS, 3) array.
"""

from dataclasses import dataclass

import numpy as np

N_VERTS = 8

# Outward normals and corner signs of the faces of a unit box: front, rear, left, right, top, bottom.
_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
_FACE_CORNERS = np.array([
    [[1, -1, -1], [1, 1, -1], [1, 1, 1], [1, -1, 1]],
    [[-1, 1, -1], [-1, -1, -1], [-1, -1, 1], [-1, 1, 1]],
    [[1, 1, -1], [-1, 1, -1], [-1, 1, 1], [1, 1, 1]],
    [[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1]],
    [[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]],
    [[-1, -1, -1], [-1, 1, -1], [1, 1, -1], [1, -1, -1]],
], float)
FACES = ("front", "rear", "left", "right", "top", "bottom")


@dataclass(frozen=True)
class Mesh:
    """Polygons of one object in its own frame (x forward, y left, z up), in drawing order."""

    verts: np.ndarray  # (P, N_VERTS, 3)
    normals: np.ndarray  # (P, 3) outward
    day: np.ndarray  # (P, 3) float colour by day, before shading
    night: np.ndarray  # (P, 3) float colour at night, before lighting
    emissive: np.ndarray  # (P,) bool: drawn unshaded, and unlit at night
    lamp: np.ndarray  # (P,) int8: index in LIGHT_STATES of the signal lamp it is, else -1
    glow: np.ndarray  # (P,) bool: a halo drawn only at night around its lit lamp

    @staticmethod
    def concat(meshes: list["Mesh"]) -> "Mesh":
        return Mesh(*(np.concatenate([getattr(m, f) for m in meshes]) for f in Mesh.__dataclass_fields__))

    def moved(self, yaw: float, xyz) -> tuple[np.ndarray, np.ndarray]:
        """World vertices and normals after turning by `yaw` and moving to `xyz`."""
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # row-vector form of R(yaw)
        return self.verts @ rot + np.asarray(xyz, float), self.normals @ rot


def _mesh(polys: list[np.ndarray], normals, day, night=None, emissive=False, lamp=-1, glow=False) -> Mesh:
    n = len(polys)
    padded = np.stack([np.concatenate([p, np.repeat(p[-1:], N_VERTS - len(p), 0)]) for p in polys])
    day = np.broadcast_to(np.asarray(day, float), (n, 3))
    night = day if night is None else np.broadcast_to(np.asarray(night, float), (n, 3))
    return Mesh(padded, np.asarray(normals, float).reshape(n, 3), day.copy(), night.copy(),
                np.full(n, emissive), np.full(n, lamp, np.int8), np.full(n, glow))


def box(center, size, colors: dict | tuple, faces=FACES, emissive=False, night=None) -> Mesh:
    """An axis-aligned box; `colors` is one colour or a colour per face name (FACES)."""
    half = np.asarray(size, float) / 2
    index = [FACES.index(f) for f in faces]
    polys = list(_FACE_CORNERS[index] * half + np.asarray(center, float))
    day = [colors[f] for f in faces] if isinstance(colors, dict) else colors
    return _mesh(polys, _FACE_NORMALS[index], day, night, emissive)


def decal(x: float, y_range, z_range, facing: int, day, night=None, emissive=False) -> Mesh:
    """A rectangle in the plane x = `x` facing +x (facing=1) or -x (facing=-1)."""
    (y0, y1), (z0, z1) = y_range, z_range
    poly = np.array([[x, y0, z0], [x, y1, z0], [x, y1, z1], [x, y0, z1]], float)
    return _mesh([poly], [facing, 0, 0], day, night, emissive)


def disc(x: float, z: float, radius: float, facing: int, day, night=None, emissive=False,
         lamp=-1, glow=False) -> Mesh:
    """An octagon of `radius` centred on (x, 0, z) in the plane x = const, facing +-x."""
    a = (np.arange(N_VERTS) + 0.5) * 2 * np.pi / N_VERTS
    poly = np.stack([np.full(N_VERTS, x), radius * np.cos(a), z + radius * np.sin(a)], -1)
    return _mesh([poly], [facing, 0, 0], day, night, emissive, lamp, glow)


def clip_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon (K, 3) to z >= near; may be empty."""
    out = []
    prev = poly[-1]
    prev_in = prev[2] >= near
    for cur in poly:
        cur_in = cur[2] >= near
        if cur_in != prev_in:
            t = (near - prev[2]) / (cur[2] - prev[2])
            out.append(prev + t * (cur - prev))
        if cur_in:
            out.append(cur)
        prev, prev_in = cur, cur_in
    return np.array(out).reshape(-1, 3)


def sky_and_ground(height: int, width: int, focal_px: float, up_in_camera: np.ndarray,
                   sky: tuple, horizon: tuple, far_ground: tuple) -> np.ndarray:
    """(H, W, 3) uint8 background: a sky gradient above the horizon and haze fading into
    `far_ground` below it. `up_in_camera` is the world up vector in the optical frame."""
    u = (np.arange(width) + 0.5 - width / 2) / focal_px
    v = (np.arange(height) + 0.5 - height / 2) / focal_px
    up = np.asarray(up_in_camera, float)
    elevation = (up[0] * u[None, :] + up[1] * v[:, None] + up[2]) / np.sqrt(
        u[None, :] ** 2 + v[:, None] ** 2 + 1)
    t_sky = np.clip(elevation / 0.6, 0, 1)[..., None] ** 0.7
    t_ground = np.clip(-elevation / 0.05, 0, 1)[..., None]
    horizon, sky, far_ground = (np.asarray(c, float) for c in (horizon, sky, far_ground))
    image = np.where(elevation[..., None] >= 0, horizon + (sky - horizon) * t_sky,
                     horizon + (far_ground - horizon) * t_ground)
    return np.round(image).astype(np.uint8)
