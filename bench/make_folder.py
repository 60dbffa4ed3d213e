"""A folder of generated colour images in visual classes, for trying the pipeline as a user would.

    .venv/bin/python bench/make_folder.py /tmp/styles              # 4 x 800 PNGs, 32 px
    .venv/bin/python bench/make_folder.py /tmp/styles --per-class 200 --size 64

Four styles, one subfolder each (the folder dataset's labels), every image drawn here from
a seeded random generator (no third-party images), at twice the side and downsampled
(anti-aliased edges):

    gratings  a sinusoidal grating: random angle, frequency, phase and two colours
    blobs     2 to 5 soft Gaussian blobs of random colours on a dark background
    rings     1 to 3 anti-aliased rings of random centre, radius, width and colour on a light one
    tiles     a Mondrian-like split of the square into 3 to 6 flat-coloured rectangles

Then point params.yaml at it (`prepare.dataset: folder`, `prepare.data_root: /tmp/styles`,
`prepare.image_size: 32`) or run `bvae answer --data /tmp/styles --size 32 --out ...`.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def _grid(n: int):
    y, x = np.mgrid[0:n, 0:n] / n
    return x, y


def _mix(weight: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel a * weight + b * (1 - weight), weight in [0, 1] of shape (n, n)."""
    return weight[..., None] * a + (1 - weight[..., None]) * b


def gratings(rng: np.random.Generator, n: int) -> np.ndarray:
    x, y = _grid(n)
    angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 6), rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    return _mix(wave, rng.uniform(0, 1, 3), rng.uniform(0, 1, 3))


def blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    x, y = _grid(n)
    image = np.full((n, n, 3), rng.uniform(0, 0.2))
    for _ in range(rng.integers(2, 6)):
        cx, cy, s = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.06, 0.18)
        weight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2))
        image = _mix(weight, rng.uniform(0.3, 1, 3), image)
    return image


def rings(rng: np.random.Generator, n: int) -> np.ndarray:
    x, y = _grid(n)
    image = np.full((n, n, 3), rng.uniform(0.75, 1))
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75)
        radius, width = rng.uniform(0.1, 0.4), rng.uniform(0.03, 0.08)
        distance = np.abs(np.hypot(x - cx, y - cy) - radius)
        weight = np.clip(1 - (distance - width / 2) * n, 0, 1)  # a one-pixel soft edge
        image = _mix(weight, rng.uniform(0, 0.8, 3), image)
    return image


def tiles(rng: np.random.Generator, n: int) -> np.ndarray:
    image = np.zeros((n, n, 3))
    boxes = [(0, 0, n, n)]
    while len(boxes) < rng.integers(3, 7):
        x0, y0, x1, y1 = boxes.pop(int(np.argmax([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes])))
        if rng.random() < 0.5 and x1 - x0 > 4:
            cut = int(rng.integers(x0 + 2, x1 - 1))
            boxes += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
        elif y1 - y0 > 4:
            cut = int(rng.integers(y0 + 2, y1 - 1))
            boxes += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
        else:
            boxes.append((x0, y0, x1, y1))
            break
    for x0, y0, x1, y1 in boxes:
        image[y0:y1, x0:x1] = rng.uniform(0, 1, 3)
    image[:, [b[0] for b in boxes if b[0]]] = 0.05  # dark lines between the tiles
    image[[b[1] for b in boxes if b[1]], :] = 0.05
    return image


STYLES = {"gratings": gratings, "blobs": blobs, "rings": rings, "tiles": tiles}


def make(out: Path, per_class: int, size: int, seed: int) -> int:
    """Write ``per_class`` PNGs of each style under ``out/<style>/``; return how many."""
    rng = np.random.default_rng(seed)
    for style, draw in STYLES.items():
        (out / style).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (np.clip(draw(rng, 2 * size), 0, 1) * 255).round().astype(np.uint8)
            image = Image.fromarray(pixels).resize((size, size), Image.Resampling.LANCZOS)
            image.save(out / style / f"{i:05d}.png")
    return per_class * len(STYLES)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the folder to write (one subfolder per style)")
    ap.add_argument("--per-class", type=int, default=800, help="images per style (default 800: 3,200 in all)")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    count = make(args.out, args.per_class, args.size, args.seed)
    print(f"wrote {count:,} images of {args.size} px in {len(STYLES)} styles ({', '.join(STYLES)}) to {args.out}")


if __name__ == "__main__":
    main()
