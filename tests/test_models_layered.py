"""LayeredNet's contract on the Caffe nets, and ifmsan.models.load's argument checking."""

from __future__ import annotations

import pytest
import torch

import ifmsan
import ifmsan.models as models


@pytest.fixture(scope="module")
def mini() -> models.LayeredNet:
    """A randomly initialised alexnet_mini (cheap), batch of 2 inputs and its IFMs."""
    return models.load("alexnet_mini", seed=3)


@pytest.fixture(scope="module")
def batch(mini: models.LayeredNet) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Two random inputs, their IFMs and logits."""
    x = torch.randn(2, *mini.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return x, mini.ifms(x), mini(x)


def test_forward_from_every_layer_equals_forward(mini: models.LayeredNet, batch) -> None:
    x, ifms, logits = batch
    assert list(ifms) == list(mini.ifm_layers)
    assert ifms["conv1"] is x
    with torch.no_grad():
        for layer in mini.ifm_layers:
            assert torch.equal(mini.forward_from(layer, ifms[layer]), logits), layer


def test_ifms_from_reproduces_later_ifms(mini: models.LayeredNet, batch) -> None:
    _, ifms, _ = batch
    layers = mini.ifm_layers
    with torch.no_grad():
        for i, layer in enumerate(layers):
            later = mini.ifms_from(layer, ifms[layer])
            assert list(later) == list(layers[i:])
            for name in layers[i:]:
                assert torch.equal(later[name], ifms[name]), (layer, name)


def test_ifms_from_propagates_a_changed_ifm() -> None:
    net = models.load("alexnet_mini", seed=3)
    with torch.no_grad():
        net.conv3.bias.copy_(torch.linspace(-1, 1, 96))
        changed = torch.zeros(2, *net.ifm_shape("conv3"))
        later = net.ifms_from("conv3", changed)
        expected = torch.relu(torch.linspace(-1, 1, 96))[None, :, None, None].expand(2, 96, 13, 13)
        assert torch.equal(later["conv4"], expected)
        assert torch.equal(net.forward_from("conv4", later["conv4"]), net.forward_from("conv3", changed))


def test_sanitized_ifm_batches_run_independently(mini: models.LayeredNet, batch) -> None:
    _, ifms, _ = batch
    one = ifms["norm2"][:1]
    stacked = torch.cat([one, one * 0.5, ifmsan.sample_and_hold(one[0], 4).unsqueeze(0)])
    with torch.no_grad():
        together = mini.forward_from("norm2", stacked)
        for i in range(3):
            torch.testing.assert_close(
                together[i], mini.forward_from("norm2", stacked[i : i + 1])[0], rtol=1e-5, atol=1e-5
            )


def test_inputs_are_not_modified(mini: models.LayeredNet, batch) -> None:
    _, ifms, _ = batch
    for layer in mini.ifm_layers:
        given = ifms[layer].clone()
        with torch.no_grad():
            mini.forward_from(layer, given)
            mini.ifms_from(layer, given)
        assert torch.equal(given, ifms[layer]), layer


def test_layer_and_shape_errors(mini: models.LayeredNet, batch) -> None:
    _, ifms, _ = batch
    with pytest.raises(ValueError, match=r"relu1.*conv1, norm1, pool1"):
        mini.forward_from("relu1", ifms["norm1"])
    with pytest.raises(ValueError, match="fc9"):
        mini.ifms_from("fc9", ifms["fc8"])
    with pytest.raises(ValueError, match="fc9"):
        mini.ifm_shape("fc9")
    with pytest.raises(ValueError, match=r"'conv2'.*\(batch, 24, 27, 27\).*\(24, 27, 27\)"):
        mini.forward_from("conv2", ifms["conv2"][0])
    with pytest.raises(ValueError, match=r"'conv3'"):
        mini.forward_from("conv3", ifms["conv2"])
    with pytest.raises(ValueError, match="PIL"):
        mini.preprocess(torch.zeros(3, 227, 227))  # type: ignore[arg-type]


def test_dropout_only_in_training() -> None:
    net = models.load("alexnet_mini")
    x = torch.randn(4, 3, 227, 227)
    assert not net.training
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        torch.manual_seed(0)
        a = net(x)
        torch.manual_seed(1)
        b = net(x)
    assert not torch.equal(a, b)


def test_gradients_flow_for_training() -> None:
    net = models.load("alexnet_mini").train()
    loss = net(torch.randn(2, 3, 227, 227)).logsumexp(dim=1).sum()
    loss.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())


def test_load_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match=r"'vgg'.*bvlc_alexnet.*alexnet_mini.*torchvision:resnet18"):
        models.load("vgg")
    with pytest.raises(ValueError, match=r"torchvision:nonet.*available"):
        models.load("torchvision:nonet")
    with pytest.raises(ValueError, match=r"mean_file.*alexnet_mini.*allowed: seed"):
        models.load("alexnet_mini", mean_file="x.npy")
    with pytest.raises(ValueError, match="bogus"):
        models.load("bvlc_alexnet", bogus=1)
    for seed in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed"):
            models.load("alexnet_mini", seed=seed)
    with pytest.raises(ValueError, match="weights"):
        models.load("alexnet_mini", weights=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mean_file"):
        models.load("bvlc_alexnet", mean_file=7)


def test_available_and_package_root() -> None:
    names = models.available()
    assert names[:2] == ["bvlc_alexnet", "alexnet_mini"]
    assert {"torchvision:alexnet", "torchvision:vgg11", "torchvision:resnet18"} <= set(names)
    assert not any(name.startswith("torchvision:") and "fasterrcnn" in name for name in names)
    assert ifmsan.models.load is models.load


def test_forward_from_until_returns_the_later_ifm(mini: models.LayeredNet, batch) -> None:
    _, ifms, logits = batch
    layers = mini.ifm_layers
    with torch.no_grad():
        for i, start in enumerate(layers):
            for stop in layers[i:]:
                assert torch.equal(mini.forward_from(start, ifms[start], until=stop), ifms[stop]), (start, stop)
            middle = layers[(i + len(layers)) // 2]
            if layers.index(middle) >= i:
                head = mini.forward_from(middle, mini.forward_from(start, ifms[start], until=middle))
                assert torch.equal(head, logits), (start, middle)
        with pytest.raises(ValueError, match="comes before"):
            mini.forward_from("pool5", ifms["pool5"], until="conv2")
        with pytest.raises(ValueError, match="no IFM layer 'fc9'"):
            mini.forward_from("pool5", ifms["pool5"], until="fc9")
