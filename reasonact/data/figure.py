"""SynthAct's stick figure: skeleton, keyframe poses per action phase, motion, drawing.

Poses and kinematics are in *world units*: the torso (pelvis to neck) is 1 long, y points up and
the ground is y = 0. ``draw_frames`` maps them to pixels with a ``Look`` (scale, position,
mirroring, colours, background, shake) that ``synthact.sample_look`` draws for each level.

A pose is a dict of absolute segment angles in degrees, 0 = pointing up, 90 = forward (+x),
180 = down, 270 = backward. Absolute angles make poses easy to write down and to check by eye;
values are *not* wrapped, so 300 -> 420 swings the arm forward over the top while 300 -> 60 would
swing it back down. Side-view actions face +x; front-view actions (wave, clap, pullup) spread
the "_l" limbs to -x and the "_r" limbs to +x. Both limbs of a pair start at one shoulder and one
pelvis point, like a classic stick figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

KEYS = ("torso", "head", "ua_l", "fa_l", "ua_r", "fa_r", "th_l", "sh_l", "th_r", "sh_r", "lift", "bat", "bat_len")  # fmt: skip
JOINTS = ("head", "neck", "shoulder", "elbow_l", "hand_l", "elbow_r", "hand_r",
          "pelvis", "knee_l", "foot_l", "knee_r", "foot_r")  # fmt: skip
ANGLES = ("elbow_l", "elbow_r", "shoulder_l", "shoulder_r", "hip_l", "hip_r", "knee_l", "knee_r")
J = {name: i for i, name in enumerate(JOINTS)}
CONTACT_EPS = 0.04  # a foot closer than this to the ground (torso units) touches it


@dataclass(frozen=True)
class Body:
    """Segment lengths in torso units (the torso is 1). Defaults are roughly human proportions."""

    head_r: float = 0.24
    neck: float = 0.10
    shoulder_at: float = 0.88  # arms hang from this fraction of the way up the torso
    upper_arm: float = 0.45
    forearm: float = 0.45
    thigh: float = 0.60
    shin: float = 0.60

    @property
    def standing_height(self) -> float:
        return self.thigh + self.shin + 1.0 + self.neck + 2 * self.head_r

    @staticmethod
    def sample(rng: np.random.Generator, spread: float) -> Body:
        """Random proportions: every length scaled by U(1-spread, 1+spread); arms stay symmetric."""
        b = Body()
        f = rng.uniform(1 - spread, 1 + spread, size=5)
        return Body(head_r=b.head_r * f[0], upper_arm=b.upper_arm * f[1], forearm=b.forearm * f[2],
                    thigh=b.thigh * f[3], shin=b.shin * f[4])  # fmt: skip


def _dir(deg):
    a = np.radians(deg)
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


STAND = dict(torso=0, head=0, ua_l=188, fa_l=185, ua_r=172, fa_r=175,
             th_l=184, sh_l=182, th_r=176, sh_r=178, lift=0.0, bat=330, bat_len=1.0)  # fmt: skip


def P(base=None, **kw) -> dict:
    """A pose: ``base`` (default STAND) with some angles replaced."""
    return {**(base or STAND), **kw}


# ---- keyframes: each function returns (start pose, [keyframes of phase 0], [phase 1], ...) ----
# A phase's keyframes are spread evenly over it; its last keyframe is reached at the phase's end.
# Some take the body (to keep hands/feet on the ground or the bar) or the rng (repetitions).
# The tables are left unformatted: one pose per line reads best.
# fmt: off


def _jump(body, rng):
    crouch = P(torso=35, head=-15, ua_l=235, fa_l=225, ua_r=228, fa_r=220, th_l=112, sh_l=205, th_r=108, sh_r=202)
    # arms swing from behind, down, forward and up (decreasing angles) as the legs extend
    extend = P(torso=8, ua_l=15, fa_l=10, ua_r=5, fa_r=0, th_l=182, sh_l=185, th_r=178, sh_r=182, lift=0.08)
    tuck = P(torso=5, ua_l=20, fa_l=15, ua_r=10, fa_r=5, th_l=120, sh_l=195, th_r=115, sh_r=190, lift=0.5)
    descend = P(torso=5, ua_l=80, fa_l=90, ua_r=70, fa_r=80, th_l=170, sh_l=185, th_r=168, sh_r=182, lift=0.15)
    land = P(torso=30, head=-12, ua_l=110, fa_l=100, ua_r=100, fa_r=95, th_l=120, sh_l=205, th_r=116, sh_r=200)
    return STAND, [[crouch], [extend], [tuck, descend], [land, STAND]]


def _kick(body, rng):  # the left leg stands, the right leg kicks forward
    setup = P(torso=-5, ua_l=250, fa_l=255, ua_r=95, fa_r=85, th_r=170, sh_r=190)
    chamber = P(setup, torso=-10, th_r=88, sh_r=195)
    strike = P(setup, torso=-22, th_r=78, sh_r=82, ua_r=110, fa_r=100)
    retract = P(setup, torso=-10, th_r=100, sh_r=200)
    return STAND, [[setup], [chamber], [strike], [retract, STAND]]


def _punch(body, rng):
    guard = P(torso=5, ua_l=150, fa_l=30, ua_r=165, fa_r=25, th_l=160, sh_l=172, th_r=200, sh_r=192)
    wind = P(guard, torso=-8, ua_r=205, fa_r=60)
    strike = P(guard, torso=12, ua_r=88, fa_r=88, th_r=205, sh_r=195)
    return STAND, [[guard], [wind], [strike], [guard]]


def _throw(body, rng):  # right arm throws; wind-up and rotation deliberately like swing_baseball's
    wind = P(torso=-15, head=10, ua_l=80, fa_l=70, ua_r=300, fa_r=330, th_l=170, sh_l=178, th_r=190, sh_r=186)
    stride = P(wind, torso=-8, th_l=140, sh_l=168, th_r=205, sh_r=195, ua_r=295, fa_r=345)
    release = P(torso=18, ua_l=200, fa_l=190, ua_r=410, fa_r=420, th_l=145, sh_l=180, th_r=215, sh_r=205)
    follow = P(torso=45, head=-20, ua_l=220, fa_l=200, ua_r=510, fa_r=525, th_l=140, sh_l=185, th_r=230, sh_r=250)
    return STAND, [[wind], [stride], [release], [follow]]


def _swing_baseball(body, rng):
    stance = P(torso=5, ua_l=200, fa_l=20, ua_r=210, fa_r=15, th_l=165, sh_l=175, th_r=195, sh_r=185, bat=330)
    load = P(stance, torso=-15, ua_l=250, fa_l=330, ua_r=255, fa_r=320, th_r=205, sh_r=190, bat=290)
    # mid-swing the bat points at the camera: foreshortened (bat_len) while it turns over the top
    mid = P(torso=0, ua_l=165, fa_l=150, ua_r=170, fa_r=155, th_l=160, th_r=200, bat=370, bat_len=0.35)
    level = P(torso=12, ua_l=95, fa_l=90, ua_r=100, fa_r=92, th_l=158, sh_l=178, th_r=205, sh_r=200, bat=450)
    wrap = P(torso=15, ua_l=40, fa_l=-20, ua_r=50, fa_r=-10, th_l=158, sh_l=178, th_r=195, sh_r=215, bat=630)
    return stance, [[stance], [load], [mid, level], [wrap]]


def _wave(body, rng):  # front view, right arm; 2-4 waves
    raised = P(ua_r=115, fa_r=20)
    waves = [P(raised, fa_r=55), P(raised, fa_r=-15)] * int(rng.integers(2, 5))
    return STAND, [[raised], waves + [raised], [STAND]]


def _clap(body, rng):  # front view; elbows out, hands meet on the midline (forearm angle solved)
    a = 58.0
    b = np.degrees(np.arcsin(np.clip(body.upper_arm / body.forearm * np.sin(np.radians(a)), -1, 1)))
    together = P(ua_l=180 + a, fa_l=180 - b, ua_r=180 - a, fa_r=180 + b)
    apart = P(ua_l=250, fa_l=262, ua_r=110, fa_r=98)
    rebound = P(ua_l=245, fa_l=215, ua_r=115, fa_r=145)
    return STAND, [[apart], [together], [rebound, together] * int(rng.integers(2, 4))]


def _sit(body, rng):  # stand is exactly this, reversed in time
    lean = P(torso=38, head=-15, ua_l=140, fa_l=130, ua_r=135, fa_r=125, th_l=128, sh_l=192, th_r=125, sh_r=190)
    seat_lean = P(torso=25, head=-10, ua_l=150, fa_l=120, ua_r=145, fa_r=118, th_l=92, sh_l=182, th_r=90, sh_r=180)
    seated = P(torso=2, ua_l=170, fa_l=105, ua_r=165, fa_r=100, th_l=92, sh_l=182, th_r=90, sh_r=180)
    return STAND, [[STAND], [lean, seat_lean], [seated]]


def _plank_tilt(body, ua, fa):
    """Tilt (degrees from up) of a straight body whose hands and feet both touch the ground."""
    reach = -(body.upper_arm * np.cos(np.radians(ua)) + body.forearm * np.cos(np.radians(fa)))
    return np.degrees(np.arccos(np.clip(reach / (body.thigh + body.shin + body.shoulder_at), -1, 1)))


def _plank(pose, body):
    """Re-tilt a plank for its arm angles; also applied to every frame, as the eased angles in
    between keyframes would otherwise lift the feet off the ground."""
    theta = _plank_tilt(body, pose["ua_l"], pose["fa_l"])
    return {
        **pose,
        "torso": theta,
        "th_l": theta + 180,
        "sh_l": theta + 180,
        "th_r": theta + 180,
        "sh_r": theta + 180,
    }


def _pushup(body, rng):
    up = _plank(P(head=-15, ua_l=180, fa_l=180, ua_r=180, fa_r=180), body)
    down = _plank(P(head=-15, ua_l=250, fa_l=155, ua_r=250, fa_r=155), body)
    return up, [[up], [down], [up]]


def _situp(body, rng):  # lying on the back, head to -x, knees bent, arms crossed on the chest
    def lie(torso, head):
        return P(torso=torso, head=head, ua_l=torso + 170, fa_l=torso + 20, ua_r=torso + 165, fa_r=torso + 25,
                 th_l=40, sh_l=140, th_r=38, sh_r=142)  # fmt: skip

    lying, mid, up = lie(-80, 10), lie(-35, 20), lie(25, -5)
    return lying, [[lying], [mid, up], [mid, lying]]


def _pullup(body, rng):  # front view, hands fixed on the bar
    hang = P(ua_l=-30, fa_l=-30, ua_r=30, fa_r=30, th_l=186, sh_l=183, th_r=174, sh_r=177)
    top = P(ua_l=-115, fa_l=-5, ua_r=115, fa_r=5, th_l=195, sh_l=170, th_r=165, sh_r=190)
    return hang, [[hang], [top], [hang]]


# anchor: which point stays put horizontally ("feet": their midpoint; "hands": on the bar).
# props: drawn objects. ball_release: the ball leaves the hand at the end of this phase.
ACTIONS = {
    "jump": dict(keyframes=_jump, anchor="feet"),
    "kick": dict(keyframes=_kick, anchor="foot_l"),
    "punch": dict(keyframes=_punch, anchor="feet"),
    "throw": dict(keyframes=_throw, anchor="feet", props=("ball",), ball_release=2),
    "swing_baseball": dict(keyframes=_swing_baseball, anchor="feet", props=("bat",)),
    "wave": dict(keyframes=_wave, anchor="feet"),
    "clap": dict(keyframes=_clap, anchor="feet"),
    "sit": dict(keyframes=_sit, anchor="feet", props=("seat",)),
    "stand": dict(reverse_of="sit"),
    "pushup": dict(keyframes=_pushup, anchor="feet", constrain=_plank),
    "situp": dict(keyframes=_situp, anchor="feet"),
    "pullup": dict(keyframes=_pullup, anchor="hands", props=("bar",)),
}
# fmt: on
CLASSES = tuple(ACTIONS)


def base_of(label: str) -> str:
    return ACTIONS[label].get("reverse_of", label)


def num_phases(label: str) -> int:
    _, phases = ACTIONS[base_of(label)]["keyframes"](Body(), np.random.default_rng(0))
    return len(phases)


# ---- motion: keyframes -> per-frame poses ----


@dataclass
class Track:
    """Per-frame poses of one clip. ``bounds`` are the phase boundaries in seconds (label order)."""

    label: str
    fps: int
    times: np.ndarray  # (T,) the instant each frame shows: the middle of its 1/fps interval
    pose: dict  # key -> (T,) array
    phase: np.ndarray  # (T,) phase index of each frame
    bounds: np.ndarray  # (n_phases + 1,) seconds, bounds[0] = 0, bounds[-1] = duration
    ball_release_s: float | None = None

    @property
    def num_frames(self) -> int:
        return len(self.times)


def sample_durations(shares, rng, base_s=(2.0, 3.4), jitter=(0.75, 1.3)):
    """Seconds per phase: the library's share of a random clip length, each phase sped up or slowed."""
    shares = np.asarray(shares, dtype=float)
    return shares / shares.sum() * rng.uniform(*base_s) * rng.uniform(*jitter, size=len(shares))


def build_track(label: str, body: Body, shares, rng: np.random.Generator, fps: int | None = None) -> Track:
    """Random per-phase durations and fps, keyframes eased into per-frame poses.

    ``shares`` are the library's phase shares in ``label``'s order. A reversed action (stand)
    draws everything exactly as its base (sit) would, then runs time backwards, so the same
    seed gives the same poses in reverse frame order.
    """
    spec = ACTIONS[label]
    base = spec.get("reverse_of", label)
    rev = base != label
    shares = list(shares)[::-1] if rev else list(shares)
    start, phases = ACTIONS[base]["keyframes"](body, rng)
    if len(phases) != len(shares):
        raise ValueError(
            f"SynthAct '{label}': {len(phases)} phases in the generator, {len(shares)} in the library"
        )
    fps = int(rng.integers(10, 16)) if fps is None else int(fps)  # 10-15 fps: a few frames per phase
    dur = np.maximum(sample_durations(shares, rng), 2.0 / fps)  # every phase gets >= 2 frames
    n = max(int(round(dur.sum() * fps)), 2 * len(dur))
    dur = dur * (n / fps) / dur.sum()  # phases tile the clip exactly
    bounds = np.concatenate([[0.0], np.cumsum(dur)])
    bounds[-1] = n / fps
    # keyframe times: the start pose at 0, then each phase's keyframes spread over the phase
    kt, kv = [0.0], [start]
    for p, frames in enumerate(phases):
        for k, pose in enumerate(frames, 1):
            kt.append(bounds[p] + (bounds[p + 1] - bounds[p]) * k / len(frames))
            kv.append(pose)
    kt = np.asarray(kt)
    times = (np.arange(n) + 0.5) / fps
    t = bounds[-1] - times if rev else times  # symmetric frame times make the reversal exact
    seg = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
    u = np.clip((t - kt[seg]) / np.maximum(kt[seg + 1] - kt[seg], 1e-9), 0, 1)
    u = u * u * (3 - 2 * u)  # smoothstep: limbs ease in and out of each keyframe
    pose = {}
    for key in KEYS:
        v = np.array([kf[key] for kf in kv], dtype=float)
        pose[key] = v[seg] + (v[seg + 1] - v[seg]) * u
    if "constrain" in ACTIONS[base]:
        pose = ACTIONS[base]["constrain"](pose, body)
    release = None
    if "ball_release" in spec:
        release = float(bounds[spec["ball_release"] + 1])
    if rev:
        bounds = bounds[-1] - bounds[::-1]
    phase = np.clip(np.searchsorted(bounds, times, side="right") - 1, 0, len(dur) - 1)
    return Track(label, fps, times, pose, phase, bounds, release)


# ---- kinematics: poses -> joint positions in the world, props ----


def skeleton(pose: dict, body: Body) -> np.ndarray:
    """Joint positions (T, 12, 2) relative to the pelvis, before placing the figure on the ground."""
    T = len(pose["torso"])
    j = np.zeros((T, len(JOINTS), 2))
    up = _dir(pose["torso"])
    j[:, J["neck"]] = up
    j[:, J["shoulder"]] = body.shoulder_at * up
    j[:, J["head"]] = up + (body.neck + body.head_r) * _dir(pose["torso"] + pose["head"])
    for s in "lr":
        j[:, J["elbow_" + s]] = j[:, J["shoulder"]] + body.upper_arm * _dir(pose["ua_" + s])
        j[:, J["hand_" + s]] = j[:, J["elbow_" + s]] + body.forearm * _dir(pose["fa_" + s])
        j[:, J["knee_" + s]] = body.thigh * _dir(pose["th_" + s])
        j[:, J["foot_" + s]] = j[:, J["knee_" + s]] + body.shin * _dir(pose["sh_" + s])
    return j


def _place(j: np.ndarray, pose: dict, anchor: str, bar_y: float = 0.0) -> np.ndarray:
    """Offset (T, 2) that puts the figure in the world: lowest joint ``lift`` above the ground."""
    if anchor == "hands":
        return np.array([0.0, bar_y]) - (j[:, J["hand_l"]] + j[:, J["hand_r"]]) / 2
    body = np.delete(j, J["head"], axis=1)  # the head may rest on the ground (situp), never below
    y = pose["lift"] - body[:, :, 1].min(axis=1)
    if anchor == "feet":
        x = -(j[:, J["foot_l"], 0] + j[:, J["foot_r"], 0]) / 2
    else:
        x = -j[:, J[anchor], 0]
    return np.stack([x, y], axis=1)


def world(track: Track, body: Body) -> dict:
    """Joints in the world (y up, ground at 0) and the props, for every frame of ``track``."""
    spec = ACTIONS[base_of(track.label)]
    j = skeleton(track.pose, body)
    bar_y = 0.0
    if spec["anchor"] == "hands":  # hang the bar so that the feet clear the ground at full hang
        rel = j[0] - (j[0, J["hand_l"]] + j[0, J["hand_r"]]) / 2
        bar_y = 0.2 - rel[:, 1].min()
    j = j + _place(j, track.pose, spec["anchor"], bar_y)[:, None, :]
    out = {"joints": j, "props": {}}
    props = spec.get("props", ())
    if "bar" in props:
        out["props"]["bar"] = np.array([[-0.95, bar_y], [0.95, bar_y]])
    if "seat" in props:  # under the pelvis of the most seated frame
        i = int(np.argmin(j[:, J["pelvis"], 1]))
        px, py = j[i, J["pelvis"]]
        out["props"]["seat"] = np.array([px - 0.3, 0.0, px + 0.2, py - 0.06])  # x0, y0, x1, y1
    if "bat" in props:
        grip = (j[:, J["hand_l"]] + j[:, J["hand_r"]]) / 2
        tip = grip + 0.9 * track.pose["bat_len"][:, None] * _dir(track.pose["bat"])
        out["props"]["bat"] = np.stack([grip, tip], axis=1)  # (T, 2, 2)
    if "ball" in props:
        hand = j[:, J["hand_r"]]
        ball = hand.copy()
        k = int(np.searchsorted(track.times, track.ball_release_s))
        if k < len(ball):  # after release: a throw forward and up under gravity
            dt = track.times[k:] - track.ball_release_s
            p0 = hand[k - 1] if k > 0 else hand[0]
            ball[k:, 0] = p0[0] + 5.0 * dt
            ball[k:, 1] = p0[1] + 2.0 * dt - 3.0 * dt**2
        out["props"]["ball"] = ball
        out["props"]["ball_released"] = np.arange(len(ball)) >= k
    return out


# ---- rendering: world -> pixels ----


@dataclass
class Look:
    """How a clip is drawn (sampled per level in synthact.sample_look)."""

    scale: float  # pixels per torso unit
    origin: tuple  # pixel position of the world bbox centre
    centre: tuple  # world bbox centre
    mirror: bool
    width: int  # limb width in pixels
    fg: tuple
    prop: tuple
    size: int
    margin: int  # the background is (size + 2*margin) square: room for the camera shake
    background: np.ndarray  # (size + 2*margin, size + 2*margin, 3) uint8
    shake: np.ndarray  # (T, 2) int pixel offsets of the scene (camera shake)
    noise: float
    ground: tuple | None  # colour of a ground line, or None


def to_pixels(p: np.ndarray, look: Look) -> np.ndarray:
    """World (y up) -> pixel coordinates (y down, (0, 0) = centre of the top-left pixel)."""
    m = -1.0 if look.mirror else 1.0
    x = look.origin[0] + m * look.scale * (p[..., 0] - look.centre[0])
    y = look.origin[1] - look.scale * (p[..., 1] - look.centre[1])
    return np.stack([x, y], axis=-1)


def extent(w: dict, body: Body) -> np.ndarray:
    """World bbox (x0, y0, x1, y1) of everything drawn in the clip: sizes and places the figure."""
    pts = [w["joints"].reshape(-1, 2)]
    head = w["joints"][:, J["head"]]
    pts += [head + body.head_r, head - body.head_r]
    props = w["props"]
    if "bat" in props:
        pts.append(props["bat"].reshape(-1, 2))
    if "bar" in props:
        pts.append(props["bar"])
    if "seat" in props:
        pts.append(props["seat"].reshape(2, 2))
    if "ball" in props:  # only while held: a thrown ball may fly out of the frame
        pts.append(props["ball"][~props["ball_released"]])
    pts = np.concatenate(pts)
    return np.concatenate([pts.min(0), pts.max(0)])


_LIMBS = [("pelvis", "knee_l", "foot_l"), ("pelvis", "knee_r", "foot_r"), ("pelvis", "neck"),
          ("shoulder", "elbow_l", "hand_l"), ("shoulder", "elbow_r", "hand_r")]  # fmt: skip
_LIMB_IDX = [[J[n] for n in limb] for limb in _LIMBS]
_ENDS = [J[n] for n in ("foot_l", "foot_r", "pelvis", "neck", "hand_l", "hand_r")]


def draw_frames(w: dict, body: Body, look: Look, rng) -> tuple[np.ndarray, np.ndarray]:
    """Render every frame; returns (frames (T, S, S, 3) uint8, joints in pixels (T, 12, 2))."""
    T, S, m = len(w["joints"]), look.size, look.margin
    shake = look.shake.astype(float)
    jp = to_pixels(w["joints"], look) + shake[:, None, :]
    lw, hw = look.width, look.width / 2
    head_r = max(body.head_r * look.scale, 0.6 * lw)  # a thick neck must not swallow the head
    prop_w = max(1, round(0.6 * lw))
    props = w["props"]
    ground = np.array([[0.0, 0.0], [S, 0.0]]) + [
        0,
        to_pixels(np.zeros(2), look)[1] + hw + 1,
    ]  # under the feet
    seat = to_pixels(props["seat"].reshape(2, 2), look) if "seat" in props else None
    bar = to_pixels(props["bar"], look) if "bar" in props else None
    bat = to_pixels(props["bat"], look) + shake[:, None, :] if "bat" in props else None
    ball = to_pixels(props["ball"], look) + shake if "ball" in props else None
    ball_r = max(2.0, 0.13 * look.scale)
    if look.noise > 0:  # pixel noise: random crops of one noise tile (fresh normals per frame: 5x slower)
        tile = np.round(rng.standard_normal((S + 32, S + 32, 3), dtype=np.float32) * look.noise)
        tile, offsets = tile.astype(np.int16), rng.integers(0, 33, size=(T, 2))
    frames = np.empty((T, S, S, 3), np.uint8)
    for t in range(T):
        dx, dy = look.shake[t]
        img = Image.fromarray(np.ascontiguousarray(look.background[m - dy : m - dy + S, m - dx : m - dx + S]))
        d = ImageDraw.Draw(img)
        if look.ground is not None:
            d.line((ground + shake[t]).ravel().tolist(), fill=look.ground, width=max(1, prop_w // 2))
        if seat is not None:
            c = seat + shake[t]
            d.rectangle([*c.min(0), *c.max(0)], fill=look.prop)
        if bar is not None:
            d.line((bar + shake[t]).ravel().tolist(), fill=look.prop, width=prop_w)
        p = jp[t]
        for limb in _LIMB_IDX:
            d.line(p[limb].ravel().tolist(), fill=look.fg, width=lw, joint="curve")
        if lw >= 3:  # round caps: PIL ends thick lines square
            for i in _ENDS:
                d.ellipse([p[i, 0] - hw, p[i, 1] - hw, p[i, 0] + hw, p[i, 1] + hw], fill=look.fg)
        hx, hy = p[J["head"]]
        d.ellipse([hx - head_r, hy - head_r, hx + head_r, hy + head_r], fill=look.fg)
        if bat is not None:
            d.line(bat[t].ravel().tolist(), fill=look.prop, width=prop_w)
        if ball is not None:
            bx, by = ball[t]
            d.ellipse([bx - ball_r, by - ball_r, bx + ball_r, by + ball_r], fill=look.prop)
        if look.noise > 0:
            ox, oy = offsets[t]
            frames[t] = np.clip(np.asarray(img, np.int16) + tile[oy : oy + S, ox : ox + S], 0, 255)
        else:
            frames[t] = np.asarray(img)
    return frames, jp
