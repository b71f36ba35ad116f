"""Several processes under torchrun: joining the process group and gathering results (a leaf module).

``torchrun --nproc_per_node N ... -m robustkit train|audit ...`` sets WORLD_SIZE/RANK; training wraps
the model in DistributedDataParallel, the audit shards its attack batches across ranks and gathers the
per-sample results. One process (no WORLD_SIZE) is world 1 and nothing here communicates.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def init_from_env(device: torch.device | str = "cpu", timeout_s: float = 300.0) -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun set up (gloo on CPU, nccl on GPU).

    ``timeout_s`` bounds every collective: a rank that died makes the others fail with an error
    within it instead of waiting forever."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # collectives (and all_gather_object) use the current device
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=_store(world, timeout),
                                rank=int(os.environ["RANK"]), world_size=world, timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def _store(world: int, timeout: datetime.timedelta) -> dist.Store:
    """torchrun's key-value store, with keys prefixed by the restart count.

    After ``--max-restarts`` restarts the workers, the agent's store still holds the previous attempt's
    addresses; a restarted rank could read a dead peer's address from it and fail to connect. A
    prefix per attempt keeps every attempt's rendezvous to itself."""
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                         is_master=not agent_hosts and int(os.environ["RANK"]) == 0, timeout=timeout)
    return dist.PrefixStore(f"robustkit/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base)


def rank_world() -> tuple[int, int]:
    """(rank, world size) of an initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    rank, world = rank_world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out
