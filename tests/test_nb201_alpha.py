"""The original's DARTS-alpha "magnitude" on NB201: joint mode against the single-path forward, Adam's first
step by hand, alpha-only updates, the random single-path sampler."""
import numpy as np
import pytest
import torch

from anglenas.nb201.alpha import AlphaStep, RandomCellSampler, joint_cell, joint_forward
from anglenas.spaces.nb201.supernet import NB201SuperNet


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model():
    torch.manual_seed(0)
    return NB201SuperNet(channels=4, cells_per_stage=1).eval()


def test_one_hot_alphas_run_the_single_path():
    model, x = _model(), torch.randn(3, 3, 8, 8)
    cell = (3, 1, 2, 4, 0, 3)
    alphas = torch.full((6, 5), -float("inf"))
    alphas[torch.arange(6), torch.tensor(cell)] = 0.0  # softmax is exactly one-hot
    assert torch.allclose(joint_forward(model, x, alphas), model(x, cell), atol=1e-6)


def test_uniform_alphas_average_the_ops():
    model = _model()
    # with equal alphas every edge is the mean of its 5 ops; node i therefore sums (1/5) op(node j)
    cell = model.search_cells[0]
    h = torch.randn(2, 4, 8, 8)
    n1 = sum(cell.edges[0][op](h) for op in range(1, 5)) / 5
    n2 = sum(cell.edges[1][op](h) + cell.edges[2][op](n1) for op in range(1, 5)) / 5
    n3 = sum(cell.edges[3][op](h) + cell.edges[4][op](n1) + cell.edges[5][op](n2) for op in range(1, 5)) / 5
    assert torch.allclose(joint_cell(cell, h, torch.full((6, 5), 0.2)), n3, atol=1e-6)


def test_alpha_step_is_adam_on_alpha_only():
    model = _model().train()
    step = AlphaStep(model)
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    alphas = step.alphas.detach().clone().requires_grad_(True)
    grad = torch.autograd.grad(torch.nn.functional.cross_entropy(joint_forward(model, x, alphas), y), alphas)[0]
    step(0, x, y, x, y)
    # Adam's first step from alpha = 0 (so no weight decay term): m_hat = g, v_hat = g^2 -> -lr * g / (|g| + eps)
    expected = -3e-4 * grad / (grad.abs() + 1e-8)
    assert torch.allclose(step.alphas.detach(), expected, atol=1e-9)
    params = dict(model.named_parameters())
    assert all(params[k].grad is None for k in params)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith(("running_mean", "running_var")))
    scores = step.operator_scores()
    assert len(scores) == 30 and sum(scores[(0, op)] for op in range(5)) == pytest.approx(1.0)


def test_random_cell_sampler_is_uniform_and_seeded():
    sampler = RandomCellSampler(15, seed=3)
    cells = np.array([sampler.cell(s) for s in range(5000)])
    assert sampler.paths(17) == sampler.paths(17) == [sampler.cell(17)]
    freq = np.stack([(cells == op).mean(0) for op in range(5)])
    # `none` included and never redrawn: a redraw would keep `none` off edge 1<-0, node 1's only input
    assert np.abs(freq - 0.2).max() < 0.03


def test_alpha_step_drives_the_supernet_trainer_and_drops_operators():
    from anglenas.data.streams import CIFAR_NORMALIZE, TensorStream
    from anglenas.nb201.drop import drop_report
    from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    train = TensorStream(images[:32], labels[:32], 16, seed=0, normalize=CIFAR_NORMALIZE, pad=2)
    valid = TensorStream(images[32:], labels[32:], 16, seed=1, normalize=CIFAR_NORMALIZE, pad=2)
    model = NB201SuperNet(channels=4, cells_per_stage=1)
    alphas = AlphaStep(model)
    cfg = SupernetTrainConfig(batch_size=16, lr=0.05, channels_last=False, device="cpu")
    trainer = SupernetTrainer(model, RandomCellSampler(3, seed=0), train, cfg, 4, torch.device("cpu"),
                              arch_step=alphas, arch_stream=valid)
    trainer.train(0, 4)
    assert not torch.equal(alphas.alphas.detach(), torch.zeros(6, 5))
    report = drop_report(alphas.operator_scores(), {(e, op): 5 * e + op + 1 for e in range(6) for op in range(5)},
                         [], num_drops=20)
    assert sum(len(k) for k in report["kept"]) == 10 and all(report["kept"])
