"""The two VAEs and the shared training loop."""

import pytest
import torch

from pipeline import PipelineError
from pipeline.balance import build_balance
from pipeline.balance.running_gamma import RunningGamma
from pipeline.evaluation.sampling import posterior_draws
from pipeline.hardware.device import Speed
from pipeline.models import ConvVAE, DenseVAE, ResNetVAE, build_stage1
from pipeline.training import loop
from pipeline.training.loop import Settings, fit

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


@pytest.mark.parametrize("channels, size, num_down", [(1, 8, 2), (1, 28, 2), (3, 32, 3)])
def test_conv_vae_shapes(channels, size, num_down):
    model = ConvVAE(channels, size, latent_dim=6, base_channels=8, num_down=num_down)
    x = torch.rand(3, channels, size, size)
    x_hat, mu, logvar = model(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (3, 6)
    assert x_hat.min() >= 0 and x_hat.max() <= 1  # sigmoid decoder


def test_conv_vae_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible"):
        ConvVAE(1, 28, 4, num_down=3)


@pytest.mark.parametrize(
    "channels, size, num_scale, bottom, start, params",
    [
        (1, 8, 2, 4, 2, 1516769),
        (1, 28, 3, 7, 7, 5175617),
        (3, 32, 3, 8, 2, 2291971),
        (3, 64, 4, 8, 2, 4916867),
        (3, 128, 5, 8, 2, 14754179),
    ],
)
def test_resnet_vae_at_several_sizes(channels, size, num_scale, bottom, start, params):
    model = ResNetVAE(channels, size, latent_dim=64, base_channels=32, num_scale=num_scale, fc_width=512)
    x = torch.rand(2, channels, size, size)
    x_hat, mu, logvar = model(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (2, 64)
    assert x_hat.min() >= 0 and x_hat.max() <= 1
    # num_scale - 1 stride-2 convs, channels doubling from base: (2, 32 * 2**(num_scale-1), bottom, bottom)
    assert model.encoder[:-2](x).shape == (2, 32 * 2 ** (num_scale - 1), bottom, bottom)
    assert model.start == start  # the decoder's first map: 2x2 for power-of-two sides, 7x7 for 28
    assert sum(p.numel() for p in model.parameters()) == params


def test_resnet_vae_rejects_indivisible_size_and_builder_picks_arch():
    with pytest.raises(ValueError, match="not divisible"):
        ResNetVAE(1, 28, 8, num_scale=4)
    cfg = {"latent_dim": 4, "model": {"arch": "resnet", "base_channels": 8, "num_scale": 2, "num_down": 9}}
    assert isinstance(build_stage1(cfg, 1, 8), ResNetVAE)  # num_down belongs to conv: ignored
    cfg["model"]["arch"] = "conv"
    cfg["model"]["num_down"] = 1
    assert isinstance(build_stage1(cfg, 1, 8), ConvVAE)
    with pytest.raises(ValueError, match="unknown arch 'vit'"):
        build_stage1({"latent_dim": 4, "model": {"arch": "vit"}}, 1, 8)


def test_fit_bf16_channels_last_and_lr_schedule():
    torch.manual_seed(0)
    data = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    model = ResNetVAE(1, 8, 4, base_channels=8, num_scale=2, fc_width=16)
    lrs = []
    history = fit(
        model,
        RunningGamma(),
        lambda e: data,
        Settings(
            epochs=3, batch_size=16, lr=1e-3, desc="t", lr_halve_every=1, speed=Speed(bf16=True, channels_last=True)
        ),
        on_epoch=lambda row, timing, lat: lrs.append(timing["lr"]),
    )
    assert lrs == pytest.approx([5e-4, 2.5e-4, 1.25e-4])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert model.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert history[-1]["mse"] < history[0]["mse"]


def test_speed_resolve():
    cpu = torch.device("cpu")
    assert Speed.resolve("fp32", False, cpu, images=True) == Speed(False, True, False)
    assert Speed.resolve("bf16", True, cpu, images=False) == Speed(True, False, True)
    with pytest.raises(ValueError, match="precision must be one of"):
        Speed.resolve("fp16", False, cpu, images=True)


def test_dense_vae_shapes():
    model = DenseVAE(dim=5, width=16, depth=3)
    z_hat, mu, logvar = model(torch.randn(7, 5))
    assert z_hat.shape == mu.shape == logvar.shape == (7, 5)


def test_fit_running_gamma_history():
    torch.manual_seed(0)
    data = (torch.rand(64, 1, 8, 8) * 255).to(torch.uint8)
    model, bal = ConvVAE(1, 8, 4, base_channels=4), RunningGamma()
    seen = []
    history = fit(
        model,
        bal,
        lambda e: data,
        Settings(epochs=3, batch_size=16, lr=1e-3, desc="t"),
        diag_x=data[:32],
        on_epoch=lambda row, timing, latent: seen.append((row, timing, latent)),
    )
    assert [r["epoch"] for r in history] == [1, 2, 3] and len(seen) == 3
    assert {
        "loss",
        "rec",
        "kl",
        "mse",
        "gamma",
        "beta_eff",
        "kl_common",
        "loss_common",
        "grad_rec_encoder",
        "grad_kl_encoder",
        "kl_grad_share",
        "active_units",
        "variance_law_mean",
    } <= set(history[0])
    for r in history:
        assert r["loss_common"] == pytest.approx(r["mse"] + r["kl_common"])
    assert seen[0][2]["kl"].shape == (4,)
    gammas = [r["gamma"] for r in history]
    assert all(a >= b for a, b in zip(gammas, gammas[1:])) and gammas[-1] < 1  # min-clamped: never increases
    assert bal.gamma <= gammas[-1]
    assert seen[0][1]["images_per_s"] > 0


def test_fit_stops_on_nan_with_epoch_and_step():
    data = torch.full((32, 1, 8, 8), float("nan"))
    with pytest.raises(PipelineError, match=r"epoch 1, step 1"):
        fit(
            ConvVAE(1, 8, 4, base_channels=4),
            RunningGamma(),
            lambda e: data,
            Settings(epochs=2, batch_size=16, lr=1e-3, desc="t"),
        )


def test_balance_step_follows_each_optimiser_step_with_that_steps_batch_mse():
    """fit: forward, loss, optimiser step, then Balance.step(terms) with the batch's own MSE."""
    torch.manual_seed(0)
    model = ConvVAE(1, 8, 4, base_channels=4)
    log = []

    class Spy(RunningGamma):
        def forward(self, x, x_hat, mu, logvar):
            log.append({"weight": model.mu.weight.detach().clone(), "mse": float((x_hat.detach() - x).pow(2).mean())})
            return super().forward(x, x_hat, mu, logvar)

        def step(self, terms):
            log[-1]["stepped"] = not torch.equal(model.mu.weight, log[-1]["weight"])  # the optimiser ran first
            log[-1]["terms_mse"] = float(terms.mse)
            super().step(terms)

    data = torch.randint(0, 256, (48, 1, 8, 8), dtype=torch.uint8)
    fit(model, Spy(momentum=0.5), lambda e: data, Settings(epochs=2, batch_size=16, lr=1e-2, desc="t"))
    assert len(log) == 6 and all(entry["stepped"] for entry in log)
    assert all(entry["terms_mse"] == pytest.approx(entry["mse"], rel=1e-6) for entry in log)


def test_stage2_codes_are_fresh_posterior_draws_every_epoch():
    torch.manual_seed(0)
    mu, sigma = torch.tensor([[1.0, -2.0], [0.0, 3.0]]), torch.tensor([[0.5, 0.1], [2.0, 0.01]])
    codes = posterior_draws(mu, sigma)
    epochs = torch.stack([codes(e) for e in range(1, 4001)])
    assert not torch.equal(epochs[0], epochs[1])  # a new eps each epoch
    assert epochs.mean(0).flatten().tolist() == pytest.approx(mu.flatten().tolist(), abs=0.1)  # centred on mu ...
    assert epochs.std(0).flatten().tolist() == pytest.approx(
        sigma.flatten().tolist(), rel=0.05
    )  # ... with spread sigma
    seen = []
    fit(
        DenseVAE(2, width=8, depth=1),
        RunningGamma(),
        lambda e: seen.append(e) or codes(e),
        Settings(epochs=3, batch_size=2, lr=1e-3, desc="t"),
    )
    assert seen == [1, 2, 3]  # fit asks for the epoch's data once per epoch


@pytest.mark.parametrize("every, saved", [(1, [1, 2, 3, 4]), (3, [3, 4]), ("3600s", [4]), ("0.000001s", [1, 2, 3, 4])])
def test_checkpoints_are_paced_by_epochs_or_seconds_and_the_last_epoch_is_always_saved(every, saved):
    data = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    got = []
    fit(
        ConvVAE(1, 8, 4, base_channels=4),
        RunningGamma(),
        lambda e: data,
        Settings(epochs=4, batch_size=16, lr=1e-3, desc="t", checkpoint_every=every),
        on_checkpoint=lambda state: got.append(state["epoch"]),
    )
    assert got == saved


@pytest.mark.parametrize("every, measured", [(1, [1, 2, 3, 4, 5]), (2, [1, 2, 4, 5]), (10, [1, 5]), ("3600s", [1, 5])])
def test_diagnostics_are_paced_and_never_change_the_training(every, measured):
    data = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)

    def train(diag_every):
        torch.manual_seed(0)
        got = []
        history = fit(
            ConvVAE(1, 8, 4, base_channels=4),
            RunningGamma(),
            lambda e: data,
            Settings(epochs=5, batch_size=16, lr=1e-3, desc="t", diag_every=diag_every),
            diag_x=data,
            on_epoch=lambda row, timing, latent: got.append(latent is not None),
        )
        return history, [e for e, ran in enumerate(got, 1) if ran]

    history, ran = train(every)
    assert ran == measured  # epoch 1, every N-th, the last
    assert [e for e, row in enumerate(history, 1) if "active_units" in row] == measured
    every_epoch, _ = train(1)
    for paced, full in zip(history, every_epoch):  # the same training numbers whatever the pace
        assert all(paced[k] == full[k] for k in paced)


def test_adam_is_torchs_with_lr_factor_groups_and_halving_is_steplr():
    """The optimiser is torch.optim.Adam: the weights at lr, a strategy's own parameters (learned_gamma's
    log gamma) in a second group at lr x lr_factor; ``lr_halve_every`` halves both as
    StepLR(step_size, gamma=0.5) stepped once an epoch would."""
    model = DenseVAE(4, width=8, depth=1)
    balance = build_balance({"strategy": "learned_gamma", "lr_factor": 10.0})
    opt = loop.adam(model, balance, 1e-3)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, pytest.approx(1e-2)]
    assert [len(g["params"]) for g in opt.param_groups] == [len(list(model.parameters())), 1]
    assert len(loop.adam(model, build_balance({"strategy": "running_gamma"}), 1e-3).param_groups) == 1
    lrs = []
    settings = loop.Settings(epochs=5, batch_size=16, lr=1e-3, lr_halve_every=2)
    loop.fit(model, balance, lambda e: torch.randn(32, 4), settings, on_epoch=lambda r, t, lat: lrs.append(t["lr"]))
    reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched, expected = torch.optim.lr_scheduler.StepLR(reference, 2, gamma=0.5), []
    for _ in range(5):
        sched.step()
        expected.append(reference.param_groups[0]["lr"])
    assert lrs == expected


def test_kernels_fingerprint_is_stable_sensitive_to_one_bit_and_leaves_the_model_and_rng_alone():
    from pipeline.hardware.device import kernels_fingerprint

    torch.manual_seed(0)
    model = ConvVAE(1, 8, 4, base_channels=8, num_down=2)
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    fp32 = kernels_fingerprint(model, x, Speed(channels_last=True))
    assert len(fp32) == 16 and fp32 == kernels_fingerprint(model, x, Speed(channels_last=True))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()) and torch.equal(
        torch.get_rng_state(), rng
    )
    assert kernels_fingerprint(model, x, Speed(bf16=True, channels_last=True)) != fp32  # another arithmetic
    with torch.no_grad():
        w = next(model.parameters())
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(1.0))  # one weight, one ulp
    assert kernels_fingerprint(model, x, Speed(channels_last=True)) != fp32
