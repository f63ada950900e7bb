import pytest
import torch

from rigl_repro.models import resnet50, small_cnn, wrn22_2
from rigl_repro.sparsity.masks import weight_shapes


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def test_wrn22_2_has_the_report_parameter_count():
    model = wrn22_2(10)
    assert parameter_count(model) == 1_079_642
    conv = sum(torch.Size(s).numel() for n, s in weight_shapes(model).items() if n != "fc.weight")
    assert conv == 1_075_632


def test_resnet50_has_the_report_parameter_count_and_zero_initialised_last_bn():
    model = resnet50(100)
    assert parameter_count(model) == 23_705_252
    assert all(not block.bn3.weight.any() for block in model.blocks)


@pytest.mark.parametrize("build, classes, size, channels", [(wrn22_2, 10, 32, 3), (small_cnn, 10, 8, 1)])
def test_forward_shapes_and_width_multiplier(build, classes, size, channels):
    model = build(classes)
    assert model(torch.randn(2, channels, size, size)).shape == (2, classes)
    assert parameter_count(build(classes, width=0.5)) < 0.3 * parameter_count(model)


def test_wrn_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model, inputs = wrn22_2(10), torch.randn(4, 3, 32, 32)
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.3] * 9  # one per block
    assert not torch.equal(model(inputs), model(inputs))  # a fresh dropout mask on every pass
    block, features = model.blocks[1], torch.randn(4, 32, 32, 32)  # no shortcut convolution: residual = input
    block.dropout = torch.nn.Dropout(1.0)  # dropping everything right before conv2 leaves only the residual
    assert torch.equal(block(features), features)
    model.eval()
    assert torch.equal(model(inputs), model(inputs))
    plain = wrn22_2(10, dropout=0.0)
    assert torch.equal(plain(inputs), plain(inputs))  # batch statistics alone are deterministic
    with pytest.raises(ValueError, match="dropout must be in"):
        wrn22_2(10, dropout=1.0)


def test_wrn_initialisation_is_the_report_codes():
    torch.manual_seed(0)
    model = wrn22_2(10)
    assert not model.fc.bias.any()  # models/wide_resnet.py zeroes the linear bias
    conv = model.blocks[3].conv1  # 32 -> 64 channels; He fan-out: std sqrt(2 / (k * k * out)), not (k * k * in)
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.03)


def test_small_dense_channels_round_down_as_the_report_code():
    # int(c * sqrt(0.1)) of 16, 32, 64, 128 channels (models/wide_resnet.py)
    model = wrn22_2(10, width=0.1**0.5)
    assert model.conv1.out_channels == 5 and model.fc.in_features == 40
    assert [model.blocks[i].conv1.out_channels for i in (0, 3, 6)] == [10, 20, 40]
    model = resnet50(100, width=0.1**0.5)  # int(64 s) = 20 ... int(512 s) = 161, times 4
    assert model.fc.in_features == 161 * 4
