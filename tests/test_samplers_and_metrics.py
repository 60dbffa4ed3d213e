"""Samplers (GMM, variance-law rescale) and KID / precision-recall on constructed cases."""

import pytest
import torch

from pipeline.evaluation.features import fidelity_metrics, kid_subset_size, statistics
from pipeline.evaluation.gmm import fit_gmm, sample_gmm
from pipeline.evaluation.sampling import latents, rescale_latents
from pipeline.models import DenseVAE

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


def two_blobs(n=4000):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(int(0.3 * n), 2, generator=g) * torch.tensor([0.5, 0.2]) + torch.tensor([-5.0, 0.0])
    b = torch.randn(n - len(a), 2, generator=g) * torch.tensor([1.0, 1.5]) + torch.tensor([5.0, 2.0])
    return torch.cat([a, b])


def test_gmm_recovers_a_known_mixture_and_samples_from_it():
    gmm = fit_gmm(two_blobs(), components=2, covariance="full", seed=0)
    order = gmm["means"][:, 0].argsort()
    assert gmm["weights"][order].tolist() == pytest.approx([0.3, 0.7], abs=0.01)
    assert gmm["means"][order].flatten().tolist() == pytest.approx([-5, 0, 5, 2], abs=0.1)
    z = sample_gmm(gmm, 20000, torch.Generator().manual_seed(1))
    left, right = z[z[:, 0] < 0], z[z[:, 0] > 0]
    assert len(left) / len(z) == pytest.approx(0.3, abs=0.02)
    assert left.std(0).tolist() == pytest.approx([0.5, 0.2], rel=0.05)
    assert right.std(0).tolist() == pytest.approx([1.0, 1.5], rel=0.05)


@pytest.mark.parametrize("covariance", ["full", "tied", "diag", "spherical"])
def test_gmm_every_covariance_type(covariance):
    gmm = fit_gmm(two_blobs(400), components=2, covariance=covariance, seed=0)
    z = sample_gmm(gmm, 50, torch.Generator().manual_seed(0))
    assert z.shape == (50, 2) and z.dtype == torch.float32 and torch.isfinite(z).all()


def test_samplers_are_seeded_and_independent_of_each_other():
    stage2 = DenseVAE(3, width=8, depth=1)
    a = latents("gen2", 10, seed=5, latent_dim=3, stage2=stage2)
    torch.randn(100)  # global RNG use in between changes nothing
    assert torch.equal(a, latents("gen2", 10, seed=5, latent_dim=3, stage2=stage2))
    noisy = latents("gen2_noise", 10, seed=5, latent_dim=3, stage2=stage2, gamma_z=0.5)
    assert not torch.equal(a, noisy) and (noisy - a).std() == pytest.approx(0.5, rel=0.5)
    assert latents("gen1", 4, seed=1, latent_dim=3).shape == (4, 3)


def test_rescale_sets_the_expected_std_and_keeps_the_mean():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5000, 2, generator=g) * torch.tensor([0.5, 0.8]) + torch.tensor([1.0, -1.0])
    out = rescale_latents(z, torch.tensor([1.0, 2.0]))
    assert out.std(0).tolist() == pytest.approx([1.0, 2.0], rel=1e-4)
    assert out.mean(0).tolist() == pytest.approx(z.mean(0).tolist(), abs=1e-5)


def test_kid_and_precision_recall_on_constructed_cases():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(1500, 8, generator=g, dtype=torch.float64)
    same = fidelity_metrics(real.clone(), real, statistics(real))
    assert abs(same["fid"]) < 1e-6 and abs(same["kid_mean"]) < 0.05  # unbiased MMD^2 of random subsets: ~0
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    collapsed = fidelity_metrics(real[:1500] * 0.1, real, statistics(real))
    assert collapsed["precision"] > 0.9 and collapsed["recall"] < 0.1  # all inside, covers little
    shifted = fidelity_metrics(real + 3.0, real, statistics(real))
    assert shifted["kid_mean"] > collapsed["kid_mean"] > same["kid_mean"]
    assert shifted["precision"] < 0.2 and shifted["recall"] < 0.2


def test_kid_subsets_are_smaller_than_the_sets_so_its_std_is_a_spread():
    assert [kid_subset_size(*n) for n in ((10000, 10000), (2000, 360), (60, 60), (3, 3))] == [1000, 180, 30, 2]
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(400, 8, generator=g, dtype=torch.float64) * 1.2
    m = fidelity_metrics(fake, real, statistics(real))
    assert m["kid_subset_size"] == 200 and m["kid_std"] > 0  # subsets of 400 would all be the whole set: std 0
