import torch

from attacks.functional import last_layer_gradient
from attacks.labels import batch_labels, idlg_label, multiset_accuracy, recover_labels
from attacks.simulate import fedsgd_view
from flaudit.models import ModelSpec, build_model

from attack_cases import make_meta, smooth_images


def test_idlg_label_on_random_single_images() -> None:
    correct = 0
    cases = 20
    g = torch.Generator().manual_seed(1)
    for case in range(cases):
        model = build_model(ModelSpec("lenet", 10, 3, 16), seed=case)
        label = torch.randint(0, 10, (1,), generator=g)
        view = fedsgd_view(model, smooth_images(1, side=16, seed=case), label, make_meta(batch=1, side=16))
        weight, _ = last_layer_gradient(view)
        correct += int(idlg_label(weight) == label)
    assert correct == cases


def test_batch_labels_distinct() -> None:
    g = torch.Generator().manual_seed(2)
    accuracies = []
    for case in range(20):
        model = build_model(ModelSpec("lenet", 10, 3, 16), seed=100 + case)
        labels = torch.randperm(10, generator=g)[:4]
        view = fedsgd_view(model, smooth_images(4, side=16, seed=case), labels, make_meta(batch=4, side=16))
        recovered = recover_labels(view, 4)
        assert recovered.shape == (4,) and bool((recovered[:-1] <= recovered[1:]).all())
        accuracies.append(multiset_accuracy(recovered, labels))
    assert sum(accuracies) / len(accuracies) >= 0.95


def test_count_rule_with_mean_probs_handles_peaked_softmax() -> None:
    # A present class (3) whose mean probability exceeds 1/B has a positive bias gradient:
    # the plain bias rule misses it, the count rule with the mean softmax does not.
    probs = torch.tensor([0.02] * 10)
    probs[3] = 0.82
    labels = torch.tensor([1, 3, 5, 8])
    bias = probs - torch.bincount(labels, minlength=10).float() / 4
    assert bias[3] > 0
    assert batch_labels(num_images=4, bias_grad=bias, mean_probs=probs).tolist() == [1, 3, 5, 8]
    assert batch_labels(num_images=4, bias_grad=bias).tolist() != [1, 3, 5, 8]


def test_batch_labels_repeated_from_bias() -> None:
    # Hand-built bias gradient: mean over 4 images of (p - onehot) with p uniform = 0.1.
    labels = torch.tensor([2, 2, 2, 7])
    bias = torch.full((10,), 0.1) - torch.bincount(labels, minlength=10).float() / 4
    assert batch_labels(num_images=4, bias_grad=bias).tolist() == [2, 2, 2, 7]
    # Without a bias, the weight rule still finds the classes present.
    weight = bias[:, None] * torch.ones(10, 5)
    assert set(batch_labels(num_images=4, weight_grad=weight).tolist()) == {2, 7}


def test_multiset_accuracy() -> None:
    assert multiset_accuracy(torch.tensor([1, 1, 2]), torch.tensor([1, 2, 2])) == 2 / 3
