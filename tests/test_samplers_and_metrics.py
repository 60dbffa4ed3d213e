"""Samplers (GMM, variance-law rescale) and KID / precision-recall on constructed cases."""

import pytest
import torch

from pipeline.evaluation.features import fidelity_metrics, kid_subset_size, statistics
from pipeline.evaluation.gmm import fit_gmm, sample_gmm
from pipeline.evaluation.sampling import latents, rescale_constants, rescale_latents
from pipeline.evaluation.scoring import choose_generator
from pipeline.models import DenseVAE, Generator

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


def test_the_registered_generator_draws_each_samplers_latents_from_one_standard_normal_draw():
    """Generator(u) for every sampler: the evaluation's latents of the same u (gen2,
    gen2_noise, gen2_rescaled bit for bit) and, for the mixture, its law (pipeline.models.generator)."""
    torch.manual_seed(0)
    stage1, stage2 = DenseVAE(2, width=8, depth=1), DenseVAE(2, width=8, depth=1)  # stage 1 here: a VAE of 2-d codes
    u = torch.randn(50_000, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z2 = stage2.decode(u[:, :2])
        assert torch.equal(Generator(stage1, "gen1").latents(u[:, :2]), u[:, :2])
        assert torch.equal(Generator(stage1, "gen2", stage2).latents(u[:, :2]), z2)
        noisy = Generator(stage1, "gen2_noise", stage2, gamma_z=0.5)
        assert noisy.latent_dim == 4 and torch.equal(
            noisy.latents(torch.cat([u[:, :2], u[:, 1:]], 1)), z2 + 0.5 * u[:, 1:]
        )
        expected = torch.tensor([1.0, 2.0])
        rescaled = Generator(
            stage1, "gen2_rescaled", stage2, shift=(c := rescale_constants(z2, expected))[0], scale=c[1]
        )
        assert torch.equal(rescaled.latents(u[:, :2]), rescale_latents(z2, expected))
        truth = {
            "weights": torch.tensor([0.3, 0.7], dtype=torch.float64),
            "means": torch.tensor([[-5.0, 0.0], [5.0, 2.0]], dtype=torch.float64),
            "scale_tril": torch.diag_embed(torch.tensor([[0.5, 0.2], [1.0, 1.5]], dtype=torch.float64)),
        }
        mixture = Generator(stage1, "gmm", gmm=truth)
        z = mixture.latents(u)
        images = mixture(u[:4])
    assert mixture.latent_dim == 3 and images.shape == (4, 2) and torch.equal(mixture(u[:4]), images)  # no randomness
    left, right = z[z[:, 0] < 0], z[z[:, 0] > 0]
    assert len(left) / len(z) == pytest.approx(0.3, abs=0.006)  # P(k) = w_k, the standard error is 0.002
    assert left.mean(0).tolist() == pytest.approx([-5.0, 0.0], abs=0.01)
    assert left.std(0).tolist() == pytest.approx([0.5, 0.2], rel=0.02)
    assert right.std(0).tolist() == pytest.approx([1.0, 1.5], rel=0.02)


def test_the_generator_is_the_sampler_with_the_lowest_fid_against_the_validation_images():
    metrics = {"selection_fid_domain_gen2": 8.5, "selection_fid_domain_gmm": 6.25, "fid_domain_gmm": 1.0}
    best, line = choose_generator(
        metrics | {"selection_fid_domain_gen1": 30.0}, "domain", ["rec", "gen1", "gen2", "gmm"], "val"
    )
    assert best == "gmm" and line == (
        "gmm: the lowest FID against validation images held out of training, not the test images "
        "(gen1 30, gen2 8.5, gmm 6.25)"
    )
    assert choose_generator(metrics, "domain", ["gen2", "gmm"], "train")[1].startswith(
        "gmm: the lowest FID against training images (prepare.val_fraction: 0)"
    )
    assert choose_generator(metrics, "domain", ["rec"], "val")[0] == "gen2"  # no sampler scored: GEN-2, said so


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
