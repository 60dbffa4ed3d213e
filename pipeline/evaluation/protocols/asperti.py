"""``asperti``: REC, GEN-1 and GEN-2 as Asperti & Trentin's code scores them (github
asperti/BalancingVAE at d9f3997: ``computed_gamma.py`` CG, ``fid.py`` FID), with its
``adjust: True`` (CG:779).

- Test set: a seeded random 10,000 of the test images (CG:619-621), the real set and REC's
  inputs alike (CG:624, 655-657).
- REC: each test image decoded from a posterior draw z = mu + sigma * eps (CG:482, CG:411),
  then adjusted (CG:643-647): rescaled around the reconstructions' per-pixel mean by
  mean_pixels(std_images(x)) / mean_pixels(std_images(rec)) (population stds, x the test
  images in [0, 1]), and clipped to [0, 1].
- The latent rescale (CG:627-641), computed on the test codes of the same pass: with
  zmean the posterior means and zsum = Var(zmean) + E[exp(zlogvar)] per dimension (CG:627-629;
  ``zlogvar`` is the encoder's log sigma, CG:411 and 624, so the second term is E[sigma], not
  E[sigma^2]: kept as the reference has it), z_hat the second stage's reconstruction of
  zmean (through a posterior draw of u, CG:635, 355, 363), mse2 = mean (zmean - z_hat)^2 and
  var_loss2 = mean Var(zmean) - mean Var(z_hat) (CG:636-637): only when
  var_loss2 / mse2 > 0.25 (CG:639) is adjust2 = sqrt(mean zsum) (CG:641) applied, to

  * GEN-1: z = adjust2 * eps, eps ~ N(0, I) (CG:437-439);
  * GEN-2: u ~ N(0, I), z = dec2(u) (no gamma_z noise: CG:430 fetches ``z_hat``, the
    decoder's mean, CG:363), then per batch of 100 (CG:758) z <- z * adjust2 / mean_dims
    std_batch(z) (CG:431-435): one scalar, uncentred.
- No min-max and no image adjust on GEN-1 or GEN-2: CG:446 tests ``type(adjust1) ==
  np.float`` but adjust1 is an array (CG:634), so that branch never runs.
- 10,000 of GEN-1 and GEN-2 (CG:650-651); FID's feature code runs batches of 64 and drops a
  last partial one (FID:25, 51-53): the first n // 64 * 64 of each set are scored (9,984 of
  10,000).

- Inception's input: FID:54 feeds ``x * 2 - 1`` of images x in [0, 1] to tfgan's
  ``run_inception``, so the network sees (p - 127.5) / 127.5 of pixel values p, where
  torch-fidelity's graph computes (p - 128) / 128; the protocol feeds it Asperti's mapping
  (``inception_input``, :func:`pipeline.evaluation.features.asperti_input`), the real test
  images as well (their features are extracted again, not taken from the reference stage).

The one step left different: the images reach the feature network as uint8 (torch-fidelity's
input), rounded to 1/255, where FID passes floats (FID:54). Metric names carry the protocol:
``fid_inception-asperti_gen2``.
"""

import torch

from pipeline.evaluation import sampling
from pipeline.evaluation.protocols.base import Protocol, subset
from pipeline.images import to_uint8

COUNT = 10_000  # CG:621 x[0:10000]; CG:650-651 generate(sess, 10000, ...)
BATCH = 100  # CG:758 batch_size: generate() draws and rescales GEN-2 per batch of this many
FEATURE_BATCH = 64  # FID:25 BATCH_SIZE
RATIO = 0.25  # CG:639 "we apply an adjustment only if there is an evident variance loss"


def adjust_reconstructions(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """CG:643-647: float reconstructions in [0, 1] rescaled around their per-pixel mean by
    mean_pixels(std_images(real)) / mean_pixels(std_images(rec)), clipped to [0, 1]; ``real``
    the uint8 test images (CG:625: x / 255; CG:634: adjust1 = np.std(x, axis=0))."""
    x = real.float() / 255
    scale = x.std(0, unbiased=False).mean() / rec.std(0, unbiased=False).mean()  # np.std: population
    mean = rec.mean(0)
    return ((rec - mean) * scale + mean).clamp(0, 1)


def latent_scale(mu: torch.Tensor, logvar: torch.Tensor, z_hat: torch.Tensor) -> tuple[float | None, float]:
    """CG:627-641 on test codes ``mu`` (N, L) with log variances ``logvar`` and the second
    stage's reconstruction ``z_hat`` of mu: (adjust2, var_loss2 / mse2), adjust2 None when
    the ratio is not above 0.25."""
    mu, sigma, z_hat = mu.double(), (0.5 * logvar.double()).exp(), z_hat.double()
    zmeanvar = mu.var(0, unbiased=False)  # CG:627 np.var(zmean, axis=0)
    zsum = zmeanvar + sigma.mean(0)  # CG:628-629: np.exp of the log *sigma*: E[sigma]
    mse2 = (mu - z_hat).pow(2).mean()  # CG:636
    var_loss2 = zmeanvar.mean() - z_hat.var(0, unbiased=False).mean()  # CG:637
    ratio = float(var_loss2 / mse2)
    return (float(zsum.mean().sqrt()) if ratio > RATIO else None), ratio  # CG:639-641


def rescale_batches(z: torch.Tensor, adjust2: float) -> torch.Tensor:
    """CG:431-435, for each batch of 100: z * adjust2 / mean over dims of std over the batch (uncentred)."""
    return torch.cat([b * (adjust2 / b.std(0, unbiased=False).mean()) for b in z.split(BATCH)])


class Asperti(Protocol):
    name = "asperti"
    feature_batch = FEATURE_BATCH  # FID:25, 51-53
    inception_input = "asperti"  # FID:54: x * 2 - 1

    def __init__(self, ctx):
        super().__init__(ctx)
        self.sets = ["rec", "gen1", "gen2"]
        self.count = COUNT
        self.rec_rows = self.real_rows = subset(len(ctx.test), COUNT, ctx.seed)  # CG:619-621
        self.mu, self.logvar = sampling.encode(ctx.vae, ctx.test[self.rec_rows], ctx.batch_size)  # CG:624
        g = torch.Generator().manual_seed(ctx.seed + 3)
        with torch.no_grad():  # CG:635 reconstruct2: u = mu_u + sd_u * eps (CG:355), z_hat = dec2(u) (CG:363)
            ctx.stage2.eval()
            mu_u, logvar_u = ctx.stage2.encode(self.mu)
            u = mu_u + (0.5 * logvar_u).exp() * torch.randn(mu_u.shape, generator=g).to(mu_u.device)
            z_hat = ctx.stage2.decode(u)
        self.adjust2, self.ratio = latent_scale(self.mu, self.logvar, z_hat)

    def latents(self, name: str) -> torch.Tensor:
        """GEN-1's or GEN-2's latent codes, rescaled where CG:639 says so."""
        c = self.ctx
        seed = c.seed + {"gen1": 1, "gen2": 2}[name]
        z = sampling.latents(name, self.count, seed, latent_dim=c.vae.latent_dim, stage2=c.stage2, batch_size=BATCH)
        if self.adjust2 is None:
            return z
        return z * self.adjust2 if name == "gen1" else rescale_batches(z, self.adjust2)  # CG:439, CG:431-435

    def images(self, name):
        c = self.ctx
        if name == "rec":
            z = sampling.posterior_sample(self.mu, self.logvar, c.seed)  # CG:482
            rec = sampling.decode(c.vae, z, c.batch_size, quantise=False)
            return to_uint8(adjust_reconstructions(rec, c.test[self.rec_rows]))  # CG:643-647
        return sampling.decode(c.vae, self.latents(name), c.batch_size)  # no min-max, no adjust (CG:446)

    def notes(self):
        applied = f"applied, adjust2 = {self.adjust2:.4g}" if self.adjust2 is not None else "not applied"
        return super().notes() + [
            f"asperti: stage-2 variance loss / mse2 = {self.ratio:.3g} (rescale above {RATIO}): latent rescale {applied}",
        ]

    def metrics(self):
        return {"asperti_var_loss_ratio": self.ratio, "asperti_adjust2": self.adjust2 or 1.0}
