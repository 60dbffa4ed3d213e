"""What ``prepare`` does to every image: resize, convert channels, a JPEG round trip."""

import numpy as np
import torch
import torch.nn.functional as F


def jpeg_roundtrip(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """uint8 images written as JPEG at ``quality`` (Pillow, 4:2:0 chroma subsampling for RGB)
    and decoded again. The references do this to CIFAR-10 before training and scoring
    (TwoStageVAE preprocess.py load_cifar10_data: scipy.misc.imsave / imread; BalancingVAE
    computed_gamma.py lines 43-56: imageio.imwrite / imread; both Pillow at its default
    quality 75)."""
    import io

    from PIL import Image

    from pipeline.progress import progress

    out = torch.empty_like(images)
    arrays = images.permute(0, 2, 3, 1).numpy()
    with progress(total=len(images), desc="jpeg round trip", unit="img", leave=False) as bar:
        for i, a in enumerate(arrays):
            buf = io.BytesIO()
            Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format="JPEG", quality=quality)
            decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
            out[i] = torch.from_numpy(decoded.reshape(a.shape).copy()).permute(2, 0, 1)
            bar.update(1)
    return out


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 images to ``size`` x ``size`` (antialiased bilinear); ``None`` keeps them."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 images with ``channels`` channels (None keeps them). Grey -> RGB repeats the channel;
    RGB -> grey is Pillow's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16, i.e. 0.299 R + 0.587 G + 0.114 B."""
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3:
        return images.repeat(1, 3, 1, 1)
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
    chunks = [((c.int() * weights).sum(1, keepdim=True) + 2**15) >> 16 for c in images.split(4096)]
    return torch.cat(chunks).to(torch.uint8) if chunks else images[:, :1]
