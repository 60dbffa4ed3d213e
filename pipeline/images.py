"""Images: float to uint8, grids a person can read in a browser, PNG files."""

from pathlib import Path

import torch

from pipeline.files import atomic_path
from pipeline.hardware.timing import timed


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (float) to uint8 [0, 255]."""
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """Tile uint8 images (N, C, H, W) into one (C, H', W') image, ``nrow`` per row, white gaps."""
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=torch.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = img
    return grid


def save_pngs(images: torch.Tensor, folder) -> list[Path]:
    """Write uint8 images (N, C, H, W) as numbered PNG files 000000.png, ... (grey or RGB)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images.cpu()):
        path = folder / f"{i:06d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()).save(
                tmp, format="PNG"
            )
        paths.append(path)
    return paths


GRID_MIN_WIDTH = 256  # px: grids of small images are enlarged (nearest neighbour) to at least this width


def grid_image(images: torch.Tensor, nrow: int = 8):
    """uint8 images (N, C, H, W) as one PIL image grid, enlarged by the smallest whole factor
    that makes it GRID_MIN_WIDTH px wide or more (8 x 8 digits: 73 px -> 292 px), each pixel
    a square block, so it reads in a browser."""
    from PIL import Image

    grid = make_grid(images.cpu(), nrow=nrow)
    img = Image.fromarray(grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy())
    factor = -(-GRID_MIN_WIDTH // img.width)
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
    return img


@timed("io")
def save_grid(images: torch.Tensor, path, nrow: int = 8):
    """Save uint8 images (N, C, H, W) as one PNG grid (:func:`grid_image`); returns the grid."""
    img = grid_image(images, nrow)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return img
