import torch

from attacks.objectives import (
    batch_norm_statistics,
    bn_statistics_loss,
    cosine_distance,
    l2_distance,
    layer_weights,
    total_variation,
)


def test_total_variation_hand_computed() -> None:
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # forward differences with a zero border: dx = [[1, -1], [2, -4]], dy = [[2, 3], [-2, -4]]
    expected = (1 + 1 + 2 + 4 + 2 + 3 + 2 + 4) / 4
    assert torch.isclose(total_variation(x, eps=0.0), torch.tensor(expected))
    assert float(total_variation(torch.zeros(1, 3, 5, 5), eps=0.0)) == 0.0


def test_distances() -> None:
    a = (torch.tensor([1.0, 2.0]), torch.tensor([[3.0]]))
    b = (torch.tensor([1.0, 0.0]), torch.tensor([[1.0]]))
    assert float(l2_distance(a, b)) == 4.0 + 4.0
    assert float(l2_distance(a, b, weights=(0.0, 1.0))) == 4.0
    assert abs(float(cosine_distance(a, a))) < 1e-6
    scaled = tuple(3.0 * t for t in a)
    assert abs(float(cosine_distance(a, scaled))) < 1e-6  # scale invariant
    neg = tuple(-t for t in a)
    assert abs(float(cosine_distance(a, neg)) - 2.0) < 1e-6
    assert layer_weights(3) == (1.0, 1.0, 1.0)
    assert layer_weights(2, scheme="linear") == (1.0, 0.5)


def test_bn_statistics() -> None:
    features = torch.randn(4, 3, 5, 5)
    mean, var = batch_norm_statistics(features)
    bn = torch.nn.BatchNorm2d(3, momentum=1.0)
    bn.train()
    bn(features)
    assert torch.allclose(mean, bn.running_mean, atol=1e-6)
    n = 4 * 5 * 5
    assert torch.allclose(var * n / (n - 1), bn.running_var, atol=1e-5)  # BN stores the unbiased variance
    assert float(bn_statistics_loss([(mean, var)], [(mean, var)])) == 0.0
    off = bn_statistics_loss([(mean + 1, var)], [(mean, var)], first_multiplier=10.0)
    assert torch.isclose(off, torch.tensor(10.0 * 3**0.5))


def test_flat_distances_match_per_tensor() -> None:
    from attacks.objectives import element_weights, flat_cosine_distance, flat_l2_distance, flatten_gradients

    g = torch.Generator().manual_seed(0)
    a = (torch.randn(3, 4, generator=g), torch.randn(5, generator=g))
    b = (torch.randn(3, 4, generator=g), torch.randn(5, generator=g))
    w = (2.0, 0.5)
    fa, fb, fw = flatten_gradients(a), flatten_gradients(b), element_weights(a, w)
    assert torch.isclose(flat_l2_distance(fa, fb, weights=fw), l2_distance(a, b, weights=w))
    assert torch.isclose(flat_cosine_distance(fa, fb, weights=fw), cosine_distance(a, b, weights=w))
    assert torch.isclose(flat_cosine_distance(fa, fb), cosine_distance(a, b))


def test_im2col_convolutions_equal_the_model_and_share_its_parameters() -> None:
    from torch import nn

    from attacks.functional import Im2ColConv2d, im2col_convolutions

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.Sigmoid(),
        nn.Conv2d(5, 4, (3, 2), padding=(1, 0), bias=False), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),  # grouped: kept as it is
        nn.Flatten(), nn.LazyLinear(7),
    )
    x = torch.randn(2, 3, 9, 9)
    expected = model(x)
    plain = im2col_convolutions(model)
    assert isinstance(plain[0], Im2ColConv2d) and isinstance(plain[2], Im2ColConv2d) and plain[4] is model[4]
    assert [p is q for p, q in zip(plain.parameters(), model.parameters())] == [True] * len(list(model.parameters()))
    assert torch.allclose(plain(x), expected, atol=1e-5)
    # Its gradient (and the gradient of the gradient, what the attacks take) equals the model's.
    def grads(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
        g = torch.autograd.grad(net(images).square().sum(), list(model.parameters()), create_graph=True)
        return torch.autograd.grad(sum(t.square().sum() for t in g), images)[0]
    xi = x.clone().requires_grad_(True)
    assert torch.allclose(grads(plain, xi), grads(model, xi), rtol=1e-4, atol=1e-5)
    # Large inputs keep oneDNN's convolution.
    assert 256 * 3 * 9 * 25 > Im2ColConv2d.max_unfolded
    assert torch.allclose(plain(torch.ones(256, 3, 9, 9))[:1], model(torch.ones(1, 3, 9, 9)), atol=1e-5)
