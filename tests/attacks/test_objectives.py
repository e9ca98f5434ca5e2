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
