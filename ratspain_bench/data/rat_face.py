"""Draw one stylised rat face: a small 3-D head model, posed, projected and painted with PIL.

Head coordinates: x to the image right, y down, z toward the camera (unit = half the skull width).
The four Rat Grimace Scale action units are continuous intensities in [0, 2] (0 = normal,
2 = severe) and change the geometry: orbital tightening closes the eyes, nose/cheek flattening
flattens the whisker pads and elongates the nose, ear changes fold, point and turn the ears
outward, whisker change bunches and straightens the whiskers and points them back and down.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.spatial import ConvexHull

from ..tasks import AUS

SS = 2  # supersampling factor of the drawing


@dataclass(frozen=True)
class Look:
    """What one rat (and its cage and camera) looks like; fixed per subject."""

    fur: tuple  # head fur RGB
    body: tuple  # shoulder fur RGB (hooded rats: white body, dark head)
    blaze: bool  # white stripe on the forehead (hooded rats)
    eye: tuple  # iris RGB (albino: red)
    ear_inner: tuple
    nose: tuple
    whisker: tuple  # RGBA
    head_w: float  # skull width factor
    head_h: float  # skull height factor
    snout: float  # snout length factor
    ear_size: float
    eye_size: float
    scale: float  # camera distance: head size in the frame
    wall: tuple  # cage wall RGB
    bars: int  # number of cage bars
    bedding: tuple  # bedding RGB
    light: float  # mean exposure
    blur: float  # mean blur radius (pixels of a 256 px image)
    noise: float  # mean sensor noise (8-bit units)
    yaw_sd: float  # head-pose distribution, degrees
    yaw_turned: float  # probability of a turned head ...
    yaw_turn: float  # ... and its typical angle
    pitch_mu: float
    pitch_sd: float
    roll_sd: float
    au_offset: tuple  # resting-face offsets of the four AU intensities (not pain)
    white_balance: tuple = (1.0, 1.0, 1.0)  # the camera's RGB gains (a site's; neutral by default)
    quality: tuple = (55, 93)  # JPEG quality drawn in [low, high)


def _look(**kw) -> Look:
    base = dict(body=None, blaze=False, eye=(20, 15, 15), ear_inner=(225, 150, 150), nose=(230, 140, 150),
                whisker=(245, 245, 245, 200), head_w=1.0, head_h=1.0, snout=1.0, ear_size=1.0, eye_size=1.0,
                scale=1.0, wall=(160, 170, 180), bars=7, bedding=(195, 165, 120), light=1.0, blur=0.7,
                noise=4.5, yaw_sd=10, yaw_turned=0.2, yaw_turn=35, pitch_mu=0, pitch_sd=9, roll_sd=8,
                au_offset=(0.0, 0.0, 0.0, 0.0))
    base.update(kw)
    base["body"] = base["body"] or base["fur"]
    return Look(**base)


# Six hand-designed rats: albino, black hooded, beige, cream albino, brown hooded, grey.
LOOKS = (
    _look(fur=(226, 222, 214), eye=(205, 40, 60), ear_inner=(246, 170, 175), nose=(238, 150, 160),
          ear_size=1.1, wall=(150, 170, 185), bars=7, blur=0.6, noise=4.0,
          yaw_sd=9, yaw_turned=0.10, yaw_turn=30, pitch_mu=0, pitch_sd=8, roll_sd=6, au_offset=(0, 0, 0.1, 0)),
    _look(fur=(45, 42, 44), body=(232, 228, 222), blaze=True, ear_inner=(200, 140, 140), nose=(120, 90, 95),
          whisker=(235, 235, 235, 190), head_w=1.04, head_h=0.96, snout=0.92, eye_size=0.97, scale=0.96,
          wall=(175, 165, 150), bars=9, bedding=(180, 150, 105), light=0.92, blur=0.8, noise=5.0,
          yaw_sd=16, yaw_turned=0.40, yaw_turn=45, pitch_mu=-6, pitch_sd=10, roll_sd=10,
          au_offset=(0.15, 0, 0, 0.1)),
    _look(fur=(214, 190, 150), eye=(25, 15, 12), nose=(200, 125, 120), whisker=(70, 60, 50, 200),
          head_w=0.93, head_h=1.04, snout=1.1, ear_size=0.95, eye_size=0.92, scale=1.05, wall=(140, 160, 150),
          bars=6, bedding=(210, 185, 140), light=1.06, blur=0.6, noise=3.5,
          yaw_sd=12, yaw_turned=0.25, yaw_turn=38, pitch_mu=8, pitch_sd=9, roll_sd=8, au_offset=(0.2, 0.1, 0, 0)),
    _look(fur=(230, 224, 206), eye=(190, 60, 80), ear_inner=(242, 160, 165), whisker=(255, 255, 250, 210),
          head_w=1.08, head_h=0.96, snout=0.96, ear_size=1.02, eye_size=1.06, scale=0.95, wall=(165, 175, 195),
          bars=8, bedding=(190, 160, 115), light=0.96, blur=0.75, noise=5.0,
          yaw_sd=8, yaw_turned=0.10, yaw_turn=30, pitch_mu=2, pitch_sd=7, roll_sd=14,
          au_offset=(0, 0.15, 0, 0.15)),
    _look(fur=(95, 70, 52), body=(228, 220, 208), blaze=True, ear_inner=(205, 140, 135), nose=(140, 95, 95),
          whisker=(230, 225, 220, 190), snout=1.04, ear_size=1.12, eye_size=0.95, scale=1.03, wall=(185, 175, 170),
          bars=10, bedding=(205, 180, 130), light=1.04, blur=0.7, noise=4.5,
          yaw_sd=20, yaw_turned=0.50, yaw_turn=55, pitch_mu=-3, pitch_sd=12, roll_sd=9,
          au_offset=(0, 0, 0.2, 0)),
    _look(fur=(150, 150, 148), eye=(20, 18, 20), ear_inner=(215, 150, 150), nose=(170, 120, 125),
          snout=0.97, ear_size=1.15, eye_size=0.9, scale=0.98, wall=(155, 150, 170), bars=5,
          bedding=(175, 150, 110), light=0.94, blur=0.8, noise=5.0,
          yaw_sd=14, yaw_turned=0.30, yaw_turn=40, pitch_mu=4, pitch_sd=11, roll_sd=11,
          au_offset=(0.1, 0.2, 0.1, 0)),
)


# Labs other than the default one (`synth --sites`): each changes the camera's angle spread, the lighting, the
# background, the white balance and the JPEG quality of every rat recorded there. Site 0 is the replica as it is.
SITES = (
    {},
    dict(yaw_sd=1.8, yaw_turned=1.6, light=0.82, wall=(120, 150, 125), bedding=(140, 120, 95), white_balance=(1.08, 1.0, 0.88),
         quality=(35, 70), bars=4),
    dict(yaw_sd=0.7, yaw_turned=0.6, light=1.12, wall=(205, 200, 215), bedding=(225, 215, 190), white_balance=(0.92, 1.0, 1.1),
         quality=(70, 96), bars=12),
)


def site_look(look: Look, site: int) -> Look:
    """`look` as recorded at site `site` (0: unchanged); sites past the designed three reuse them with a jitter."""
    change = SITES[site % len(SITES)]
    if not change:
        if site == 0:
            return look
        change = SITES[1 + site % (len(SITES) - 1)]
    scale = {"yaw_sd", "yaw_turned", "light"}
    out = {k: getattr(look, k) * v if k in scale else v for k, v in change.items()}
    if site >= len(SITES):  # beyond the designed sites: a jittered copy, fixed per site
        rng = np.random.default_rng(np.random.SeedSequence([0x517E, site]))
        out["light"] *= float(rng.uniform(0.9, 1.1))
        out["white_balance"] = tuple(float(v * rng.uniform(0.95, 1.05)) for v in out["white_balance"])
    out["yaw_turned"] = min(out.get("yaw_turned", look.yaw_turned), 0.9)
    return replace(look, **out)


def look_for(subject_index: int) -> Look:
    """The look of the subject at this position: the six designs, then jittered copies of them."""
    base = LOOKS[subject_index % len(LOOKS)]
    if subject_index < len(LOOKS):
        return base
    rng = np.random.default_rng(np.random.SeedSequence([0x5A7, subject_index]))

    def col(c):
        return tuple(int(np.clip(v + rng.integers(-25, 26), 0, 255)) for v in c)

    def num(v, s=0.06):
        return float(v * (1 + rng.uniform(-s, s)))

    return replace(base, fur=col(base.fur), body=col(base.body), wall=col(base.wall), bedding=col(base.bedding),
                   head_w=num(base.head_w), head_h=num(base.head_h), snout=num(base.snout),
                   ear_size=num(base.ear_size), eye_size=num(base.eye_size), scale=num(base.scale, 0.04))


# --------------------------------------------------------------------------- geometry

def _fib_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    th = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)


SPHERE = _fib_sphere(160)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation for head pose in degrees: yaw turns the nose to the image right, pitch lifts it."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def convex_hull(p: np.ndarray) -> np.ndarray:
    """Convex hull of 2-D points as a polygon (counter-clockwise)."""
    return p[ConvexHull(p).vertices]


def inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test for many points."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    hit = ((y0 > y) != (y1 > y)) & (x < xc)
    return hit.sum(1) % 2 == 1


class Camera:
    """Pose plus weak-perspective projection into the supersampled canvas."""

    def __init__(self, rot: np.ndarray, center: np.ndarray, scale: float, focal: float = 6.0):
        self.rot, self.center, self.scale, self.focal = rot, center, scale, focal

    def project(self, p: np.ndarray) -> np.ndarray:
        w = np.dot(p.reshape(-1, 3), self.rot.T)
        k = self.focal / (self.focal - w[:, 2:3])
        return self.center + self.scale * k * w[:, :2]

    def facing(self, normal: np.ndarray) -> float:
        """z of the posed unit normal: > 0 faces the camera."""
        n = self.rot @ normal
        return float(n[2] / np.linalg.norm(n))


def _ellipsoid(center, radii, d):
    """Surface point and outward normal of an ellipsoid in direction d."""
    d = np.asarray(d, float)
    d = d / np.linalg.norm(d)
    radii = np.asarray(radii, float)
    n = d / radii
    n = n / np.linalg.norm(n)
    return np.asarray(center, float) + radii * d, n


def _tangent(n: np.ndarray):
    """Horizontal-ish and vertical-ish unit tangents at a surface normal."""
    u = np.cross([0.0, 1.0, 0.0], n)
    u = u / (np.linalg.norm(u) + 1e-9)
    v = np.cross(n, u)
    return u, v


def _patch(c, n, ru, rv, k=24, t0=0.0, t1=2 * np.pi):
    u, v = _tangent(n)
    t = np.linspace(t0, t1, k, endpoint=False)
    return c + np.outer(np.cos(t) * ru, u) + np.outer(np.sin(t) * rv, v)


def _mix(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _shade(c, f):
    return tuple(min(255, max(0, int(x * f))) for x in c)


def _poly(draw, pts, fill, outline=None, width=1):
    draw.polygon([tuple(p) for p in np.round(pts, 1)], fill=fill, outline=outline, width=width)


def _line(draw, pts, fill, width):
    draw.line([tuple(p) for p in np.round(pts, 1)], fill=fill, width=width, joint="curve")


# --------------------------------------------------------------------------- background

def _background(look: Look, rng: np.random.Generator, n: int) -> Image.Image:
    """Cage wall with bars and wood-shaving bedding, drawn at the supersampled size n."""
    m = n // 4
    low = np.asarray(Image.fromarray(rng.normal(128, 20, (10, 10)).clip(0, 255).astype(np.uint8)).resize(
        (m, m), Image.BILINEAR), np.float32) - 128
    grad = np.linspace(-1, 1, m, dtype=np.float32)[:, None] * rng.uniform(-25, 25)
    img = np.empty((m, m, 3), np.float32)
    img[:] = (low + grad)[..., None] + np.asarray(look.wall, np.float32) * rng.uniform(0.9, 1.1)
    horizon = int(m * rng.uniform(0.62, 0.8))
    img[horizon:] = np.asarray(look.bedding, np.float32) + rng.normal(0, 28, (m - horizon, m, 1)).astype(np.float32)
    im = Image.fromarray(img.clip(0, 255).astype(np.uint8)).resize((n, n), Image.BILINEAR)
    d = ImageDraw.Draw(im, "RGBA")
    horizon *= 4
    step = n / look.bars
    off, tilt = rng.uniform(0, step), rng.uniform(-0.06, 0.06) * n
    w = max(2, int(n * 0.012))
    for i in range(look.bars + 1):
        x = off + i * step
        d.line([(x, 0), (x + tilt, horizon)], fill=(235, 240, 245, 150), width=w)
        d.line([(x + w, 0), (x + w + tilt, horizon)], fill=(40, 45, 55, 90), width=max(1, w // 2))
    k = n // 12  # wood shavings
    xy = np.stack([rng.uniform(0, n, k), rng.uniform(horizon, n, k)], 1)
    ang, r, f = rng.uniform(0, np.pi, k), rng.uniform(3, 12, k) * n / 512, rng.uniform(0.7, 1.2, k)
    end = xy + np.stack([np.cos(ang), np.sin(ang)], 1) * r[:, None]
    lw = max(1, int(2 * n / 512))
    for p0, p1, fi in zip(xy.tolist(), end.tolist(), f.tolist()):
        d.line([tuple(p0), tuple(p1)], fill=_shade(look.bedding, fi), width=lw)
    return im


# --------------------------------------------------------------------------- face

class _Face:
    """Paints the posed head onto the canvas and records the visible AU boxes (output pixels)."""

    def __init__(self, look: Look, au: dict, pose: tuple, rng: np.random.Generator, size: int):
        self.look, self.rng, self.size, self.n = look, rng, size, size * SS
        self.io, self.ino, self.iea, self.iwh = (float(au[k]) for k in AUS)
        n = self.n
        self.cam = Camera(rotation(*pose), np.array([n * (0.5 + rng.normal(0, 0.03)), n * (0.5 + rng.normal(0, 0.03))]),
                          n / 3.9 * look.scale * rng.uniform(0.93, 1.07))
        self.skull_c = np.array([0, -0.15, 0])
        self.skull_r = np.array([look.head_w, 0.88 * look.head_h, 0.95])
        self.snout_c = np.array([0, 0.35, 0.7 * look.snout])  # the cheeks narrow as the muzzle flattens
        self.snout_r = np.array([0.58 * look.head_w * (1 - 0.07 * self.ino), 0.5, 0.78 * look.snout])
        self.head_pts = np.vstack([self.skull_c + SPHERE * self.skull_r, self.snout_c + SPHERE * self.snout_r])
        self.hull = convex_hull(self.cam.project(self.head_pts))
        self.boxes = {k: [] for k in AUS}
        self.ear_centres: dict[int, np.ndarray] = {}  # side -> the drawn ear's centre (drawing pixels)
        self.ear_outlines: list[np.ndarray] = []

    def box(self, key: str, pts: np.ndarray, behind: bool = False, pad: float = 0.0) -> None:
        """Record the box of `pts`; parts drawn behind the head count only outside its outline."""
        if behind:
            pts = pts[~inside(self.hull, pts)]
        if len(pts) == 0:
            return
        lo = np.clip((pts.min(0) - pad) / SS, 0, self.size)
        hi = np.clip((pts.max(0) + pad) / SS, 0, self.size)
        if hi[0] - lo[0] >= 1 and hi[1] - lo[1] >= 1:
            self.boxes[key].append([int(np.floor(lo[0])), int(np.floor(lo[1])),
                                    int(np.ceil(hi[0])), int(np.ceil(hi[1]))])

    def whiskers(self) -> list:
        """Whisker polylines per side: relaxed = curved forward fan, pain = straight, bunched, back and down."""
        t, rng, sl = self.iwh / 2, self.rng, self.look.snout
        sides = []
        for s in (-1, 1):
            c, nn = _ellipsoid(self.snout_c, self.snout_r, [0.62 * s, 0.45, 0.65])
            lines = []
            for fr in np.linspace(0, 1, 11):
                elev = np.radians((1 - t) * (-38 + 66 * fr) + t * (-24 + 18 * fr) + rng.normal(0, 4))
                az = np.radians((1 - t) * 18 - t * 40 + rng.normal(0, 5))
                dvec = np.array([s * np.cos(elev) * np.cos(az), -np.sin(elev), np.cos(elev) * np.sin(az)])
                bend = (1 - t) * 0.45 + rng.normal(0, 0.05)
                length = (1.05 + 0.5 * np.sin(np.pi * fr) + rng.normal(0, 0.08)) * sl
                root = c + np.array([0, (fr - 0.5) * 0.25, 0]) + 0.05 * nn
                tt = np.linspace(0, 1, 8)[:, None]
                lines.append(self.cam.project(root + length * (tt * dvec + bend * tt ** 2 * np.array([0, 1, 0.35]))))
            sides.append((self.cam.facing(nn) < 0.05, lines))
        return sides

    def draw_whiskers(self, d, side) -> None:
        behind, lines = side
        width = max(1, int(round(2 * self.n / 256)))
        for ln in lines:
            _line(d, ln, self.look.whisker, width)
        self.box("whiskers", np.vstack(lines), behind)

    def ears(self, d) -> None:
        """Relaxed: round, upright, facing forward. Pain: folded, pointed, tilted and turned outward."""
        look, iea, rng, cam = self.look, self.iea, self.rng, self.cam
        r = 0.55 * look.ear_size
        p = iea / 2
        tt = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        up = np.clip(np.sin(tt), 0, None)
        u = np.cos(tt) * (1 - 0.75 * p * up ** 1.2) * (1 - 0.25 * p)
        v = 0.85 + np.sin(tt) * (1 + 0.35 * p * up)
        for s in (-1, 1):
            anchor, _ = _ellipsoid(self.skull_c, self.skull_r, [0.55 * s, -0.82, -0.12])
            theta = np.radians(15 + 27 * iea + rng.normal(0, 3))  # outward tilt from vertical
            phi = np.radians(8 + 32 * iea + rng.normal(0, 4))  # turn to face sideways
            psi = np.radians(5 + 12 * iea)  # lean back
            a = np.array([s * np.sin(theta), -np.cos(theta), 0.0])  # along the ear
            w = np.array([s * np.cos(theta), np.sin(theta), 0.0])  # across, pointing outward
            nrm = np.array([0.0, 0.0, 1.0])
            nrm, w = nrm * np.cos(phi) + w * np.sin(phi), w * np.cos(phi) - nrm * np.sin(phi)
            a, nrm = a * np.cos(psi) - nrm * np.sin(psi), nrm * np.cos(psi) + a * np.sin(psi)
            outer = cam.project(anchor + r * (np.outer(u, w) + np.outer(v, a)))
            self.ear_centres[s] = outer.mean(0)
            self.ear_outlines.append(outer)
            face = cam.facing(nrm)
            _poly(d, outer, _shade(look.fur, 0.95 + 0.1 * abs(face)), outline=_shade(look.fur, 0.7), width=SS)
            if face > 0.05:
                inner = anchor + r * (np.outer(0.68 * u, w) + np.outer(0.98 + 0.7 * (v - 0.98), a))
                _poly(d, cam.project(inner), _mix(_shade(look.fur, 0.8), look.ear_inner, min(1, 0.4 + face)))
            if iea > 0.8:  # fold line
                fold = anchor + r * np.outer(np.linspace(0.3, 1.6, 6), a) + r * 0.15 * w
                _line(d, cam.project(fold), _shade(look.fur, 0.6), SS)
            self.box("ears", outer, behind=True)

    def head(self, d) -> None:
        """Head outline with fake shading, fur strokes and (hooded rats) the white blaze."""
        look, rng, cam, hull = self.look, self.rng, self.cam, self.hull
        light_dir = np.array([rng.normal(-0.3, 0.2), rng.normal(-0.4, 0.2)])
        cen = hull.mean(0)
        for i, (shrink, f) in enumerate(((1.0, 0.78), (0.92, 0.88), (0.8, 0.96), (0.62, 1.03))):
            _poly(d, cen + light_dir * cam.scale * 0.25 * i / 3 + (hull - cen) * shrink, _shade(look.fur, f))
        k = 120
        q0 = cam.project(self.head_pts[rng.integers(len(self.head_pts), size=k)] * rng.uniform(0.55, 0.98, (k, 1)))
        dirv = q0 - cam.project(self.snout_c + [0, 0, 0.6])
        dirv *= cam.scale * rng.uniform(0.05, 0.12, (k, 1)) / (np.linalg.norm(dirv, axis=1, keepdims=True) + 1e-6)
        for p0, p1, f in zip(q0.tolist(), (q0 + dirv).tolist(), rng.uniform(0.75, 1.15, k).tolist()):
            d.line([tuple(p0), tuple(p1)], fill=_shade(look.fur, f) + (120,), width=SS)
        if look.blaze:
            sl = look.snout
            pts = np.array([[0, -1.0, 0.35], [0.16, -0.35, 0.82], [0.1, 0.3, 1.3 * sl], [-0.1, 0.3, 1.3 * sl],
                            [-0.16, -0.35, 0.82]])
            _poly(d, cam.project(pts), (235, 232, 226, 230))

    def muzzle(self, d) -> None:
        """Whisker pads (bulging when relaxed, flat in pain), nose (elongating in pain), mouth."""
        look, ino, cam = self.look, self.ino, self.cam
        parts = []
        bulge = 1 - ino / 2
        for s in (-1, 1):
            c, nn = _ellipsoid(self.snout_c, self.snout_r, [0.6 * s, 0.4, 0.7])
            if cam.facing(nn) <= 0.02:
                continue
            pad = cam.project(_patch(c + 0.04 * bulge * nn, nn, 0.3 * (0.75 + 0.25 * bulge), 0.24 * (0.55 + 0.45 * bulge)))
            _poly(d, pad, _shade(look.fur, 1.0 + 0.12 * bulge))
            if bulge > 0.15:  # the crease under a bulging pad
                arc = cam.project(_patch(c + 0.02 * nn, nn, 0.3, 0.26, 12, 0.15 * np.pi, 0.85 * np.pi))
                _line(d, arc, _shade(look.fur, 0.6) + (int(200 * bulge),), SS * 2)
            grid = np.arange(12)
            fol = cam.project(c + nn * 0.03 + np.stack([s * (grid % 4 - 1.5) * 0.07, (grid // 4 - 1) * 0.07,
                                                        np.zeros(12)], 1))
            rr = SS * 0.8
            for fx, fy in fol.tolist():  # whisker follicles
                d.ellipse([fx - rr, fy - rr, fx + rr, fy + rr], fill=_shade(look.fur, 0.55) + (150,))
            parts.append(pad)
        tip, tn = _ellipsoid(self.snout_c, self.snout_r, [0, 0.2, 1.0])
        if cam.facing(tn) > -0.3:
            el, wid = 1 + 0.5 * ino, 1 - 0.12 * ino
            shape = np.array([[-0.15 * wid, -0.08], [0.15 * wid, -0.08], [0.06 * wid, 0.05 * el], [0, 0.08 * el],
                              [-0.06 * wid, 0.05 * el]])
            u, v = _tangent(tn)
            nose = cam.project(tip + 0.02 * tn + np.outer(shape[:, 0], u) + np.outer(shape[:, 1], v))
            _poly(d, nose, look.nose)
            rr = cam.scale * 0.022
            for s in (-1, 1):  # nostrils
                q = cam.project(tip + 0.03 * tn + 0.07 * wid * s * u - 0.03 * v)[0]
                d.ellipse([q[0] - rr * 1.3, q[1] - rr, q[0] + rr * 1.3, q[1] + rr], fill=_shade(look.nose, 0.45))
            m0 = tip + (0.26 + 0.06 * ino) * v
            dark = _shade(look.fur, 0.5)
            _line(d, cam.project(np.array([tip + 0.08 * el * v, m0])), dark, SS)
            for s in (-1, 1):
                _line(d, cam.project(np.array([m0, m0 + 0.1 * s * u - 0.05 * v])), dark, SS)
            parts.append(nose)
        if parts:
            self.box("nose", np.vstack(parts), pad=SS * 2)

    def landmarks(self) -> dict[str, tuple[float, float, bool]]:
        """{part: (x, y, in view)} in pixels of the saved image: the nose tip, the eyes' centres and the ears' centres,
        the rat's own left and right (its left eye is on the image's right of a frontal face). An eye turned away, a nose
        facing away or an ear hidden behind the head is not in view (what a tracker scores with a low likelihood)."""
        cam = self.cam
        tip, tn = _ellipsoid(self.snout_c, self.snout_r, [0, 0.2, 1.0])
        out = {"nose": (*(cam.project(tip)[0] / SS), cam.facing(tn) > -0.3)}
        for s, side in ((1, "left"), (-1, "right")):
            c, nn = _ellipsoid(self.skull_c, self.skull_r, [0.62 * s, -0.18, 0.76])
            out[f"{side}_eye"] = (*(cam.project(c)[0] / SS), cam.facing(nn) > 0.12)
            ear = self.ear_centres.get(s)
            if ear is not None:
                out[f"{side}_ear"] = (*(ear / SS), not bool(inside(self.hull, ear[None])[0]))
        return {k: (float(x), float(y), bool(v)) for k, (x, y, v) in out.items()}

    def face_box(self) -> list[float]:
        """The face's true box x, y, w, h (pixels of the saved image): the square around the head's outline and its
        ears, centred on their bounding box."""
        pts = np.vstack([self.hull, *self.ear_outlines]) / SS
        lo, hi = pts.min(0), pts.max(0)
        side, c = float((hi - lo).max()), (lo + hi) / 2
        return [float(c[0] - side / 2), float(c[1] - side / 2), side, side]

    def eyes(self, d) -> None:
        """Orbital tightening: 0 open, 1 half closed, 2 a slit with creases."""
        look, io_, cam = self.look, self.io, self.cam
        er = 0.22 * look.eye_size
        open_ = float(np.clip(1 - 0.45 * io_, 0.08, 1))
        for s in (-1, 1):
            c, nn = _ellipsoid(self.skull_c, self.skull_r, [0.62 * s, -0.18, 0.76])
            if cam.facing(nn) <= 0.12:  # turned away: hidden
                continue
            rim = cam.project(_patch(c + 0.02 * nn, nn, er * 1.25, er * (0.35 + 0.9 * open_)))
            _poly(d, rim, _shade(look.fur, 0.55))
            _poly(d, cam.project(_patch(c + 0.04 * nn, nn, er, er * open_)), look.eye)
            if open_ > 0.35:  # specular highlight
                hl = cam.project(c + 0.05 * nn + er * 0.35 * np.array([-0.5, -0.6, 0]))[0]
                rr = cam.scale * er * 0.22 * open_
                d.ellipse([hl[0] - rr, hl[1] - rr, hl[0] + rr, hl[1] + rr], fill=(255, 255, 255, 220))
            if io_ > 0.7:  # squint creases
                u, v = _tangent(nn)
                x = np.linspace(-1, 1, 6)
                for dy in (-1.0, 1.0):
                    cr = c + 0.03 * nn + np.outer(1.2 * x * er, u) + np.outer(dy * er * (open_ + 0.25 + 0.1 * x ** 2), v)
                    _line(d, cam.project(cr), _shade(look.fur, 0.5) + (int(110 * io_),), SS)
            self.box("orbital", rim, pad=cam.scale * er * 0.35)


def draw_face(look: Look, au: dict, pose: tuple, rng: np.random.Generator, size: int, quality: int,
              blur: float, noise: float, light: float, landmarks: bool = False) -> tuple:
    """Render one JPEG of `size` px; returns its bytes and the visible AU boxes {au: [[x0, y0, x1, y1], ...]}, and with
    `landmarks` also {"parts": the keypoints a tracker would label (`_Face.landmarks`), "face": the true face box
    (`_Face.face_box`)}, computed after drawing from no random draw: the image is the same either way.

    au: continuous intensities in [0, 2] keyed by `AUS`; pose: (yaw, pitch, roll) degrees.
    Boxes are in pixels of the saved image, x1/y1 exclusive, clipped to the frame.
    """
    im = _background(look, rng, size * SS)
    d = ImageDraw.Draw(im, "RGBA")
    face = _Face(look, au, pose, rng, size)
    body = face.cam.project(np.array([0, 1.2, -1.4]))[0]  # shoulders behind the head
    bw, bh = face.cam.scale * 1.4, face.cam.scale * 1.0
    d.ellipse([body[0] - bw, body[1] - bh * 0.6, body[0] + bw, body[1] + bh * 2], fill=_shade(look.body, 0.85))
    whiskers = face.whiskers()
    for side in whiskers:  # the far side's whiskers are mostly hidden by the head
        if side[0]:
            face.draw_whiskers(d, side)
    face.ears(d)  # before the head, which hides their bases
    face.head(d)
    face.muzzle(d)
    face.eyes(d)
    for side in whiskers:
        if not side[0]:
            face.draw_whiskers(d, side)

    # camera: downscale, blur, uneven lighting and tint, sensor noise, JPEG
    im = im.reduce(SS)
    if blur > 0.05:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(im, np.float32)
    x = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    g = light * (1 + rng.uniform(-0.25, 0.25) * x[None, :] + rng.uniform(-0.25, 0.25) * x[:, None]
                 - 0.5 * (x[None, :] ** 2 + x[:, None] ** 2))
    tint = (1 + rng.normal(0, 0.03, 3)).astype(np.float32)
    if look.white_balance != (1.0, 1.0, 1.0):  # a site's camera (the default's arithmetic stays as it was)
        tint = tint * np.asarray(look.white_balance, np.float32)
    a = a * g[..., None] * tint + rng.standard_normal((size, size, 1), np.float32) * np.float32(noise)  # luminance noise
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=int(quality))
    if landmarks:
        return buf.getvalue(), face.boxes, {"parts": face.landmarks(), "face": face.face_box()}
    return buf.getvalue(), face.boxes
