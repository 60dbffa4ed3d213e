"""A Gaussian mixture on the latent codes, the sampler of Ghosh et al. (ICLR 2020).

Fitted with scikit-learn's ``GaussianMixture`` on the stage-1 posterior means of
the training images; kept as plain tensors (mixture weights, means and the Cholesky
factors of full covariances, whatever ``covariance_type`` was fitted) and sampled
with torch: pick a component k ~ Cat(weights), then z = mean_k + L_k eps.
"""

import torch


def fit_gmm(codes: torch.Tensor, components: int, covariance: str, seed: int) -> dict[str, torch.Tensor]:
    """The mixture fitted on one thread (BLAS and scikit-learn's OpenMP): the same bits
    whatever the number of CPUs (a few dozen codes' dimensions gain nothing from more)."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    gm = GaussianMixture(components, covariance_type=covariance, random_state=seed, max_iter=500)
    with threadpool_limits(1):
        gm.fit(codes.double().cpu().numpy())
    k, dim = gm.means_.shape
    cov = torch.from_numpy(gm.covariances_)
    if covariance == "tied":
        cov = cov.expand(k, dim, dim)
    elif covariance == "diag":
        cov = torch.diag_embed(cov)
    elif covariance == "spherical":
        cov = cov[:, None, None] * torch.eye(dim, dtype=cov.dtype)
    return {
        "weights": torch.from_numpy(gm.weights_),
        "means": torch.from_numpy(gm.means_),
        "scale_tril": torch.linalg.cholesky(cov.contiguous()),
    }


def sample_gmm(gmm: dict[str, torch.Tensor], n: int, generator: torch.Generator) -> torch.Tensor:
    """n float32 draws (n, dim) from the mixture."""
    comp = torch.multinomial(gmm["weights"], n, replacement=True, generator=generator)
    eps = torch.randn(n, gmm["means"].shape[1], generator=generator, dtype=torch.float64)
    z = gmm["means"][comp] + (gmm["scale_tril"][comp] @ eps.unsqueeze(-1)).squeeze(-1)
    return z.float()
