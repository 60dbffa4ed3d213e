"""The evaluation protocols, step by step against hand values and the reference code's behaviour
(github daib13/TwoStageVAE at 8718623, cited TS/DM/FS; github asperti/BalancingVAE at d9f3997,
cited CG/FID: the file and line of each step are in pipeline/evaluation/protocols/)."""

import math

import pytest
import torch

from pipeline.config.choices import PROTOCOLS
from pipeline.data import jpeg_roundtrip
from pipeline.evaluation import protocols
from pipeline.evaluation.protocols.asperti import Asperti, adjust_reconstructions, latent_scale, rescale_batches
from pipeline.evaluation.protocols.dai_wipf import DaiWipf, normalise_each

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


class PixelVAE(torch.nn.Module):
    """1-d latent; every test image encodes to mu = 0.5, sigma = 0.2; dec(z) is the 1x2x2 image
    [z, 1; 0, 1/2], z clipped to [0, 1] (its min and max are 0 and 1: min-max leaves it)."""

    latent_dim = 1

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        n = len(x)
        return torch.full((n, 1), 0.5), torch.full((n, 1), math.log(0.04))

    def decode(self, z):
        z = z.view(-1).clamp(0, 1)
        return torch.stack([z, 1 + 0 * z, 0 * z, 0.5 + 0 * z], 1).view(-1, 1, 2, 2)


class Stage2(torch.nn.Module):
    """u = z (a posterior of vanishing variance); dec2(u) = scale * u + shift."""

    def __init__(self, scale=1.0, shift=0.0):
        super().__init__()
        self.p, self.scale, self.shift = torch.nn.Parameter(torch.zeros(1)), scale, shift

    def encode(self, z):
        return z, torch.full_like(z, -60.0)

    def decode(self, u):
        return self.scale * u + self.shift


def context(n_test=400, stage2=None, gamma_z=0.3, **kw):
    test = torch.randint(0, 256, (n_test, 1, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    base = dict(
        vae=PixelVAE(),
        stage2=stage2 or Stage2(),
        gamma_z=gamma_z,
        gmm=None,
        expected_std=torch.ones(1),
        test=test,
        samplers=["gen1", "gen2"],
        num_samples=None,
        rescale=False,
        batch_size=64,
        seed=0,
    )
    return protocols.Context(**(base | kw))


def test_the_registry_is_the_schemas_choices():
    assert tuple(protocols.PROTOCOLS) == PROTOCOLS == ("clean", "dai_wipf", "asperti")
    assert protocols.space_name("inception", "clean") == "inception"
    assert protocols.space_name("inception", "dai_wipf") == "inception-dai_wipf"
    with pytest.raises(ValueError, match="unknown protocol 'paper'"):
        protocols.build("paper", context())


def test_rec_decodes_a_posterior_draw_in_both_references_and_the_mean_in_clean():
    # TS:258 and CG:482: z = mu + sigma * eps. Here mu = 0.5, sigma = 0.2 for every image and
    # REC's top-left pixel is z: from the mean it is 0.5 always, from a draw it spreads by 0.2.
    clean = protocols.build("clean", context()).images("rec")
    assert clean[:, 0, 0, 0].unique().tolist() == [128]  # round(0.5 * 255)
    ctx = context(n_test=4000)
    pixel = protocols.build("dai_wipf", ctx).images("rec")[:, 0, 0, 0].double() / 255  # min-max: unchanged
    assert float(pixel.mean()) == pytest.approx(0.5, abs=0.01) and float(pixel.std()) == pytest.approx(0.2, abs=0.01)
    pixel = protocols.build("asperti", ctx).images("rec")[:, 0, 0, 0].double() / 255  # adjusted, still spread
    assert float(pixel.std()) > 0.1


def test_posterior_draw_has_the_encoders_spread_before_any_preprocessing():
    from pipeline.evaluation import sampling

    mu, logvar = torch.full((20000, 1), 0.5), torch.full((20000, 1), math.log(0.04))
    z = sampling.posterior_sample(mu, logvar, seed=3)
    assert float(z.mean()) == pytest.approx(0.5, abs=0.01) and float(z.std()) == pytest.approx(0.2, abs=0.01)


def test_dai_wipf_normalises_each_image_to_its_own_min_and_max():
    # FS:184-186: (x - min x) / (max x - min x), per image, on floats
    a = torch.tensor([[[[0.2, 0.4], [0.6, 0.4]]]])  # min 0.2, max 0.6
    b = torch.full((1, 1, 2, 2), 0.3)  # constant: 0 / 0 in FS; left as it is
    out = normalise_each(torch.cat([a, b]))
    assert out[0].flatten().tolist() == pytest.approx([0.0, 0.5, 1.0, 0.5])
    assert out[1].flatten().tolist() == pytest.approx([0.3] * 4)


def test_dai_wipf_min_maxes_rec_gen1_and_gen2_and_adds_gamma_z_noise_to_gen2():
    # DM:105-107 norm=True for all three; TS:141-144 z = dec2(u) + gamma_z * eps
    p = DaiWipf(context(stage2=Stage2(scale=0.0, shift=0.5), gamma_z=0.3))
    assert p.sets == ["rec", "gen1", "gen2"]
    z = p.latents("gen2")  # dec2(u) = 0.5 for every u: the spread is the noise alone
    assert len(z) == 10_000 and float(z.std()) == pytest.approx(0.3, rel=0.03)
    for name in p.sets:  # every image with a spread reaches 0 and 1
        x = p.images(name).flatten(1)
        spread = x.max(1).values > x.min(1).values
        assert (x[spread].min(1).values == 0).all() and (x[spread].max(1).values == 255).all()


def test_asperti_rescales_reconstructions_to_the_real_images_spread():
    # CG:643-647: per-pixel std across images, averaged over pixels
    real = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # std 0.5 at every pixel
    rec = torch.tensor([0.4, 0.6]).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # std 0.1
    out = adjust_reconstructions(rec, real)  # scale 5 around the mean 0.5: -0.5 and 1.5, clipped
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    rec = torch.tensor([0.3, 0.5, 0.7]).view(3, 1, 1, 1).expand(3, 1, 2, 2)  # std 0.1633 -> scale 3.062
    real = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    scale = 0.5 / math.sqrt(0.08 / 3)  # population std of 0.3, 0.5, 0.7
    expected = [min(max(0.5 + (r - 0.5) * scale, 0), 1) for r in (0.3, 0.5, 0.7)]  # 0, 0.5, 1 after the clip
    assert adjust_reconstructions(rec, real)[:, 0, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)


def test_asperti_latent_rescale_is_one_scalar_from_e_sigma_and_only_above_a_quarter():
    # CG:627-641. mu = +-1 (Var 1), sigma = 0.25: zsum = 1 + E[sigma] = 1.25 (CG:628 takes
    # exp of the log *sigma*), adjust2 = sqrt(1.25) = 1.1180 (E[sigma^2] would give 1.0308).
    mu = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    logvar = torch.full_like(mu, 2 * math.log(0.25))
    # z_hat = mu / 2: mse2 = 0.25, var_loss2 = 1 - 0.25 = 0.75, ratio 3 > 0.25: applied
    adjust2, ratio = latent_scale(mu, logvar, mu / 2)
    assert ratio == pytest.approx(3.0) and adjust2 == pytest.approx(math.sqrt(1.25))
    # z_hat = mu + (0.5, -0.5, -0.5, 0.5): Var(z_hat) = 1.25, var_loss2 = -0.25, mse2 = 0.25: ratio -1
    adjust2, ratio = latent_scale(mu, logvar, mu + torch.tensor([[0.5], [-0.5], [-0.5], [0.5]]))
    assert ratio == pytest.approx(-1.0) and adjust2 is None
    # z_hat = 0.9 mu + (0.4, 0.4, -0.4, -0.4): Var(z_hat) = 0.81 + 0.16 = 0.97 (the two parts are
    # uncorrelated), var_loss2 = 0.03; mse2 = mean (0.1 mu - e)^2 = 0.01 + 0.16 = 0.17: ratio 0.176
    adjust2, ratio = latent_scale(mu, logvar, 0.9 * mu + torch.tensor([[0.4], [0.4], [-0.4], [-0.4]]))
    assert ratio == pytest.approx(0.03 / 0.17, rel=1e-5) and adjust2 is None


def test_asperti_rescales_gen2_per_batch_of_100_uncentred():
    # CG:431-435: z * adjust2 / mean_dims(std over the batch), each batch of 100 (CG:758) on its own
    signs = torch.tensor([1.0, -1.0]).repeat(50)
    first = torch.stack([signs, 2 * signs], 1)  # stds 1 and 2: mean 1.5; adjust2 = 3 -> x2
    second = 5 + torch.stack([signs, signs], 1)  # std 1 around 5: x3, uncentred -> 15 +- 3
    out = rescale_batches(torch.cat([first, second]), 3.0)
    assert out[:100].abs().unique().tolist() == [2.0, 4.0]
    assert out[100:].unique().tolist() == [12.0, 18.0]


def test_asperti_gen1_and_gen2_take_the_rescale_only_when_stage_2_loses_variance():
    loses = Asperti(context(stage2=Stage2(scale=0.5)))  # the PixelVAE's codes are constant, 0.5...
    # ...so Var(zmean) = 0 and the ratio is 0 / mse2 = 0: no rescale, GEN-1 is N(0, I)
    assert loses.ratio == pytest.approx(0.0) and loses.adjust2 is None
    assert float(loses.latents("gen1").std()) == pytest.approx(1.0, rel=0.03)

    class Spread(PixelVAE):  # codes +-1 with sigma 0.25: zsum 1.25
        def encode(self, x):
            mu = torch.tensor([1.0, -1.0]).repeat(len(x) // 2 + 1)[: len(x), None]
            return mu, torch.full_like(mu, 2 * math.log(0.25))

    p = Asperti(context(vae=Spread(), stage2=Stage2(scale=0.5)))  # ratio 3: rescaled by sqrt(1.25)
    assert p.ratio == pytest.approx(3.0) and p.adjust2 == pytest.approx(math.sqrt(1.25))
    assert float(p.latents("gen1").std()) == pytest.approx(math.sqrt(1.25), rel=0.03)
    z = p.latents("gen2")  # dec2(u) = u / 2, rescaled per batch to mean std sqrt(1.25)
    assert float(z[:100].std(unbiased=False)) == pytest.approx(math.sqrt(1.25), rel=1e-5)
    kept = Asperti(context(vae=Spread(), stage2=Stage2(scale=1.0, shift=0.3)))  # var_loss2 0: no rescale
    assert kept.adjust2 is None and float(kept.latents("gen2").std()) == pytest.approx(1.0, rel=0.03)


def test_asperti_scores_gen_images_as_decoded_without_min_max():
    p = Asperti(context())
    from pipeline.evaluation import sampling

    assert torch.equal(p.images("gen1"), sampling.decode(p.ctx.vae, p.latents("gen1"), 64))


@pytest.mark.parametrize(
    ("n_test", "real", "rec", "kept"),
    [
        (19_962, 10_000, 10_000, {"dai_wipf": 10_000, "asperti": 9_984}),  # CelebA's test split
        (10_000, 10_000, 10_000, {"dai_wipf": 10_000, "asperti": 9_984}),  # MNIST, CIFAR-10
        (360, 360, 360, {"dai_wipf": 350, "asperti": 320}),  # fewer: all of them, then whole batches
    ],
)
def test_sample_counts_are_the_references(n_test, real, rec, kept):
    # DM:88-94 and FS:214-218 10k vs 10k, batches of 50 (FS:80-82); CG:619-621, 650-651 10k,
    # batches of 64 (FID:51-53). clean: every test image, num_samples per sampler.
    for name in ("dai_wipf", "asperti"):
        p = protocols.build(name, context(n_test=n_test))
        assert (len(p.real_rows), len(p.rec_rows), p.count) == (real, rec, 10_000)
        assert len(set(p.real_rows.tolist())) == real  # no test image twice
        assert p.kept(len(p.real_rows)) == kept[name] if n_test == 360 else p.kept(p.count) == kept[name]
    c = protocols.build("clean", context(n_test=n_test))
    assert (len(c.real_rows), c.count, c.kept(123)) == (n_test, n_test, 123)
    assert protocols.build("clean", context(n_test=n_test, num_samples=50)).count == 50


def test_clean_scores_the_samplers_as_set_with_their_seeds():
    from pipeline.evaluation import sampling

    p = protocols.build("clean", context(samplers=["gen2", "gen1"], rescale=True, num_samples=30))
    assert p.sets == ["rec", "gen2", "gen1", "gen2_rescaled"]
    z = sampling.latents("gen1", 30, 2, latent_dim=1)  # the second sampler: seed + 2
    assert torch.equal(p.images("gen1"), sampling.decode(p.ctx.vae, z, 64))


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_is_lossy_and_better_at_higher_quality(channels):
    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(8, channels, 4, 4), size=32, mode="bilinear")
    images = (smooth * 255).round().to(torch.uint8)
    errors = {}
    for q in (30, 75, 95):
        out = jpeg_roundtrip(images, q)
        assert out.shape == images.shape and out.dtype == torch.uint8
        errors[q] = float((out.float() - images.float()).abs().mean())
    assert errors[30] > errors[75] > errors[95] and errors[75] > 0
