"""Procedurally drawn "human action" photos: the project's embedded demo dataset.

The real dataset (Hugging Face ``Bingsu/Human_Action_Recognition``) needs the internet; this
module draws offline stand-ins for its 15 classes.  Each image shows thick-limbed stick people
whose *pose and props* carry the class (phone at the ear = calling, bicycle = cycling, ...).
Everything else -- palette, background, clutter, bystanders, position, scale, rotation, line
width and pixel noise -- is sampled the same way for every class, so a model can only succeed
by looking at the figures.

Scenes are built in body units (a standing figure is 1 tall, hip at the origin, y pointing
down), mapped onto a 2x canvas by a random similarity transform and downsampled with LANCZOS.
Every sample draws from its own random stream (:func:`sample_rng`), so a dataset is
byte-identical for a seed whatever the order in which it is generated.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from posevit.core.labels import ACTION_CLASSES

SUPERSAMPLE = 2  # draw at 2x, then LANCZOS-downsample for anti-aliasing
FIGURE_HEIGHT = (0.62, 0.82)  # standing height / canvas side, drawn independently of the class
BYSTANDER_P = 0.25  # a neutral extra person in any class: "two people" is not only fighting/hugging
HEAD_R, NECK, TORSO = 0.1, 0.03, 0.3  # big heads: four classes carry their cue at the head
UPPER_ARM, FOREARM, THIGH, SHIN, HAND_R = 0.17, 0.16, 0.23, 0.23, 0.032
GROUND = THIGH + SHIN  # feet level of a figure standing with its hip at y = 0
_HAIR_SPAN = np.array([185, 150, 90])  # natural hair colours: black + t^2 * this (t=1: blond)


# --- public API ----------------------------------------------------------------------------------


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of sample ``index``: independent of generation order, so runs can be parallel."""
    return np.random.default_rng([seed, index])


def generate_demo_images(images_per_class: int, image_size: int, seed: int) -> Iterator[tuple[Image.Image, int]]:
    """Yield ``images_per_class`` images of every class, interleaved (sample ``i`` has label ``i % 15``)."""
    n = len(ACTION_CLASSES)
    for i in range(images_per_class * n):
        yield render_sample(i % n, sample_rng(seed, i), image_size), i % n


def render_sample(label: int, rng: np.random.Generator, image_size: int) -> Image.Image:
    """Draw one RGB ``image_size`` x ``image_size`` photo of action ``ACTION_CLASSES[label]``."""
    size = image_size * SUPERSAMPLE
    palette = [_random_colour(rng) for _ in range(7)]  # the background uses the first two
    img = _background(rng, size, palette)
    draw = ImageDraw.Draw(img)
    clutter = Scene(rng, palette)
    _clutter(clutter, int(rng.integers(0, 4)), 0.25)
    _rasterise(draw, clutter.ops, size)
    height = size * rng.uniform(*FIGURE_HEIGHT)  # the figure scale, drawn before (and apart from) the class
    if rng.random() < BYSTANDER_P:  # a smaller person behind the action
        other = Scene(rng, palette, palette[:2])
        _bystander(other)
        m = height * rng.uniform(0.45, 0.75) * _rotation(rng.uniform(-5, 5))
        _rasterise(draw, _place(other.ops, m, size, rng, slack=0.15))
    scene = Scene(rng, palette, palette[:2])
    _DRAW_BY_LABEL[label](scene)
    _rasterise(draw, _place(scene.ops, height * _rotation(rng.uniform(-10, 10)), size, rng))  # props may reach out
    if rng.random() < 0.15:  # a little foreground clutter that may occlude the figure
        front = Scene(rng, palette)
        _clutter(front, int(rng.integers(1, 3)), 0.08)
        _rasterise(draw, front.ops, size)
    small = np.asarray(img.resize((image_size, image_size), Image.Resampling.LANCZOS), np.float32)
    small += rng.standard_normal(small.shape, dtype=np.float32) * rng.uniform(2, 6)  # sensor noise
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8), "RGB")


# --- rendering -----------------------------------------------------------------------------------


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 1.0), rng.uniform(0.15, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _background(rng: np.random.Generator, size: int, palette: list) -> Image.Image:
    c0, c1 = np.array(palette[0], np.float32), np.array(palette[1], np.float32)
    if rng.random() < 0.35:
        return Image.new("RGB", (size, size), palette[0])
    a, g = rng.uniform(0, 2 * math.pi), np.linspace(0.0, 1.0, 8, dtype=np.float32)
    t = np.add.outer(g * math.sin(a), g * math.cos(a))  # a linear gradient in a random direction
    t = (t - t.min()) / (t.max() - t.min())
    small = Image.fromarray((c0 + t[..., None] * (c1 - c0)).astype(np.uint8), "RGB")
    return small.resize((size, size), Image.Resampling.BILINEAR)  # a linear ramp survives bilinear upsampling


def _clutter(sc: Scene, n: int, max_size: float) -> None:
    """Random shapes in canvas units, the same for every class; some look like limbs or wheels."""
    if max_size > 0.2 and sc.coin(0.4):  # a floor
        y = sc.u(0.55, 0.85)
        sc.poly([(0, y), (1, y + sc.u(-0.1, 0.1)), (1, 1.1), (0, 1.1)], sc.any_colour())
    for _ in range(n):
        c, s, kind = sc.rng.uniform(0, 1, 2), sc.u(0.04, max_size), int(sc.rng.integers(5))
        ax = _vec(sc.u(0, 360))
        if kind == 0:
            sc.rect(c, s, s * sc.u(0.3, 1.5), sc.any_colour(), ax)
        elif kind == 1:
            sc.ellipse(c, s / 2, s * sc.u(0.15, 0.5), sc.any_colour(), ax)
        elif kind == 2:
            sc.line([c, c + s * ax, c + s * ax + s * _vec(sc.u(0, 360))], sc.u(0.01, 0.04), sc.any_colour())
        elif kind == 3:
            sc.poly(c + s * np.stack([_vec(sc.u(0, 360)) for _ in range(3)]), sc.any_colour())
        else:
            sc.ring(c, s / 2, sc.u(0.008, 0.025), sc.any_colour())


def _place(ops: list, m: np.ndarray, canvas: int, rng: np.random.Generator, slack: float = 0.03) -> list:
    """Map ops through the matrix ``m``, then shift them to a random position where they fit the canvas."""
    scale = math.sqrt(abs(np.linalg.det(m)))
    placed = [(kind, pts @ m.T, w * scale, col) for kind, pts, w, col in ops]
    points = np.concatenate([q for _, q, _, _ in placed])
    pad = np.repeat([w / 2 for _, _, w, _ in placed], [len(q) for _, q, _, _ in placed])[:, None]
    lo, hi = (points - pad).min(0), (points + pad).max(0)  # the bounding box, line widths included
    a, b = -lo - slack * canvas, canvas - hi + slack * canvas
    t = np.where(a < b, a + rng.random(2) * (b - a), (a + b) / 2)
    return [(kind, pts + t, w, col) for kind, pts, w, col in placed]


def _rasterise(draw: ImageDraw.ImageDraw, ops: list, scale: float = 1.0) -> None:
    """Draw ops given in pixels, or in canvas units when ``scale`` is the canvas size."""
    for kind, pts, w, col in ops:
        if scale != 1.0:
            pts, w = pts * scale, w * scale
        if kind == "disc":
            (x, y), r = pts[0], w
            draw.ellipse((x - r, y - r, x + r, y + r), fill=col)
        elif kind == "poly":
            draw.polygon(pts.ravel().tolist(), fill=col)
        else:
            width = max(1, int(round(w)))
            draw.line(pts.ravel().tolist(), fill=col, width=width, joint="curve")
            r = width / 2  # round caps, so that limbs join smoothly
            for x, y in (pts[0], pts[-1]):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=col)


# --- geometry and the drawing model --------------------------------------------------------------


def _vec(deg: float, s: float = 1.0) -> np.ndarray:
    """Unit vector ``deg`` degrees away from straight down, turning towards the x-sign ``s``."""
    r = math.radians(deg)
    return np.array([s * math.sin(r), math.cos(r)])


def _rotation(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s], [s, c]])


def _frame(c, ax, x, y) -> np.ndarray:
    """Points given in a local frame (x along the vector ``ax``) mapped to scene coordinates around ``c``."""
    ax = np.asarray(ax, float) / np.hypot(*ax)
    return np.asarray(c, float) + np.outer(x, ax) + np.outer(y, [-ax[1], ax[0]])


def _ik(a, t, l1: float, l2: float, hint) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone inverse kinematics: (joint, end) of a limb from ``a`` reaching for ``t``, bent towards ``hint``."""
    a, t = np.asarray(a, float), np.asarray(t, float)
    d = float(np.hypot(*(t - a))) or 1e-6
    u, d = (t - a) / d, min(max(d, abs(l1 - l2) + 1e-3), l1 + l2 - 1e-3)  # out of reach: stretch fully
    cos_a = (l1 * l1 + d * d - l2 * l2) / (2 * l1 * d)
    n = np.array([-u[1], u[0]])
    n = n if n @ np.asarray(hint, float) >= 0 else -n
    return a + l1 * (cos_a * u + math.sqrt(max(0.0, 1 - cos_a * cos_a)) * n), a + d * u


class Scene:
    """A vector drawing: primitives in scene units, rasterised later under one transform.

    Clothes, props and clutter all take their colours from the per-image ``palette``,
    so no colour (nor the number of colours) is specific to a class.
    """

    def __init__(self, rng: np.random.Generator, palette: list, avoid: Sequence = ()):
        self.rng, self.palette, self.avoid = rng, palette, list(avoid)
        self.ops: list[tuple] = []

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def sign(self) -> int:
        return 1 if self.rng.random() < 0.5 else -1

    def any_colour(self) -> tuple[int, int, int]:
        return self.palette[int(self.rng.integers(len(self.palette)))]

    def pick(self, *avoid) -> tuple[int, int, int]:
        """A random palette colour that contrasts with the background and ``avoid`` (else the most distant one)."""
        best, best_d = self.palette[0], -1.0
        for i in self.rng.permutation(len(self.palette)):
            d = min(math.dist(self.palette[i], a) for a in (*self.avoid, *avoid))
            if d > 110:
                return self.palette[i]
            best, best_d = (self.palette[i], d) if d > best_d else (best, best_d)
        return best

    def line(self, pts, width: float, colour) -> None:
        self.ops.append(("line", np.asarray(pts, float), width, colour))

    def disc(self, c, r: float, colour) -> None:
        self.ops.append(("disc", np.asarray([c], float), r, colour))

    def poly(self, pts, colour) -> None:
        self.ops.append(("poly", np.asarray(pts, float), 0.0, colour))

    def ellipse(self, c, rx: float, ry: float, colour, ax=(1.0, 0.0), n: int = 20) -> None:
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        self.poly(_frame(c, ax, rx * np.cos(t), ry * np.sin(t)), colour)

    def rect(self, c, w: float, h: float, colour, ax=(1.0, 0.0)) -> None:
        """Rectangle centred on ``c`` whose ``w`` side runs along the vector ``ax``."""
        self.poly(_frame(c, ax, np.array([-w, w, w, -w]) / 2, np.array([-h, -h, h, h]) / 2), colour)

    def ring(self, c, r: float, width: float, colour, n: int = 24) -> None:
        t = np.linspace(0, 2 * math.pi, n + 1)
        self.line(np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], 1), width, colour)


class Person:
    """A stick figure with thick limbs, posed by joint angles or by inverse kinematics.

    Angles are degrees from straight down, positive = forward (side view) or outward
    (front view).  Limb sides: in side view ``+1`` is the near limb and ``-1`` the far
    one; in front view the sign is the image side.
    """

    def __init__(
        self,
        sc: Scene,
        hip=(0.0, 0.0),
        facing: int = 1,
        front: bool = False,
        lean: float = 0.0,
        tilt: float = 0.0,
        k: float = 1.0,
        look_down: bool = False,
    ):
        self.sc, self.f, self.front, self.k, self.look_down = sc, facing, front, k, look_down
        self.hip, up = np.asarray(hip, float), _vec(180 - lean, facing)
        self.perp, self.shoulder = np.array([-up[1], up[0]]), self.hip + TORSO * k * up
        a = math.radians(lean + tilt)  # head frame: hu = the head's up, hf = where the face points
        self.hu, self.hf = _vec(180 - lean - tilt, facing), np.array([facing * math.cos(a), math.sin(a)])
        self.r = HEAD_R * k
        self.head = self.shoulder + (NECK * k + self.r * (0.6 if look_down and front else 1.0)) * self.hu
        t = sc.rng.random()  # skin: light to dark tones, the same range for everybody
        self.skin = tuple(
            int(a + t * (b - a) + sc.u(-12, 12)) for a, b in zip((250, 220, 190), (95, 60, 40), strict=True)
        )
        self.shirt = sc.pick(self.skin)
        self.pants, self.shoes = sc.pick(self.shirt), sc.pick()
        self.hair = sc.pick() if sc.coin(0.25) else tuple(int(v) for v in (25, 18, 12) + sc.u(0, 1) ** 2 * _HAIR_SPAN)
        self.sleeves, self.shorts, self.w = sc.coin(0.6), sc.coin(0.25), sc.u(0.95, 1.35) * k
        self.arms: dict[int, tuple] = {}
        self.legs: dict[int, tuple] = {}
        self.eyes_closed, self.open_mouth = False, False

    def rel(self, origin, dx: float, dy: float) -> np.ndarray:
        """``origin`` moved ``dx`` forward (towards the facing side) and ``dy`` down, in body units."""
        return np.asarray(origin, float) + self.k * np.array([self.f * dx, dy])

    def hpt(self, fx: float, uy: float) -> np.ndarray:
        """A point on the head, in head radii: ``fx`` towards the face, ``uy`` up."""
        return self.head + self.r * (fx * self.hf + uy * self.hu)

    def _base(self, arm: bool, side: int) -> tuple[np.ndarray, int, float, float]:
        """(root joint, angle sign, upper length, lower length) of a limb."""
        base = self.shoulder if arm else self.hip
        if self.front:
            base = base + side * (0.08 if arm else 0.045) * self.k * self.perp
        l1, l2 = (UPPER_ARM, FOREARM) if arm else (THIGH, SHIN)
        return base, side if self.front else self.f, l1 * self.k, l2 * self.k

    def arm(self, side: int, sh: float, el: float) -> None:
        a, s, l1, l2 = self._base(True, side)
        e = a + l1 * _vec(sh, s)
        self.arms[side] = (a, e, e + l2 * _vec(sh + el, s))

    def leg(self, side: int, hip: float, knee: float) -> None:
        a, s, l1, l2 = self._base(False, side)
        kn = a + l1 * _vec(hip, s)
        self.legs[side] = (a, kn, kn + l2 * _vec(hip - knee, s))

    def arm_to(self, side: int, target, hint=(0.0, 1.0)) -> None:
        """Reach for ``target``; ``hint`` = (forward/outward, down) direction the elbow should point."""
        a, s, l1, l2 = self._base(True, side)
        self.arms[side] = (a, *_ik(a, target, l1, l2, (s * hint[0], hint[1])))

    def leg_to(self, side: int, target, hint=(1.0, 0.0)) -> None:
        a, s, l1, l2 = self._base(False, side)
        self.legs[side] = (a, *_ik(a, target, l1, l2, (s * hint[0], hint[1])))

    def draw_hand(self, side: int) -> None:
        """(Re-)draw a hand, e.g. on top of a prop it holds."""
        self.sc.disc(self.arms[side][2], HAND_R * self.w, self.skin)

    def draw(self, parts: tuple[str, ...] = ("far", "body", "near")) -> None:
        """Emit the figure back to front; callers slot props in between the parts."""
        sc, sides = self.sc, ((-1, 1) if self.front else (1,))
        if "far" in parts and not self.front:
            self._leg(-1)
            self._arm(-1)
        if "body" in parts:
            for s in sides:
                self._leg(s)
            if self.front:
                sw, hw = 0.095 * self.k * self.perp, 0.07 * self.k * self.perp
                sc.poly([self.shoulder - sw, self.shoulder + sw, self.hip + hw, self.hip - hw], self.shirt)
            else:
                sc.line([self.hip, self.shoulder], 0.12 * self.w, self.shirt)
            self._head()
        if "near" in parts:
            for s in sides:
                self._arm(s)

    def _leg(self, side: int) -> None:
        a, kn, ft = self.legs[side]
        self.sc.line([a, kn], 0.07 * self.w, self.pants)
        self.sc.line([kn, ft], 0.063 * self.w, self.skin if self.shorts else self.pants)
        d = (ft - kn) / (np.hypot(*(ft - kn)) or 1.0)  # the foot points forward, square to the shin
        toe = ft + ((0.02, 0.0) if self.front else 0.065 * self.k * self.f * np.array([d[1], -d[0]]))
        self.sc.line([ft, toe], 0.06 * self.w, self.shoes)

    def _arm(self, side: int) -> None:
        a, e, h = self.arms[side]
        self.sc.line([a, e], 0.055 * self.w, self.shirt)
        self.sc.line([e, h], 0.05 * self.w, self.shirt if self.sleeves else self.skin)
        self.draw_hand(side)

    def _head(self) -> None:
        sc, dark, r = self.sc, tuple(int(v * 0.3) for v in self.skin), self.r
        sc.line([self.shoulder, self.head], 0.045 * self.k, self.skin)
        sc.disc(self.head, r, self.skin)
        lo, hi = (-80, 80) if self.front else (-115, 40)  # hair: over the top and the back of the head
        phi = np.radians(np.linspace(lo - 25 * self.look_down, hi + 25 * self.look_down, 11))
        sc.poly(self.head + 1.06 * r * (np.outer(np.sin(phi), self.hf) + np.outer(np.cos(phi), self.hu)), self.hair)
        for fx in (-0.38, 0.38) if self.front else (0.55,):
            e = self.hpt(fx, -0.3 if self.look_down else 0.05)
            if self.eyes_closed:
                sc.line([e - 0.12 * r * self.hf, e + 0.12 * r * self.hf], 0.02 * self.k, dark)
            else:
                sc.disc(e, 0.11 * r, dark)
        if self.open_mouth:  # laughing: a big open mouth
            sc.ellipse(self.hpt(0.0 if self.front else 0.5, -0.45), 0.55 * r, 0.4 * r, dark, self.hf)
        else:
            lips = ((-0.25, -0.5), (0.25, -0.5)) if self.front else ((0.55, -0.45), (0.85, -0.42))
            sc.line([self.hpt(*q) for q in lips], 0.018 * self.k, dark)


# --- poses and furniture shared by several classes -----------------------------------------------


def _person(sc: Scene, front_p: float, **kw) -> Person:
    return Person(sc, facing=sc.sign(), front=sc.coin(front_p), **kw)


def _stand(p: Person) -> None:
    stride = p.sc.u(2, 10) if p.front else p.sc.u(0, 14)
    p.leg(1, stride, p.sc.u(0, 10))
    p.leg(-1, stride if p.front else -stride, p.sc.u(0, 10))


def _seated(p: Person) -> None:
    for s in (-1, 1):
        p.leg(s, p.sc.u(78, 98), p.sc.u(75, 100))


def _neutral_arm(p: Person, side: int) -> None:
    """An arm doing nothing in particular: hanging, or held a little away from the body."""
    p.arm(side, p.sc.u(2, 30) if p.front else p.sc.u(-20, 25), p.sc.u(0, 40))


def _floor_y(p: Person) -> float:
    return max(p.legs[1][2][1], p.legs[-1][2][1]) + 0.02


def _chair(sc: Scene, p: Person) -> None:
    col, g = sc.pick(p.pants, p.shirt), _floor_y(p)
    back, fr = p.rel(p.hip, -0.1, 0.06), p.rel(p.hip, 0.16, 0.06)
    if sc.coin(0.7):
        top = p.rel(back, -0.03, -sc.u(0.28, 0.4))
        for a, b in ((back, fr), (back, (back[0], g)), (fr, (fr[0], g)), (back, top)):
            sc.line([a, b], 0.035, col)
    else:  # a box seat / sofa
        sc.poly([back, fr, (fr[0], g), (back[0], g)], col)
        sc.rect(p.rel(back, -0.02, -0.12), 0.06, 0.3, col)


def _table(sc: Scene, p: Person, top: float, x0: float, x1: float) -> None:
    col = sc.pick(p.shirt, p.pants)
    sc.line([p.rel(p.hip, x0, top), p.rel(p.hip, x1, top)], 0.035, col)
    sc.line([p.rel(p.hip, x1 - 0.04, top), (p.rel(p.hip, x1 - 0.04, 0)[0], _floor_y(p))], 0.03, col)


# --- the 15 actions (plus the bystander), and the label -> drawing table -------------------------


def _calling(sc: Scene) -> None:
    p = _person(sc, 1.0, lean=sc.u(-5, 5), tilt=sc.u(-12, 12))
    _stand(p)
    side = sc.sign()
    ax = _rotation(sc.u(-15, 15)) @ p.hu  # the phone's long side, roughly along the head
    c = p.hpt(side * p.f * 1.1, 0.1)
    p.arm_to(side, c - 0.05 * p.k * ax, (1.0, 0.1))  # elbow raised and out
    _neutral_arm(p, -side)
    p.draw()
    sc.rect(c, 0.22 * p.k, 0.11 * p.k, sc.pick(p.skin, p.hair), ax)  # a big phone pressed to the ear
    p.draw_hand(side)


def _clapping(sc: Scene) -> None:
    p = _person(sc, 0.9, lean=sc.u(-5, 5), tilt=sc.u(-10, 10))
    _stand(p)
    if p.front:
        c = p.shoulder + p.k * np.array([0, sc.u(0.05, 0.11)])
        for s in (-1, 1):
            p.arm_to(s, c + (s * 0.025 * p.k, 0), (1.0, 0.4))  # elbows out wide
    else:
        c = p.rel(p.shoulder, sc.u(0.2, 0.25), sc.u(0.04, 0.1))
        for s in (-1, 1):
            p.arm_to(s, c, (0.0, 1.0))
    p.draw()
    col = sc.pick(p.shirt)
    for base in (-75, 75):  # "clap" marks radiating sideways from the hands
        for d in (-25, 0, 25):
            v = _vec(180 + base + d)
            sc.line([c + 0.09 * p.k * v, c + 0.19 * p.k * v], 0.025, col)


def _cycling(sc: Scene) -> None:
    p = _person(sc, 0.0, lean=sc.u(25, 40), tilt=sc.u(-25, -5))
    crank, seat = p.rel(p.hip, 0.06, 0.36), p.rel(p.hip, -0.02, 0.06)
    wheels = (p.rel(crank, -0.36, 0), p.rel(crank, 0.42, 0))
    stem = p.rel(p.hip, 0.38, -0.02)
    bar, phase = p.rel(stem, -0.04, -0.06), sc.u(0, 2 * math.pi)
    for s, ph in ((1, phase), (-1, phase + math.pi)):
        p.leg_to(s, crank + 0.08 * np.array([math.cos(ph), math.sin(ph)]), (1.0, -0.3))  # feet on the pedals
        p.arm_to(s, bar, (0.0, 1.0))
    p.draw(("far",))
    frame, tyre, rad = sc.pick(p.shirt), sc.pick(), sc.u(0.15, 0.19)
    for c in wheels:
        sc.ring(c, rad, 0.03, tyre)
        for a in (0.0, 1.05, 2.1):
            spoke = rad * np.array([math.cos(a), math.sin(a)])
            sc.line([c + spoke, c - spoke], 0.008, tyre)
    for pts in ((wheels[0], crank, seat, wheels[0]), (seat, stem, crank), (stem, wheels[1]), (stem, bar)):
        sc.line(pts, 0.03, frame)
    sc.line([p.rel(seat, -0.05, 0), p.rel(seat, 0.04, 0)], 0.035, frame)
    p.draw(("body", "near"))


def _dancing(sc: Scene) -> None:
    p = _person(sc, 0.9, lean=sc.u(-15, 15), tilt=sc.u(-20, 20))
    up, lift = sc.sign(), sc.sign()
    p.arm(up, sc.u(140, 175), sc.u(-25, 15))  # one arm high, the other one elsewhere
    p.arm(-up, sc.u(80, 130), sc.u(-60, 40))
    p.leg(-lift, sc.u(-6, 6), sc.u(0, 10))
    p.leg(lift, sc.u(40, 85), sc.u(50, 110))  # one leg kicked up
    p.draw()


def _drinking(sc: Scene) -> None:
    p = _person(sc, 0.0, lean=sc.u(-8, 0), tilt=-sc.u(0, 15))
    _stand(p)
    b = math.radians(sc.u(30, 70))
    ax = math.cos(b) * p.hf + math.sin(b) * p.hu  # from the rim at the mouth up to the raised bottom
    rim, bottle = p.hpt(1.0, -0.35), sc.coin(0.4)
    length, width = (0.24, 0.08) if bottle else (0.17, 0.12)
    c = rim + (length / 2 + 0.01) * p.k * ax
    p.arm_to(1, c, (1.0, 1.0))
    _neutral_arm(p, -1)
    p.draw()
    col = sc.pick(p.skin, p.shirt)
    sc.rect(c, length * p.k, width * p.k, col, ax)
    if bottle:  # neck and label
        sc.rect(rim, 0.06 * p.k, 0.045 * p.k, col, ax)
        sc.rect(c + 0.03 * p.k * ax, 0.08 * p.k, width * p.k, sc.pick(col), ax)
    else:  # the drink, run down to the rim
        sc.rect(c - 0.04 * p.k * ax, 0.07 * p.k, 0.8 * width * p.k, sc.pick(col), ax)
    p.draw_hand(1)


def _eating(sc: Scene) -> None:
    seated = sc.coin(0.5)
    p = _person(sc, 0.0, lean=sc.u(5, 15), tilt=sc.u(0, 12))
    _seated(p) if seated else _stand(p)
    bowl = p.rel(p.hip, sc.u(0.3, 0.38), -0.15) if seated else p.rel(p.shoulder, sc.u(0.22, 0.28), sc.u(0.1, 0.16))
    tip = p.hpt(1.05, -0.35)
    p.arm_to(1, p.rel(tip, 0.08, 0.11), (0.3, 1.0))  # spoon to the mouth
    p.arm_to(-1, p.rel(bowl, -0.09, 0.02) if seated else p.rel(bowl, 0.0, 0.07), (0.0, 1.0))
    if seated:
        _chair(sc, p)
    p.draw(("far", "body"))
    if seated:
        _table(sc, p, -0.07, 0.16, 0.6)
    col, t = sc.pick(p.shirt), np.radians(np.linspace(0, 180, 10))
    sc.disc(p.rel(bowl, 0, -0.01), 0.1 * p.k, sc.pick(col))  # food heaped in the bowl
    sc.poly(bowl + p.k * np.stack([0.15 * np.cos(t), 0.09 * np.sin(t)], 1), col)
    p.draw(("near",))
    spoon = sc.pick(p.skin)
    sc.line([p.arms[1][2], tip], 0.025 * p.k, spoon)
    sc.ellipse(tip, 0.04 * p.k, 0.025 * p.k, spoon, tip - p.arms[1][2])
    p.draw_hand(1)


def _fighting(sc: Scene) -> None:
    f, d, people = sc.sign(), sc.u(0.5, 0.62), []
    for x, fac, k in ((0.0, f, 1.0), (f * d, -f, sc.u(0.9, 1.1))):
        p = Person(sc, hip=(x, GROUND * (1 - k)), facing=fac, lean=sc.u(5, 20), tilt=sc.u(-5, 10), k=k)
        fr, punch = sc.sign(), sc.sign()
        p.leg(fr, sc.u(15, 35), sc.u(10, 35))  # a wide fighting stance
        p.leg(-fr, -sc.u(20, 35), sc.u(0, 15))
        p.arm(punch, sc.u(75, 100), sc.u(-10, 10))  # fist thrown at the opponent
        p.arm_to(-punch, p.hpt(1.5, -1.2), (0.2, 1.0))  # guard in front of the chin
        people.append(p)
    for p in people:
        p.draw()


def _hugging(sc: Scene) -> None:
    f, d, k = sc.sign(), sc.u(0.22, 0.3), sc.u(0.85, 1.1)
    a = Person(sc, facing=f, lean=sc.u(8, 16), tilt=sc.u(5, 20))
    b = Person(sc, hip=(f * d, GROUND * (1 - k)), facing=-f, lean=sc.u(8, 16), tilt=sc.u(5, 20), k=k)
    for p, q in ((a, b), (b, a)):
        _stand(p)
        p.arm_to(1, q.rel(q.shoulder, -0.07, 0.06), (0.0, 1.0))  # hands on the other's back
        p.arm_to(-1, q.rel(q.shoulder, -0.06, 0.17), (0.0, 1.0))
    for parts in (("far",), ("body",), ("near",)):  # each one's near arm wraps over the other
        a.draw(parts)
        b.draw(parts)


# the pen strokes of "HA", in units of half a letter height
_HA = (((-2, -1), (-2, 1)), ((0, -1), (0, 1)), ((-2, 0), (0, 0)), ((1, 1), (2, -1), (3, 1)), ((1.5, 0.2), (2.5, 0.2)))


def _laughing(sc: Scene) -> None:
    front = sc.coin(0.2)
    p = Person(
        sc, facing=sc.sign(), front=front, lean=-sc.u(5, 15), tilt=sc.u(-25, 25) if front else -sc.u(25, 45)
    )  # head thrown back
    p.open_mouth, p.eyes_closed = True, True
    _stand(p)
    for s in (-1, 1):  # hands on the belly
        if front:
            p.arm_to(s, p.hip + p.k * np.array([s * 0.04, -0.08]), (1.0, 0.3))
        else:
            p.arm_to(s, p.rel(p.hip, 0.08, -0.07 - 0.03 * s), (-0.3, 1.0))
    p.draw()
    col = sc.pick(p.skin)
    for i in range(int(sc.rng.integers(1, 3))):  # "HA" written next to the head
        c, size = p.head + p.k * np.array([p.f * (0.2 + 0.1 * i), -0.12 - 0.12 * i]), sc.u(0.035, 0.045)
        for stroke in _HA:
            sc.line([c + size * np.array(q) for q in stroke], 0.018, col)


def _listening(sc: Scene) -> None:
    p = _person(sc, 0.95, lean=sc.u(-6, 6), tilt=sc.u(-18, 18))
    p.eyes_closed = sc.coin()
    _stand(p)
    for s in (-1, 1):
        _neutral_arm(p, s)
    p.draw()
    col, r = sc.pick(p.skin, p.hair), p.r
    if p.front:  # a headband over the top and two big ear cups
        phi = np.radians(np.linspace(-85, 85, 13))
        sc.line(p.head + 1.2 * r * (np.outer(np.sin(phi), p.hf) + np.outer(np.cos(phi), p.hu)), 0.45 * r, col)
        cups = [p.hpt(-1.0, -0.05), p.hpt(1.0, -0.05)]
    else:
        cups = [p.hpt(-0.1, 0.0)]
        sc.line([cups[0], p.hpt(-0.1, 1.2)], 0.45 * r, col)
    for c in cups:
        sc.ellipse(c, 1.0 * r, 0.7 * r, col, p.hu)
    note = sc.pick(col)
    for _ in range(int(sc.rng.integers(2, 4))):  # music notes floating around the head
        c = p.head + r * sc.u(2.0, 3.2) * _vec(sc.u(100, 260))
        sc.disc(c, 0.045, note)
        sc.line([c + (0.036, 0), c + (0.036, -0.13), c + (0.09, -0.095)], 0.022, note)


def _running(sc: Scene) -> None:
    p = _person(sc, 0.0, lean=sc.u(8, 22), tilt=sc.u(-5, 10))
    lead = sc.sign()
    p.leg(lead, sc.u(45, 75), sc.u(40, 90))  # a long stride
    p.leg(-lead, -sc.u(25, 45), sc.u(60, 110))
    p.arm(-lead, sc.u(30, 60), sc.u(60, 100))  # arms swing opposite to the legs
    p.arm(lead, -sc.u(30, 55), sc.u(60, 100))
    p.draw()
    if sc.coin(0.6):  # speed lines trailing behind
        col, x = sc.pick(p.shirt), p.rel(p.hip, -sc.u(0.3, 0.4), 0)[0]
        for y in (-0.28, -0.14, 0.0):
            sc.line([(x, y), (x - p.f * 0.15, y)], 0.022, col)


def _sitting(sc: Scene) -> None:
    p = _person(sc, 0.0, lean=sc.u(-15, 3), tilt=sc.u(-10, 10))  # leaning back, at rest
    _seated(p)
    for s in (-1, 1):
        if sc.coin():
            p.arm_to(s, p.rel(p.hip, sc.u(0.04, 0.1), -0.03), (-0.3, 1.0))  # hands in the lap
        else:
            p.arm(s, sc.u(-25, 5), sc.u(0, 20))  # hanging down
    _chair(sc, p)
    p.draw()


def _sleeping(sc: Scene) -> None:
    p = _person(sc, 0.0, lean=-90 + sc.u(-4, 4), tilt=sc.u(-10, 10))  # on the back, head on the -facing side
    p.eyes_closed, bent = True, sc.u(95, 140)
    p.leg(1, sc.u(85, 95), sc.u(0, 8))
    p.leg(-1, bent, 2 * bent - 180)  # maybe one knee up
    for s in (-1, 1):
        if sc.coin(0.7):
            p.arm(s, sc.u(75, 100), sc.u(-10, 10))  # along the body
        else:
            p.arm_to(s, p.rel(p.hip, -0.12, -0.06), (0.0, -1.0))  # on the chest
    bed = sc.pick(p.shirt)
    head_x, feet_x = p.rel(p.head, -0.15, 0)[0], p.rel(p.hip, 0.55, 0)[0]
    lo, hi = min(head_x, feet_x), max(head_x, feet_x)
    if sc.coin(0.75):
        sc.poly([(lo, 0.07), (hi, 0.07), (hi, 0.16), (lo, 0.16)], bed)
        for x in (lo + 0.03, hi - 0.03):
            sc.line([(x, 0.16), (x, 0.27)], 0.03, bed)
        sc.rect((head_x, 0.06), 0.035, 0.42, bed)  # headboard
    else:  # a mat on the floor
        sc.poly([(lo, 0.07), (hi, 0.07), (hi, 0.1), (lo, 0.1)], bed)
    sc.ellipse(p.head + (0, p.r * 0.7), 0.15, 0.06, sc.pick(bed))  # pillow
    p.draw()
    if sc.coin(0.5):  # blanket
        corners = ((-0.25, -0.08), (0.5, -0.06), (0.52, 0.07), (-0.25, 0.07))
        sc.poly([p.rel(p.hip, x, y) for x, y in corners], sc.pick(bed, p.shirt))
    if sc.coin(0.75):
        z = sc.pick()
        for i in range(int(sc.rng.integers(1, 4))):  # "Zzz"
            c, size = p.rel(p.head, 0.04 + 0.08 * i, -0.18 - 0.1 * i), 0.03 + 0.01 * i
            sc.line([c + (-size, -size), c + (size, -size), c + (-size, size), c + (size, size)], 0.018, z)


def _texting(sc: Scene) -> None:
    front = sc.coin(0.7)
    p = Person(
        sc, facing=sc.sign(), front=front, lean=sc.u(0, 8), look_down=front, tilt=sc.u(-8, 8) if front else sc.u(20, 35)
    )  # head bent over the phone
    _stand(p)
    if front:  # held low, at the belly, in both hands
        c, ax = p.shoulder + p.k * np.array([0, sc.u(0.16, 0.21)]), _vec(90 + sc.u(-15, 15))
        w, h = (0.13, 0.19) if sc.coin() else (0.2, 0.13)
        for s in (-1, 1):
            p.arm_to(s, c + p.k * (s * 0.4 * w * ax + 0.3 * h * np.array([-ax[1], ax[0]])), (0.3, 1.0))
    else:
        c, ax = p.rel(p.shoulder, sc.u(0.14, 0.18), sc.u(0.12, 0.17)), _vec(90 + sc.u(20, 45), p.f)
        w, h = 0.2, 0.1
        for s in (-1, 1):
            p.arm_to(s, c + s * 0.03 * ax, (0.0, 1.0))
    p.draw()
    col = sc.pick(p.shirt, p.skin, p.pants)
    sc.rect(c, w * p.k, h * p.k, col, ax)
    sc.rect(c, w * p.k * 0.7, h * p.k * 0.65, sc.pick(col), ax)  # the lit screen
    for s in (-1, 1):
        p.draw_hand(s)


def _using_laptop(sc: Scene) -> None:
    mode = int(np.searchsorted([0.15, 0.6], sc.rng.random()))  # 0: at a table, 1: on the lap, 2: from behind
    lean = sc.u(-4, 4) if mode == 2 else sc.u(0, 12)
    p = _person(sc, float(mode == 2), lean=lean, tilt=sc.u(5, 20) * (mode != 2))
    _seated(p)
    if mode == 2:
        top, w, h = p.hip + p.k * np.array([0, -sc.u(0.0, 0.05)]), sc.u(0.32, 0.38), sc.u(0.22, 0.26)
        for s in (-1, 1):
            p.arm_to(s, top + p.k * np.array([s * (w / 2 - 0.02), -0.02]), (1.0, 1.0))
        p.draw()
        desk, lid = sc.pick(p.shirt), sc.pick(p.shirt, p.skin)
        sc.poly([top + p.k * np.array(v) for v in ((-0.4, 0), (0.4, 0), (0.4, 0.3), (-0.4, 0.3))], desk)
        sc.rect(top + p.k * np.array([0, -h / 2]), w * p.k, h * p.k, lid)
        sc.disc(top + p.k * np.array([0, -h / 2]), 0.03 * p.k, sc.pick(lid))
        for s in (-1, 1):
            p.draw_hand(s)
        return
    y, x0 = (-0.1, 0.16) if mode == 0 else (-0.07, 0.03)
    base0, base1 = p.rel(p.hip, x0, y), p.rel(p.hip, x0 + 0.26, y)
    p.arm_to(1, p.rel(base0, 0.15, -0.02), (0.0, 1.0))  # hands on the keyboard
    p.arm_to(-1, p.rel(base0, 0.07, -0.02), (0.0, 1.0))
    _chair(sc, p)
    p.draw(("far", "body"))
    if mode == 0:
        _table(sc, p, y + 0.035, 0.12, 0.6)
    col, screen_edge = sc.pick(p.shirt, p.pants), 0.3 * p.k * _vec(180 - sc.u(-5, 20), p.f)
    sc.line([base0, base1], 0.05 * p.k, col)
    screen = [
        base1,
        base1 + screen_edge,
        p.rel(base1 + screen_edge, -0.11, 0.01),
        p.rel(base1, -0.11, 0.01),
    ]  # seen at a slant
    sc.poly(screen, col)
    sc.poly([0.75 * q + 0.25 * np.mean(screen, 0) for q in screen], sc.pick(col))
    p.draw(("near",))


def _bystander(sc: Scene) -> None:
    """Someone standing around in a neutral pose, in any class (a distractor)."""
    p = _person(sc, 0.5, lean=sc.u(-5, 5), tilt=sc.u(-10, 10))
    _stand(p)
    for s in (-1, 1):
        _neutral_arm(p, s)
    p.draw()


_SCENES: dict[str, Callable[[Scene], None]] = {
    "calling": _calling,
    "clapping": _clapping,
    "cycling": _cycling,
    "dancing": _dancing,
    "drinking": _drinking,
    "eating": _eating,
    "fighting": _fighting,
    "hugging": _hugging,
    "laughing": _laughing,
    "listening_to_music": _listening,
    "running": _running,
    "sitting": _sitting,
    "sleeping": _sleeping,
    "texting": _texting,
    "using_laptop": _using_laptop,
}
_DRAW_BY_LABEL = tuple(_SCENES[name] for name in ACTION_CLASSES)  # index = label id
