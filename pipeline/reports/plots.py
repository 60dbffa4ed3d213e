"""Figures a person would rather look at than read (matplotlib, written as PNG)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.files import atomic_path  # noqa: E402
from pipeline.hardware.timing import timed  # noqa: E402


def save_figure(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


@timed("io")
def latent_figure(stats: dict, path, title: str) -> None:
    """Bars per latent dimension: KL_j, and the variance law Var(mu_j) + E[sigma_j^2] split in its two parts."""
    dims = range(len(stats["kl"]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    a.bar(dims, stats["kl"].numpy(), color="tab:blue")
    a.set(title="KL per latent dimension", xlabel="dimension", ylabel="nats")
    b.bar(dims, stats["var_mu"].numpy(), color="tab:green", label="Var(mu)")
    b.bar(dims, stats["e_sigma2"].numpy(), bottom=stats["var_mu"].numpy(), color="tab:orange", label="E[sigma^2]")
    b.axhline(1.0, color="k", lw=0.8, ls="--")
    b.axhline(0.01, color="r", lw=0.8, ls=":", label="active threshold")
    b.set(title="variance law (should be ~1)", xlabel="dimension")
    b.legend(fontsize=7)
    fig.suptitle(title, y=1.04)
    save_figure(fig, path)
