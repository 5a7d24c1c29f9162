"""The original's DARTS-alpha "magnitude" on NB201: joint mode against the single-path forward, Adam's first
step by hand, alpha-only updates, the random single-path sampler."""
import numpy as np
import pytest
import torch

from anglenas.nb201.alpha import AlphaStep, RandomCellSampler, SinglePathView
from anglenas.spaces.nb201 import NB201_SPACE
from anglenas.spaces.relaxed import SoftmaxMixing

pytestmark = pytest.mark.usefixtures("one_thread")


def _model():
    torch.manual_seed(0)
    return NB201_SPACE.relaxed_supernet(NB201_SPACE.initial_operations(), channels=4, depth=1).eval()


def joint_forward(model, x, alphas):
    """Logits with every edge the softmax(``alphas``)-weighted sum of its ops (DARTS' joint mode)."""
    with torch.no_grad():
        model.alphas.copy_(alphas)
    model.set_mixing(SoftmaxMixing())
    return model(x)


def test_one_hot_alphas_run_the_single_path():
    model, x = _model(), torch.randn(3, 3, 8, 8)
    cell = (3, 1, 2, 4, 0, 3)
    alphas = torch.full((6, 5), -float("inf"))
    alphas[torch.arange(6), torch.tensor(cell)] = 0.0  # softmax is exactly one-hot
    joint = joint_forward(model, x, alphas)
    assert torch.allclose(joint, SinglePathView(model)(x, cell), atol=1e-6)


def test_uniform_alphas_average_the_ops():
    model = _model()
    # with equal alphas every edge is the mean of its 5 ops; node i therefore sums (1/5) op(node j)
    cell = model.cells[0]
    h = torch.randn(2, 4, 8, 8)
    ops = [edge.candidates for edge in cell.edges]
    n1 = sum(ops[0][op](h) for op in range(1, 5)) / 5
    n2 = sum(ops[1][op](h) + ops[2][op](n1) for op in range(1, 5)) / 5
    n3 = sum(ops[3][op](h) + ops[4][op](n1) + ops[5][op](n2) for op in range(1, 5)) / 5
    with torch.no_grad():
        model.alphas.zero_()
    model.set_mixing(SoftmaxMixing())
    model.mixing.begin(model)  # the softmax of this forward pass
    assert torch.allclose(cell(h), n3, atol=1e-6)


def test_alpha_step_is_adam_on_alpha_only():
    model = _model().train()
    step = AlphaStep(model)
    weights = set(model.arch_names())
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point() and k not in weights}
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    assert torch.equal(model.alphas.detach(), torch.zeros(6, 5))  # the experiment starts from alpha = 0
    alphas = model.alphas.detach().clone().requires_grad_(True)
    reference = _model().train()  # the same weights, with alpha as an input tensor
    reference.set_mixing(SoftmaxMixing())
    reference.alpha = lambda g, s: alphas[s]
    grad = torch.autograd.grad(torch.nn.functional.cross_entropy(reference(x), y), alphas)[0]
    step(0, x, y, x, y)
    # Adam's first step from alpha = 0 (so no weight decay term): m_hat = g, v_hat = g^2 -> -lr * g / (|g| + eps)
    expected = -3e-4 * grad / (grad.abs() + 1e-8)
    assert torch.allclose(model.alphas.detach(), expected, atol=1e-9)
    params = dict(model.named_parameters())
    assert all(params[k].grad is None for k in params)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith(("running_mean", "running_var")))
    assert set(dict(SinglePathView(model).named_parameters())) == set(params) - weights  # the trainer's view
    scores = step.operator_scores()
    assert len(scores) == 30 and sum(scores[(0, op)] for op in range(5)) == pytest.approx(1.0)


def test_random_cell_sampler_is_uniform_and_seeded():
    sampler = RandomCellSampler(seed=3)
    cells = np.array([sampler.cell(s) for s in range(5000)])
    assert sampler.paths(17) == sampler.paths(17) == [sampler.cell(17)]
    freq = np.stack([(cells == op).mean(0) for op in range(5)])
    # `none` included and never redrawn: a redraw would keep `none` off edge 1<-0, node 1's only input
    assert np.abs(freq - 0.2).max() < 0.03


def test_alpha_step_drives_the_supernet_trainer_and_drops_operators():
    from anglenas.data.normalize import CIFAR_NORMALIZE
    from anglenas.data.streams import TensorStream
    from anglenas.nb201.drop import drop_report
    from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    train = TensorStream(images[:32], labels[:32], 16, seed=0, normalize=CIFAR_NORMALIZE, pad=2)
    valid = TensorStream(images[32:], labels[32:], 16, seed=1, normalize=CIFAR_NORMALIZE, pad=2)
    model = NB201_SPACE.relaxed_supernet(NB201_SPACE.initial_operations(), channels=4, depth=1)
    alphas = AlphaStep(model)
    cfg = SupernetTrainConfig(batch_size=16, lr=0.05, channels_last=False, device="cpu")
    trainer = SupernetTrainer(SinglePathView(model), RandomCellSampler(seed=0), train, cfg, 4, torch.device("cpu"),
                              arch_step=alphas, arch_stream=valid)
    trainer.train(0, 4)
    assert not torch.equal(model.alphas.detach(), torch.zeros(6, 5))
    report = drop_report(alphas.operator_scores(), {(e, op): 5 * e + op + 1 for e in range(6) for op in range(5)},
                         [], num_drops=20)
    assert sum(len(k) for k in report["kept"]) == 10 and all(report["kept"])
