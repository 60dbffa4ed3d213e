"""``dai_wipf``: REC, GEN-1 and GEN-2 as Dai & Wipf's code scores them (github daib13/TwoStageVAE
at 8718623: ``demo.py`` DM, ``fid_score.py`` FS, ``network/two_stage_vae_model.py`` TS).

- Real set: a seeded random 10,000 of the test images (all of them where there are fewer),
  ``np.random.shuffle(real_images); real_images[0:10000]`` (FS:214-216).
- REC: another random 10,000 of the test images (DM:87-89, a shuffle of its own), each
  decoded from a posterior draw z = mu + sigma * eps (``self.z``: TS:176 in the InfoGAN net
  of its MNIST runs, TS:258 in the ResNet; ``reconstruct`` runs ``self.x_hat`` on it, TS:130).
- GEN-1: z ~ N(0, I) (TS:146); GEN-2: u ~ N(0, I), z = dec2(u) + gamma_z * eps (TS:141-144),
  the ``gen2_noise`` sampler of the clean protocol; 10,000 of each (DM:93-94, FS:188).
- Every image of REC, GEN-1 and GEN-2 min-max normalised on its own,
  x <- (x - min x) / (max x - min x) (FS:184-186; ``norm=True`` from DM:105-107), on the
  decoder's float values.
- FS's feature code runs batches of 50 and drops a last partial one (FS:60, 80-82): the
  first n // 50 * 50 images of each set are scored (all 10,000 of 10,000).

The one step left different: the normalised floats reach the feature network as uint8
(torch-fidelity's input), rounded to 1/255, where FS passes floats times 255 (FS:187).
Metric names carry the protocol: ``fid_inception-dai_wipf_gen2``.
"""

import torch

from pipeline.evaluation import sampling
from pipeline.evaluation.protocols.base import Protocol, subset
from pipeline.images import to_uint8

COUNT = 10_000  # DM:93-94 generate(sess, 10000, ...); FS:188 and FS:216 keep [0:10000]
FEATURE_BATCH = 50  # FS:60 get_activations_tf(images, sess, batch_size=50)


def normalise_each(images: torch.Tensor) -> torch.Tensor:
    """FS:184-186: every image min-max normalised to [0, 1] on its own (float images in, float
    out). A constant image (0 / 0 in FS) is left as it is here."""
    x = images.float()  # float32, as FS's arrays
    lo = x.flatten(1).min(1).values.view(-1, *[1] * (x.dim() - 1))
    hi = x.flatten(1).max(1).values.view(-1, *[1] * (x.dim() - 1))
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, 1), x)


class DaiWipf(Protocol):
    name = "dai_wipf"
    feature_batch = FEATURE_BATCH  # FS:60, 80-82

    def __init__(self, ctx):
        super().__init__(ctx)
        self.sets = ["rec", "gen1", "gen2"]
        self.count = COUNT
        self.real_rows = subset(len(ctx.test), COUNT, ctx.seed)  # FS:214-216
        self.rec_rows = subset(len(ctx.test), COUNT, ctx.seed + 1)  # DM:87-89

    def latents(self, name: str) -> torch.Tensor:
        """GEN-1's or GEN-2's latent codes (GEN-2 with its gamma_z noise, TS:141-144)."""
        c = self.ctx
        sampler = {"gen1": "gen1", "gen2": "gen2_noise"}[name]
        seed = c.seed + {"gen1": 1, "gen2": 2}[name]
        kw = {"stage2": c.stage2, "gamma_z": c.gamma_z, "batch_size": c.batch_size}
        return sampling.latents(sampler, self.count, seed, latent_dim=c.vae.latent_dim, **kw)

    def images(self, name):
        c = self.ctx
        if name == "rec":
            mu, logvar = sampling.encode(c.vae, c.test[self.rec_rows], c.batch_size)
            z = sampling.posterior_sample(mu, logvar, c.seed)  # TS:176, TS:258
        else:
            z = self.latents(name)
        x = sampling.decode(c.vae, z, c.batch_size, quantise=False)
        return to_uint8(normalise_each(x))  # FS:184-186, for REC, GEN-1 and GEN-2 alike (DM:105-107)
