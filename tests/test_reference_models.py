"""The reference networks, counted against layer lists written after the reference code.

References: github daib13/TwoStageVAE at commit 8718623 (network/util.py and
network/two_stage_vae_model.py); github asperti/BalancingVAE computed_gamma.py repeats the
same Resnet class (lines 454-509). The counts below are computed from the reference's layers,
not from our modules; trainable parameters only (BN moving averages and spectral-norm
vectors are not trained in either code). The reference's learned log gamma_x (one scalar in
its decoder, two_stage_vae_model.py lines 190 and 287) is the ``learned_gamma`` strategy's
parameter here, so it is not counted in the network.
"""

import pytest
import torch
import yaml

from conftest import ROOT
from pipeline.balance import STRATEGIES, build_balance
from pipeline.hardware.device import Speed
from pipeline.models import InfoGAN, ResNetRef, build_stage1
from pipeline.training.loop import Settings, fit


def conv(c_in, c_out, k):  # tf.layers.conv2d / conv2d_transpose, util.py conv2d / deconv2d: kernel + bias
    return k * k * c_in * c_out + c_out


def dense(n_in, n_out):  # tf.layers.dense, util.py linear: matrix + bias
    return n_in * n_out + n_out


def bn(c):  # util.py batch_norm (lines 95-117), affine: beta and gamma
    return 2 * c


def res_block(c, depth=2, k=3):  # util.py res_block (lines 142-149): depth x (BN, ReLU, conv), conv shortcut
    return depth * (bn(c) + conv(c, c, k)) + conv(c, c, k)


def res_fc_block(n_in, n_out, depth=2):  # util.py res_fc_block (lines 152-158): depth dense layers, dense shortcut
    return dense(n_in, n_out) + (depth - 1) * dense(n_out, n_out) + dense(n_in, n_out)


def reference_resnet(channels, side, base, num_scale, fc, latent, blocks=1):
    """(encoder, decoder) trainable parameters of two_stage_vae_model.py class Resnet."""
    enc, dim = conv(channels, base, 3), base  # line 244: conv0
    for i in range(num_scale):  # lines 245-250: scale blocks, downsample between scales
        enc += blocks * res_block(dim)
        if i != num_scale - 1:
            enc += conv(dim, 2 * dim, 3)
            dim *= 2
    enc += res_fc_block(dim, fc) + 2 * dense(fc, latent)  # lines 252-256: mean pool, fc block, mu and logsd
    dims, scale, width = [], 2, base  # lines 261-270: decoder widths from the image side
    while scale <= side:
        dims.append(width)
        scale, width = scale * 2, min(width * 2, 1024)
    dims = dims[::-1]
    dec = dense(latent, 2 * 2 * dims[0])  # line 277: fc0 to a 2x2 map
    for i in range(len(dims) - 1):  # lines 280-282: upsample, scale block
        dec += conv(dims[i], dims[i + 1], 3) + blocks * res_block(dims[i + 1])
    dec += conv(dims[-1], channels, 3)  # line 284: final conv
    return enc, dec


def reference_infogan(channels, side, latent):
    """(encoder, decoder) trainable parameters of two_stage_vae_model.py class Infogan (lines 154-191)."""
    flat = 128 * (side // 4) ** 2
    enc = conv(channels, 64, 4) + conv(64, 128, 4) + bn(128) + dense(flat, 1024) + bn(1024) + dense(1024, 2 * latent)
    dec = (
        dense(latent, 1024)
        + bn(1024)
        + dense(1024, flat)
        + bn(flat)
        + conv(128, 64, 4)
        + bn(64)
        + conv(64, channels, 4)
    )
    return enc, dec


def counts(model):
    return sum(p.numel() for p in model.encoder_parameters()), sum(p.numel() for p in model.decoder_parameters())


PRESET_DATA = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32), "celeba": (3, 64)}


@pytest.mark.parametrize("name", sorted(PRESET_DATA))
def test_reference_preset_builds_the_reference_network(name):
    preset = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    train = params["train"] | {k: v for k, v in preset["train"].items() if k != "model"}
    train["model"] = params["train"]["model"] | preset["train"]["model"]
    channels, side = PRESET_DATA[name]
    side = preset["prepare"]["image_size"] or side
    model = build_stage1(train, channels, side)
    m = train["model"]
    if m["arch"] == "infogan":
        expected = reference_infogan(channels, side, train["latent_dim"])
        assert train["batch_size"] == preset["stage2"]["batch_size"] == 64  # demo.py line 148: --batch-size 64
    else:
        assert m["arch"] == "resnet_ref"
        expected = reference_resnet(
            channels,
            side,
            m["base_channels"],
            m["num_scale"],
            m["fc_width"],
            train["latent_dim"],
            m["blocks_per_scale"],
        )
        assert train["batch_size"] == 100  # computed_gamma.py line 758
    assert counts(model) == expected
    assert sum(p.numel() for p in model.parameters()) == sum(expected)


def test_reference_counts_of_the_preset_set_ups():
    # encoder / decoder parameters of TwoStageVAE's networks (two_stage_vae_model.py, classes Resnet and Infogan)
    # at the presets' sizes: about 1.14 M / 4.05 M (CIFAR-10), 3.3 M / 16.0 M (CelebA 64), 6.7 M / 6.6 M (MNIST)
    assert reference_resnet(3, 32, 32, 3, 512, 64) == (1_135_840, 4_054_627)
    assert reference_resnet(3, 64, 32, 4, 512, 64) == (3_333_344, 15_988_323)
    assert reference_infogan(1, 28, 64) == (6_689_344, 6_642_241)


def test_resnet_ref_shapes_and_widths():
    model = ResNetRef(3, 32, 16, base_channels=8, num_scale=3, fc_width=32)
    x = torch.rand(2, 3, 32, 32)
    x_hat, mu, logvar = model(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (2, 16)
    widths = [m.out_channels for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [64, 32, 16, 8]  # from the 2x2 map at 128 channels (8 * 2^4), halving to base
    with pytest.raises(ValueError, match="not a power of two"):
        ResNetRef(1, 28, 8)


def test_resnet_ref_stride_two_layers_pad_as_tf_same():
    """TF's padding='same' (util.py lines 132 and 139): on an even side n a stride-2 3x3 layer
    pads 0 before and 1 after (total (n/2 - 1) * 2 + 3 - n = 1). By hand, with a kernel whose
    only 1 is at tap (0, 0): a conv gives out[i] = in[2i] (an impulse at (4, 6) lands at (2, 3)),
    and its transpose in[i] -> out[2i] (the impulse at (2, 3) returns to (4, 6)); PyTorch's
    padding=1 would read in[2i - 1] (nothing lands) and write to 2i - 1 ((3, 5))."""
    from pipeline.models.resnet_ref import SameDown, SameUp

    down, up = SameDown(1, 1), SameUp(1, 1)
    for layer in (down, up):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
        with torch.no_grad():
            layer.weight[0, 0, 0, 0] = 1.0
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 6] = 1.0
    y = down(x)
    assert y.shape == (1, 1, 4, 4) and y[0, 0].nonzero().tolist() == [[2, 3]]
    z = up(y)
    assert z.shape == (1, 1, 8, 8) and z[0, 0].nonzero().tolist() == [[4, 6]]
    odd = torch.zeros(1, 1, 8, 8)
    odd[0, 0, 7, 7] = 1.0  # the last row and column: read by the tap (2, 2) of out[3] (2 * 3 + 2 = 8 is padding)
    with torch.no_grad():
        down.weight.zero_()
        down.weight[0, 0, 1, 1] = 1.0  # the centre tap: out[i] = in[2i + 1]
    assert down(odd)[0, 0].nonzero().tolist() == [[3, 3]]
    model = ResNetRef(3, 32, 16, base_channels=8, num_scale=3, fc_width=32)
    assert sum(isinstance(m, SameDown) for m in model.modules()) == 2  # between the 3 scales
    assert sum(isinstance(m, SameUp) for m in model.modules()) == 4  # 2 -> 4 -> 8 -> 16 -> 32


def test_infogan_shapes_and_spectral_norm():
    torch.manual_seed(0)
    model = InfoGAN(1, 28, 8).train()
    x_hat, mu, logvar = model(torch.rand(4, 1, 28, 28))
    assert x_hat.shape == (4, 1, 28, 28) and mu.shape == logvar.shape == (4, 8)
    assert (logvar.exp().sqrt() > 1e-6).all()  # sigma = 1e-6 + softplus(.)
    for _ in range(30):  # power iterations, one per training forward
        model(torch.rand(4, 1, 28, 28))
    sn = model.encoder[0]
    w = sn.layer.weight.detach().flatten(1)
    w_sn = w / (sn.u @ w @ torch.nn.functional.normalize(w.t() @ sn.u, dim=0))
    assert float(torch.linalg.matrix_norm(w_sn, ord=2)) == pytest.approx(1.0, rel=1e-3)  # largest singular value 1
    with pytest.raises(ValueError, match="divisible by 4"):
        InfoGAN(1, 30, 8)


@pytest.mark.parametrize("arch", ["resnet_ref", "infogan"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_reference_archs_train_with_every_strategy_in_bf16_and_resume_exactly(arch, strategy):
    cfg = {"latent_dim": 4, "model": {"arch": arch, "base_channels": 4, "num_scale": 2, "fc_width": 8}}
    data = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)

    def train(epochs, resume=None):
        torch.manual_seed(0)
        model, bal = build_stage1(cfg, 1, 8), build_balance({"strategy": strategy})
        saved = []
        hist = fit(
            model,
            bal,
            lambda e: data,
            Settings(epochs=epochs, batch_size=16, lr=1e-3, desc="t", speed=Speed(bf16=True, channels_last=True)),
            diag_x=data[:16],
            resume=resume,
            on_checkpoint=saved.append,
        )
        return hist, saved, model

    full, _, model = train(3)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in full)
    _, saved, _ = train(2)
    first = saved[0]  # after epoch 1
    assert first["epoch"] == 1
    resumed, _, model2 = train(3, resume=first)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
