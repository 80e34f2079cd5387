"""DistributedDataParallel on a CPU: 2 gloo processes, each with its own batches, end every
step with the same weights (the gradient all-reduce keeps the replicas in sync); and the
README's `torchrun ... -m minildm train-ldm` runs to a clean exit on 2 ranks."""

import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_ldm import tiny_ldm
from test_trainer import tiny_data

from minildm.autoencoder import save_autoencoder
from minildm.ldm import load_ldm
from minildm.train.distributed import init_distributed, shutdown
from minildm.train.trainer import TrainConfig, train_ldm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, world_size: int, port: int, folder: str) -> None:
    # what torchrun would set
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    assert info.rank == rank and info.world_size == world_size and dist.get_backend() == "gloo"
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    ldm = tiny_ldm()
    data = tiny_data(ldm)
    config = TrainConfig(steps=3, batch_size=4, ema_decay=0.9)
    history = train_ldm(ldm, data, config, out_dir=folder, progress=False)
    weights = torch.cat([p.detach().flatten() for p in ldm.parameters() if p.requires_grad])
    gathered = [torch.zeros_like(weights) for _ in range(world_size)]
    dist.all_gather(gathered, weights)
    losses = [None] * world_size
    dist.all_gather_object(losses, history["loss"])
    if rank == 0:
        torch.save({"weights": gathered, "losses": losses}, os.path.join(folder, "gathered.pt"))
    shutdown(info)  # a barrier first: no rank tears down while its peer is still receiving


def test_two_gloo_ranks_stay_in_sync(tmp_path):
    mp.spawn(run_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    result = torch.load(tmp_path / "gathered.pt", weights_only=True)
    rank0, rank1 = result["weights"]
    assert torch.equal(rank0, rank1)  # the same weights on both replicas
    assert result["losses"][0] != result["losses"][1]  # from different batches
    assert (tmp_path / "ldm.pt").is_file()  # written by rank 0


def test_torchrun_train_ldm_on_two_ranks_exits_cleanly(tmp_path):
    save_autoencoder(tiny_ldm().autoencoder, tmp_path / "autoencoder.pt")  # f = 2, so 16x16 images
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "minildm", "train-ldm", "--autoencoder", str(tmp_path / "autoencoder.pt"), "--out", str(tmp_path / "out"),
        "--preset", "quick", "--size", "16", "--steps", "2", "--batch-size", "4", "--data.num_train", "32",
        "--threads", "1",
        "--ldm.text_encoder.width", "16", "--ldm.text_encoder.num_layers", "1", "--ldm.text_encoder.num_heads", "2",
        "--ldm.unet.base_channels", "16", "--ldm.unet.head_dim", "8", "--ldm.unet.norm_groups", "8",
    ]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]  # a rank that aborts at exit fails here
    assert result.stdout.count("wrote") == 1  # rank 0 alone reports (and writes) the checkpoint
    ldm = load_ldm(tmp_path / "out" / "ldm.pt")
    assert ldm.config.unet.context_dim == ldm.config.text_encoder.width == 16
