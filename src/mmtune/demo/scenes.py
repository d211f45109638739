"""PIL drawings of the demo scenes; `SCENES` maps (image kind, scene name) to the function that draws it."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from PIL import ImageDraw

from mmtune.demo.rules import IRONIC, NEG, NEUTRAL, POS, THEME_TOPIC

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]
Draw = ImageDraw.ImageDraw

POS_NEG_SCENES = tuple(THEME_TOPIC)
NEUTRAL_SCENES = ("clock", "calendar", "building")
IRONIC_SCENES = ("sun_in_storm", "this_is_fine", "expectation_reality", "crying_in_sunshine")


def _jit(rng: random.Random, colour: RGB, amount: int = 18) -> RGB:
    span = 2 * amount + 1  # int(random() * span) is a cheaper randint: this runs ~10 times per image
    r, g, b = (max(0, min(255, c - amount + int(rng.random() * span))) for c in colour)
    return r, g, b


def _dims(box: Box) -> tuple[int, int, int, int, int, int]:
    x0, y0, x1, y1 = box
    return x0, y0, x1, y1, x1 - x0, y1 - y0


def _face(d: Draw, rng: random.Random, cx: float, cy: float, rad: float, colour: RGB, mood: str) -> None:
    d.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=_jit(rng, colour, 12), outline=(40, 30, 20),
              width=max(1, int(rad * 0.06)))
    eye = rad * 0.11
    for sx in (-1, 1):
        ex, ey = cx + sx * rad * 0.35, cy - rad * 0.2
        d.ellipse((ex - eye, ey - eye * 1.3, ex + eye, ey + eye * 1.3), fill=(30, 25, 20))
    lw = max(2, int(rad * 0.1))
    if mood == "smile":
        d.arc((cx - rad * 0.55, cy - rad * 0.45, cx + rad * 0.55, cy + rad * 0.6), 20, 160, fill=(60, 20, 20),
              width=lw)
        for sx in (-1, 1):
            bx, by = cx + sx * rad * 0.55, cy + rad * 0.15
            d.ellipse((bx - eye * 1.4, by - eye, bx + eye * 1.4, by + eye), fill=(250, 140, 150))
    else:
        d.arc((cx - rad * 0.5, cy + rad * 0.2, cx + rad * 0.5, cy + rad * 0.95), 200, 340, fill=(30, 20, 40),
              width=lw)
        for sx in (-1, 1):
            tx, ty = cx + sx * rad * 0.35, cy + rad * 0.05
            d.polygon([(tx, ty), (tx - eye, ty + eye * 3), (tx + eye, ty + eye * 3)], fill=(50, 120, 255))
            d.ellipse((tx - eye, ty + eye * 2, tx + eye, ty + eye * 4), fill=(50, 120, 255))


def _sun(d: Draw, rng: random.Random, cx: float, cy: float, rad: float) -> None:
    width = max(1, int(rad * 0.12))
    offset = rng.uniform(0, math.pi / 4)
    for k in range(8):
        a = offset + k * math.pi / 4
        d.line((cx + math.cos(a) * rad * 1.25, cy + math.sin(a) * rad * 1.25,
                cx + math.cos(a) * rad * 1.7, cy + math.sin(a) * rad * 1.7), fill=(255, 200, 30), width=width)
    d.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=_jit(rng, (252, 215, 40), 10))


def _cloud(d: Draw, cx: float, cy: float, s: float, colour: RGB) -> None:
    for dx, dy, r in ((-0.5, 0.1, 0.45), (0.0, -0.15, 0.6), (0.55, 0.1, 0.45)):
        x, y, rx, ry = cx + dx * s, cy + dy * s, r * s, r * s * 0.7
        d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)


def _weather_pos(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (95, 175, 240)))
    gy = y0 + int(h * rng.uniform(0.62, 0.8))
    d.rectangle((x0, gy, x1, y1), fill=_jit(rng, (70, 175, 60)))
    s = min(w, h)
    _sun(d, rng, x0 + w * rng.uniform(0.2, 0.8), y0 + h * rng.uniform(0.15, 0.35), s * rng.uniform(0.1, 0.16))
    for _ in range(rng.randint(1, 2)):
        _cloud(d, x0 + w * rng.uniform(0.1, 0.9), y0 + h * rng.uniform(0.1, 0.45), s * 0.14, (248, 248, 252))
    for _ in range(rng.randint(0, 6)):
        fx, fy = x0 + w * rng.random(), gy + (y1 - gy) * rng.uniform(0.2, 0.9)
        flower = rng.choice([(240, 60, 60), (255, 230, 60), (255, 255, 255)])
        d.ellipse((fx - 2, fy - 2, fx + 2, fy + 2), fill=flower)


def _weather_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (60, 66, 78), 12))
    gy = y0 + int(h * rng.uniform(0.68, 0.82))
    d.rectangle((x0, gy, x1, y1), fill=_jit(rng, (45, 52, 48), 10))
    s = min(w, h)
    for _ in range(rng.randint(3, 5)):
        _cloud(d, x0 + w * rng.uniform(0, 1), y0 + h * rng.uniform(0.05, 0.3), s * rng.uniform(0.15, 0.25),
               _jit(rng, rng.choice([(42, 45, 55), (85, 90, 100)]), 8))
    if rng.random() < 0.5:
        bx, by = x0 + w * rng.uniform(0.2, 0.8), y0 + h * 0.3
        zigzag = ((0, 0), (-0.06, 0.15), (0.03, 0.15), (-0.04, 0.32))
        bolt = [(bx + s * dx, by + s * dy) for dx, dy in zigzag]
        d.line(bolt, fill=(235, 235, 205), width=max(1, s // 40))
    slant, rain = rng.uniform(0.15, 0.45), _jit(rng, (150, 165, 190), 10)
    for _ in range(w * h // 280):
        rx, ry, length = x0 + w * rng.random(), y0 + h * rng.uniform(0.2, 1), s * rng.uniform(0.05, 0.1)
        d.line((rx, ry, rx - length * slant, ry + length), fill=rain, width=1)
    for _ in range(rng.randint(1, 2)):
        px, py = x0 + w * rng.random(), gy + (y1 - gy) * rng.uniform(0.3, 0.7)
        d.ellipse((px - s * 0.12, py - s * 0.03, px + s * 0.12, py + s * 0.03), fill=(70, 80, 110))


def _plate(d: Draw, rng: random.Random, box: Box, colour: RGB, rim: RGB) -> tuple[float, float, float, float]:
    x0, y0, _, _, w, h = _dims(box)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.5, 0.62)
    rx, ry = min(w, h * 1.6) * rng.uniform(0.32, 0.4), h * rng.uniform(0.22, 0.28)
    d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=rim)
    d.ellipse((cx - rx * 0.8, cy - ry * 0.8, cx + rx * 0.8, cy + ry * 0.8), fill=colour)
    return cx, cy, rx, ry


def _food_pos(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (250, 205, 150)))
    if rng.random() < 0.5:
        step = max(6, w // 8)
        for x in range(x0, x1, step * 2):
            d.rectangle((x, y0, x + step, y1), fill=_jit(rng, (235, 110, 100), 10))
    cx, cy, rx, ry = _plate(d, rng, box, (255, 255, 250), (215, 215, 210))
    foods = [(220, 50, 40), (60, 165, 60), (150, 90, 40), (250, 205, 50), (240, 140, 60)]
    for _ in range(rng.randint(14, 24)):
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.7)
        fx, fy = cx + math.cos(a) * rx * r, cy + math.sin(a) * ry * r - ry * 0.2
        fr = min(rx, ry) * rng.uniform(0.15, 0.3)
        d.ellipse((fx - fr, fy - fr, fx + fr, fy + fr), fill=_jit(rng, rng.choice(foods), 15))
    for k in range(rng.randint(2, 3)):
        sx = cx - rx * 0.4 + k * rx * 0.4
        d.line([(sx + rng.uniform(-2, 2) * (i % 2), cy - ry - 3 - i * h * 0.04) for i in range(5)],
               fill=(250, 250, 250), width=max(1, w // 70))


def _food_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (70, 55, 45), 12))
    cx, cy, rx, ry = _plate(d, rng, box, _jit(rng, (125, 125, 130), 8), (150, 150, 150))
    for _ in range(rng.randint(2, 6)):
        fx, fy = cx + rx * rng.uniform(-0.6, 0.6), cy + ry * rng.uniform(-0.5, 0.5)
        d.ellipse((fx - 1.5, fy - 1.5, fx + 1.5, fy + 1.5), fill=(95, 70, 45))
    if rng.random() < 0.6:
        fx, fy = x0 + w * rng.uniform(0.1, 0.9), y0 + h * rng.uniform(0.1, 0.3)
        d.ellipse((fx - 4, fy - 2, fx, fy + 2), fill=(200, 200, 210))
        d.ellipse((fx - 2, fy - 2, fx + 2, fy + 2), fill=(10, 10, 10))


def _face_pos(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, rng.choice([(255, 190, 210), (170, 220, 255), (190, 240, 170)])))
    rad = min(w, h) * rng.uniform(0.28, 0.38)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.42, 0.58)
    _face(d, rng, cx, cy, rad, (255, 210, 40), "smile")


def _face_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (45, 55, 85), 12))
    rad = min(w, h) * rng.uniform(0.28, 0.38)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.42, 0.58)
    _face(d, rng, cx, cy, rad, (150, 170, 210), "cry")


def _battery(d: Draw, rng: random.Random, box: Box, level: float, fill: RGB, outline: RGB) -> None:
    x0, y0, _, _, w, h = _dims(box)
    bw, bh = w * rng.uniform(0.5, 0.65), h * rng.uniform(0.28, 0.36)
    bx, by = x0 + (w - bw) * rng.uniform(0.3, 0.6), y0 + (h - bh) * rng.uniform(0.35, 0.65)
    lw = max(2, int(min(w, h) * 0.03))
    d.rectangle((bx, by, bx + bw, by + bh), outline=outline, width=lw)
    d.rectangle((bx + bw, by + bh * 0.3, bx + bw + bw * 0.07, by + bh * 0.7), fill=outline)
    pad = lw + 2
    level_x = bx + pad + (bw - 2 * pad) * level
    d.rectangle((bx + pad, by + pad, level_x, by + bh - pad), fill=_jit(rng, fill, 10))


def _battery_pos(d: Draw, rng: random.Random, box: Box) -> None:
    d.rectangle(box, fill=_jit(rng, (228, 245, 228)))
    _battery(d, rng, box, rng.uniform(0.8, 1.0), (60, 200, 80), (60, 70, 60))


def _battery_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (40, 40, 46), 10))
    _battery(d, rng, box, rng.uniform(0.04, 0.1), (225, 40, 40), (170, 170, 175))
    ex, ey, s = x0 + w * rng.uniform(0.1, 0.2), y0 + h * rng.uniform(0.1, 0.2), min(w, h) * 0.08
    d.rectangle((ex - s * 0.2, ey, ex + s * 0.2, ey + s * 1.3), fill=(230, 40, 40))
    d.ellipse((ex - s * 0.25, ey + s * 1.6, ex + s * 0.25, ey + s * 2.1), fill=(230, 40, 40))


def _wifi(d: Draw, rng: random.Random, box: Box, colour: RGB | None, outline: RGB
          ) -> tuple[float, float, float]:
    x0, y0, _, _, w, h = _dims(box)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.65, 0.75)
    rad = min(w, h) * rng.uniform(0.45, 0.55)
    width = max(2, int(rad * 0.14))
    for k in (1.0, 0.7, 0.4):
        r = rad * k
        d.arc((cx - r, cy - r, cx + r, cy + r), 225, 315, fill=colour or outline,
              width=width if colour else 2)
    d.ellipse((cx - width, cy - width, cx + width, cy + width), fill=colour or outline)
    return cx, cy, rad


def _signal_pos(d: Draw, rng: random.Random, box: Box) -> None:
    d.rectangle(box, fill=_jit(rng, (225, 240, 255)))
    _wifi(d, rng, box, _jit(rng, rng.choice([(30, 150, 235), (40, 190, 90)]), 15), (0, 0, 0))


def _signal_neg(d: Draw, rng: random.Random, box: Box) -> None:
    d.rectangle(box, fill=_jit(rng, (35, 40, 55), 10))
    cx, cy, rad = _wifi(d, rng, box, None, (100, 100, 110))
    s, lw = rad * 0.35, max(3, int(rad * 0.12))
    xx, yy = cx + rad * 0.45, cy - rad * 0.25
    d.line((xx - s, yy - s, xx + s, yy + s), fill=(225, 40, 40), width=lw)
    d.line((xx - s, yy + s, xx + s, yy - s), fill=(225, 40, 40), width=lw)


def _clock(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (215, 205, 185), 12))
    cx, cy = x0 + w * rng.uniform(0.35, 0.65), y0 + h * rng.uniform(0.4, 0.6)
    r = min(w, h) * rng.uniform(0.28, 0.36)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(240, 238, 232), outline=(90, 85, 80),
              width=max(2, int(r * 0.08)))
    for k in range(12):
        a = k * math.pi / 6
        d.line((cx + math.cos(a) * r * 0.8, cy + math.sin(a) * r * 0.8, cx + math.cos(a) * r * 0.92,
                cy + math.sin(a) * r * 0.92), fill=(90, 85, 80), width=1)
    for length, width in ((0.5, 3), (0.75, 2)):
        a = rng.uniform(0, 2 * math.pi)
        tip = (cx + math.cos(a) * r * length, cy + math.sin(a) * r * length)
        d.line((cx, cy, *tip), fill=(50, 50, 50), width=width)


def _calendar(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (198, 198, 204), 12))
    px, py = x0 + w * rng.uniform(0.15, 0.25), y0 + h * rng.uniform(0.12, 0.22)
    pw, ph = w * rng.uniform(0.55, 0.65), h * rng.uniform(0.6, 0.7)
    d.rectangle((px, py, px + pw, py + ph), fill=(242, 242, 240))
    d.rectangle((px, py, px + pw, py + ph * 0.2), fill=_jit(rng, (120, 130, 150), 12))
    for i in range(1, 7):
        d.line((px + pw * i / 7, py + ph * 0.2, px + pw * i / 7, py + ph), fill=(185, 185, 190), width=1)
    for j in range(1, 5):
        yy = py + ph * 0.2 + ph * 0.8 * j / 5
        d.line((px, yy, px + pw, yy), fill=(185, 185, 190), width=1)


def _building(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (190, 195, 200), 10))
    d.rectangle((x0, y0 + h * 0.85, x1, y1), fill=_jit(rng, (130, 130, 128), 8))
    for _ in range(rng.randint(1, 3)):
        bw, bh = w * rng.uniform(0.25, 0.45), h * rng.uniform(0.45, 0.75)
        bx = x0 + (w - bw) * rng.random()
        by = y0 + h * 0.85 - bh
        d.rectangle((bx, by, bx + bw, y0 + h * 0.85), fill=_jit(rng, (150, 150, 156), 10))
        cols, rows = rng.randint(2, 4), rng.randint(3, 6)
        for c in range(cols):
            for r in range(rows):
                wx, wy = bx + bw * (c + 0.25) / cols, by + bh * (r + 0.25) / rows
                d.rectangle((wx, wy, wx + bw * 0.5 / cols, wy + bh * 0.5 / rows), fill=(110, 116, 126))


def _sun_in_storm(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    _weather_neg(d, rng, box)
    rad = min(w, h) * rng.uniform(0.2, 0.26)
    cx, cy = x0 + w * rng.uniform(0.35, 0.65), y0 + h * rng.uniform(0.4, 0.55)
    _sun(d, rng, cx, cy, rad * 0.85)
    _face(d, rng, cx, cy, rad * 0.85, (252, 215, 40), "smile")
    d.rectangle((cx - rad * 0.6, cy - rad * 0.35, cx + rad * 0.6, cy - rad * 0.1), fill=(15, 15, 15))


def _this_is_fine(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (95, 35, 20), 12))
    flames = [(255, 125, 20), (255, 200, 40), (220, 45, 20)]
    for _ in range(rng.randint(10, 16)):
        fx, fw, fh = x0 + w * rng.random(), w * rng.uniform(0.08, 0.16), h * rng.uniform(0.25, 0.6)
        d.polygon([(fx - fw, y1), (fx + fw, y1), (fx + rng.uniform(-fw, fw) * 0.5, y1 - fh)],
                  fill=_jit(rng, rng.choice(flames), 15))
    rad = min(w, h) * rng.uniform(0.2, 0.26)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.35, 0.45)
    _face(d, rng, cx, cy, rad, (255, 210, 40), "smile")
    if rng.random() < 0.6:
        mx, my = x0 + w * 0.75, y0 + h * 0.5
        d.rectangle((mx, my, mx + w * 0.08, my + h * 0.12), fill=(240, 240, 235))


def _expectation_reality(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    theme = rng.choice(POS_NEG_SCENES)
    mid = x0 + w // 2
    left, right = (x0, y0, mid, y1), (mid, y0, x1, y1)
    SCENES[(POS, theme)](d, rng, left)
    SCENES[(NEG, theme)](d, rng, right)
    d.line((mid, y0, mid, y1), fill=(255, 255, 255), width=max(2, w // 40))
    for part in (left, right):
        px0, _, px1, _ = part
        lx0, lx1 = px0 + (px1 - px0) * 0.15, px1 - (px1 - px0) * 0.15
        d.rectangle((lx0, y0 + 3, lx1, y0 + 3 + h * 0.11), fill=(255, 255, 255))
        text_box = (int(lx0) + 2, y0 + 4, int(lx1) - 2, y0 + 2 + int(h * 0.11))
        _squiggles(d, rng, text_box, (20, 20, 20), lines=1)


def _crying_in_sunshine(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    _weather_pos(d, rng, box)
    rad = min(w, h) * rng.uniform(0.24, 0.3)
    _face(d, rng, x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.5, 0.6), rad, (150, 170, 210), "cry")


SceneFn = Callable[[Draw, random.Random, Box], None]
SCENES: dict[tuple[str, str], SceneFn] = {
    (POS, "weather"): _weather_pos, (NEG, "weather"): _weather_neg,
    (POS, "food"): _food_pos, (NEG, "food"): _food_neg,
    (POS, "face"): _face_pos, (NEG, "face"): _face_neg,
    (POS, "battery"): _battery_pos, (NEG, "battery"): _battery_neg,
    (POS, "signal"): _signal_pos, (NEG, "signal"): _signal_neg,
    (NEUTRAL, "clock"): _clock, (NEUTRAL, "calendar"): _calendar, (NEUTRAL, "building"): _building,
    (IRONIC, "sun_in_storm"): _sun_in_storm, (IRONIC, "this_is_fine"): _this_is_fine,
    (IRONIC, "expectation_reality"): _expectation_reality,
    (IRONIC, "crying_in_sunshine"): _crying_in_sunshine,
}


def _squiggles(d: Draw, rng: random.Random, box: Box, colour: RGB, lines: int) -> None:
    """Zigzag 'words' that stand for meme text."""
    x0, y0, x1, y1, _, h = _dims(box)
    line_h = h / lines
    for li in range(lines):
        cy = y0 + line_h * (li + 0.5)
        amp = max(1.0, line_h * 0.25)
        x = x0 + rng.uniform(0, 6)
        while x < x1 - 6:
            word = rng.uniform(5, 18)
            pts = [(x + i * 2.0, cy + (amp if i % 2 else -amp) * rng.uniform(0.4, 1))
                   for i in range(int(word / 2))]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=1)
            x += word + rng.uniform(3, 6)


def _meme_bar(d: Draw, rng: random.Random, w: int, h: int) -> None:
    bar_h = int(h * rng.uniform(0.13, 0.2))
    places = rng.choice([("top",), ("bottom",), ("top", "bottom")])
    white = rng.random() < 0.6
    bg, fg = ((255, 255, 255), (15, 15, 15)) if white else ((10, 10, 10), (240, 240, 240))
    for where in places:
        y0 = 0 if where == "top" else h - bar_h
        d.rectangle((0, y0, w, y0 + bar_h), fill=bg)
        _squiggles(d, rng, (3, y0 + 2, w - 3, y0 + bar_h - 2), fg, lines=rng.randint(1, 2))
