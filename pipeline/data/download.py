"""torchvision downloads, where there is a network and ``BVAE_OFFLINE`` allows them."""

import os

from pipeline import PipelineError


def offline() -> bool:
    """``BVAE_OFFLINE=1``: never try to download (the tests set it)."""
    return os.environ.get("BVAE_OFFLINE", "") not in ("", "0")


def download(fetch, message: str, network: bool = True):
    """Return ``fetch()`` (a torchvision download); a failure, or ``BVAE_OFFLINE`` when it needs
    the ``network``, becomes one PipelineError that starts with ``message``."""
    if network and offline():
        raise PipelineError(f"{message} (BVAE_OFFLINE is set, so nothing was downloaded)")
    try:
        return fetch()
    except Exception as e:  # network errors come in many types
        reason = " ".join(str(e).split())[:300]
        raise PipelineError(f"{message} (the download failed: {reason})") from None
