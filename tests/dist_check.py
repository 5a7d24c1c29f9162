"""Run under torchrun by tests/test_shrink.py: two ranks train the same paths and end with identical weights."""
import torch
import torch.distributed as dist

from anglenas.data import DataConfig, build_data
from anglenas.spaces.mobilenet import GPU_SPACE
from anglenas.spaces.mobilenet.supernet import MobileSuperNet
from anglenas.train.dist import init_distributed
from anglenas.train.samplers import UniformPathSampler
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

env, device = init_distributed("cpu")
space = GPU_SPACE.scaled(0.25, 32, 10, stem_stride=1)
torch.manual_seed(0)
model = MobileSuperNet(space)
before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
data = build_data(DataConfig(dataset="embedded"), device)
stream = data.train_stream(32, seed=0, rank=env.rank, world=env.world)
cfg = SupernetTrainConfig(batch_size=32, lr=0.1, device="cpu")
trainer = SupernetTrainer(model, UniformPathSampler(space.initial_operations(), 0), stream, cfg, 10, device, env)
trainer.train(0, 4)
after = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.empty_like(after) for _ in range(env.world)]
dist.all_gather(gathered, after)
assert all(torch.equal(gathered[0], g) for g in gathered), "ranks diverged"
assert not torch.equal(before, after), "nothing was trained"
print(f"rank {env.rank}: identical weights on {env.world} ranks")
dist.destroy_process_group()
