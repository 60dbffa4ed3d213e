"""The evaluation protocols' preprocessing, against hand computations."""

import pytest
import torch

from pipeline.data import jpeg_roundtrip
from pipeline.evaluation.preprocessing import adjust_reconstructions, apply, normalise_each, space_name

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


def test_dai_wipf_normalises_each_image_to_its_own_min_and_max():
    # fid_score.py lines 183-187: (x - min x) / (max x - min x), per image
    a = torch.tensor([[[[50, 100], [150, 100]]]], dtype=torch.uint8)  # min 50, max 150
    b = torch.full((1, 1, 2, 2), 7, dtype=torch.uint8)  # constant: left as it is
    out = normalise_each(torch.cat([a, b]))
    assert out[0].flatten().tolist() == [0, 128, 255, 128]  # (100 - 50) / 100 * 255 = 127.5 -> 128
    assert out[1].flatten().tolist() == [7, 7, 7, 7]


def test_asperti_rescales_reconstructions_to_the_real_images_spread():
    # computed_gamma.py lines 634-647: per-pixel std across images, averaged over pixels
    real = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # std 0.5 at every pixel
    rec = torch.tensor([100, 155], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # std 27.5 / 255
    out = adjust_reconstructions(rec, real)  # scale 0.5 / (27.5 / 255) around the mean 127.5 / 255: 0 and 1
    assert out[:, 0, 0, 0].tolist() == [0, 255]


def test_paper_protocol_routes_rec_and_samples_and_names_the_space():
    real = torch.randint(0, 256, (20, 3, 4, 4), dtype=torch.uint8)
    fake = torch.randint(40, 200, (20, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(apply("clean", "gen2", fake, real), fake)
    assert torch.equal(apply("paper", "gen2", fake, real), normalise_each(fake))
    assert torch.equal(apply("paper", "rec", fake, real), adjust_reconstructions(fake, real))
    assert (space_name("inception", "clean"), space_name("inception", "paper")) == ("inception", "inception-paper")
    with pytest.raises(ValueError, match="unknown protocol"):
        apply("fancy", "rec", fake, real)


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
