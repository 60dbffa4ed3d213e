"""``clean`` (the default): every set as the models produce it, against every test image.

REC decodes the posterior mean (one deterministic image per test image); each sampler of
``evaluate.samplers`` gives ``evaluate.num_samples`` images (null: as many as test images),
the i-th sampler from seed ``evaluate.seed + i``; with ``evaluate.rescale``, also
``gen2_rescaled`` (this project's per-dimension variance-law rescale of GEN-2's latents,
:func:`pipeline.evaluation.sampling.rescale_latents`). No preprocessing: the uint8 images
go to the feature network as they are. Metric names carry the feature space alone:
``fid_domain_gen2``.
"""

from pipeline.evaluation import sampling
from pipeline.evaluation.protocols.base import Protocol


class Clean(Protocol):
    name = "clean"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.sets = ["rec", *ctx.samplers] + (["gen2_rescaled"] if ctx.rescale else [])
        self.count = ctx.num_samples or len(ctx.test)

    def _latents(self, sampler: str, seed: int):
        c = self.ctx
        kw = {"stage2": c.stage2, "gamma_z": c.gamma_z, "gmm": c.gmm, "batch_size": c.batch_size}
        return sampling.latents(sampler, self.count, seed, latent_dim=c.vae.latent_dim, **kw)

    def images(self, name):
        c = self.ctx
        if name == "rec":
            return sampling.reconstruct(c.vae, c.test, c.batch_size)
        if name == "gen2_rescaled":
            z = sampling.rescale_latents(self._gen2_latents(), c.expected_std)
        else:
            z = self._latents(name, c.seed + c.samplers.index(name) + 1)
        return sampling.decode(c.vae, z, c.batch_size)

    def _gen2_latents(self):
        """The gen2 sampler's latents (its seed), which gen2_rescaled rescales."""
        c = self.ctx
        return self._latents("gen2", c.seed + (c.samplers.index("gen2") + 1 if "gen2" in c.samplers else 2))

    def rescale_constants(self):
        """gen2_rescaled's mean and per-dimension factor (:func:`sampling.rescale_constants`)."""
        return sampling.rescale_constants(self._gen2_latents(), self.ctx.expected_std)
