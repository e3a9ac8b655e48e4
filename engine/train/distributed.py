"""One run over several processes (torch.distributed, data-parallel). A run with
gpus = 1 never comes here: it has no process group and trains as it always did.

Any launcher works: a process whose environment names WORLD_SIZE > 1, RANK, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT (torchrun, srun tasks with those exported) joins that group.
Without them, `python -m engine run` of a gpus = N experiment is rank 0 itself (it holds
the queue slots and is the pid in status.json) and spawns ranks 1..N-1 with
torch.multiprocessing. Only rank 0 writes the run directory.
"""
from __future__ import annotations

import fcntl
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from engine.core.errors import DeviceError

SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0
    init_method: str = "env://"
    procs: object = None  # rank 0 of a spawned run: the other ranks' ProcessContext
    threads: int = 0  # rank 0 on the CPU: torch's thread count before the run
    per_node: int = 0  # ranks on this machine (0: all of them)
    hosts: tuple = ()  # each rank's host, in rank order (join)
    addresses: tuple = ()  # each rank's address towards rank 0 (join; lost() reads them)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def from_env() -> Ranks | None:
    """The rank a launcher gave this process, or None outside a multi-process launch."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    # the rank on this node picks the GPU: RANK is that only on one node (srun without
    # torchrun sets SLURM_LOCALID); with neither, LOCAL_WORLD_SIZE nodes of equal size
    local = os.environ.get("LOCAL_RANK") or os.environ.get("SLURM_LOCALID")
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or 0)
    if local is None:
        local = rank % (per_node or world)
    return Ranks(rank, world, int(local), per_node=per_node)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(world: int, target, args: tuple) -> Ranks:
    """Start ranks 1..world-1 as `target(index, port, world, *args)` in fresh processes
    (torch.multiprocessing, start method spawn: no CUDA state is forked; torch makes each
    die with its parent); this process becomes rank 0."""
    import torch.multiprocessing as mp

    port = _free_port()
    procs = mp.start_processes(target, args=(port, world, *args), nprocs=world - 1,
                               join=False, start_method="spawn")
    return Ranks(0, world, 0, f"tcp://127.0.0.1:{port}", procs)


def become_rank(index: int, port: int, world: int) -> None:
    """In a spawned process: the environment of rank index + 1, which from_env reads."""
    os.environ.update(RANK=str(index + 1), LOCAL_RANK=str(index + 1), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def join(ranks: Ranks, device: torch.device) -> torch.device:
    """The process group (nccl on GPUs, gloo on the CPU) and this rank's device."""
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if ranks.local >= count:
            raise DeviceError(f"this run has {ranks.world} processes but only {count} GPU(s) "
                              "are visible: one GPU per process")
        device = torch.device("cuda", ranks.local)
        torch.cuda.set_device(device)
    else:  # the ranks on a machine share its cores (Slurm's share of them, under Slurm)
        ranks.threads = torch.get_num_threads()
        cores = int(os.environ.get("SLURM_CPUS_ON_NODE") or 0) or os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // (ranks.per_node or ranks.world)))
    address, name = _route_to(os.environ.get("MASTER_ADDR", ""))
    if "GLOO_SOCKET_IFNAME" not in os.environ and name:
        os.environ["GLOO_SOCKET_IFNAME"] = name
    kw = {} if ranks.init_method == "env://" else {"rank": ranks.rank, "world_size": ranks.world}
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=ranks.init_method, device_id=device
                            if device.type == "cuda" else None, **kw)
    mine = [None] * ranks.world
    dist.all_gather_object(mine, (os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                                  address))
    ranks.hosts, ranks.addresses = (tuple(x) for x in zip(*mine))
    return device


GLOO_PEER = re.compile(r"\[([0-9.]+)\]:\d+")


def lost(ranks: Ranks, exc: BaseException) -> str | None:
    """One line for a collective that failed because another rank went away (gloo names
    the peer's address; its process was killed, or its node lost): which rank, on which
    host. None for any other error."""
    text = str(exc).split(" This is typically")[0].strip()
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text).rstrip(".")
    peer = GLOO_PEER.search(text)
    if not isinstance(exc, RuntimeError) or peer is None:
        return None
    others = [r for r, a in enumerate(ranks.addresses) if a == peer[1] and r != ranks.rank]
    hosts = {ranks.hosts[r] for r in others}
    who = (f"rank {others[0]} on {ranks.hosts[others[0]]}" if len(others) == 1 else
           f"a rank on {hosts.pop()}" if len(hosts) == 1 else f"the rank at {peer[1]}")
    return f"{who} was lost ({text}); engine resume continues from the last epoch"


def _route_to(address: str) -> tuple[str | None, str | None]:
    """This machine's address towards `address`, and the network interface it is on when
    that is not loopback: gloo would otherwise bind to whatever the host name resolves
    to, which on a cluster node is often an address the other nodes cannot reach."""
    if not address or address in ("localhost", "127.0.0.1"):
        return "127.0.0.1", None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((address, 9))  # UDP: picks the route, sends nothing
            mine = s.getsockname()[0]
    except OSError:
        return None, None
    return mine, (None if mine.startswith("127.") else _interface_of(mine))


def _interface_of(mine: str) -> str | None:
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                got = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                                  struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address
                continue
        if socket.inet_ntoa(got[20:24]) == mine:
            return name
    return None


def from_main(*values):
    """Rank 0's values on every rank (how a run starts is rank 0's to decide: it read
    the run's status before the others could)."""
    got = list(values)
    dist.broadcast_object_list(got, 0)
    return got


def watch(ranks: Ranks, on_failure, grace_s: float = 60.0) -> threading.Event:
    """Rank 0 of a spawned run: when another rank dies with an error and rank 0 has not
    ended `grace_s` later (stuck in a collective, as NCCL can be), on_failure(line) records
    it and this process exits. A gloo collective fails at once, so the normal path wins."""
    done = threading.Event()

    def loop():
        while not done.wait(1.0):
            dead = [(i + 1, p.exitcode) for i, p in enumerate(ranks.procs.processes)
                    if p.exitcode not in (None, 0)]
            if dead:
                if not done.wait(grace_s):
                    on_failure(f"rank {dead[0][0]} exited with code {dead[0][1]}")
                    os._exit(1)
                return

    if ranks.procs is not None:
        threading.Thread(target=loop, daemon=True, name="ranks-watch").start()
    return done


def close(ranks: Ranks, ok: bool) -> None:
    """Leave the group: after a barrier when every rank got to the same place, then (rank
    0) wait for the spawned ranks, or end them when something failed."""
    if ranks.distributed and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()
    if ranks.threads:
        torch.set_num_threads(ranks.threads)
    if ranks.procs is not None:
        end = time.time() + (60 if ok else 5)
        for p in ranks.procs.processes:
            p.join(max(0.0, end - time.time()))
            if p.is_alive():
                p.kill()
                p.join()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as DistributedDataParallel trains it; BatchNorm synchronised across the
    GPUs (SyncBatchNorm refuses CPU modules). The same parameter objects: the optimiser,
    the EMA and the checkpoints keep using the unwrapped model."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":  # in place: no model here is a bare BatchNorm at the top
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def sums(*values, device: torch.device) -> list[float]:
    """Each value summed over the ranks (numbers or 0-d tensors), as Python numbers."""
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(())
                     for v in values])
    dist.all_reduce(t)
    return t.tolist()


def agree(loss: torch.Tensor, stop: bool) -> tuple[float, bool]:
    """The loss averaged over the ranks, and whether any rank was asked to stop: one
    collective at the steps that log, so that every rank leaves an epoch at the same step."""
    t = torch.stack([loss.detach().float().reshape(()),
                     torch.tensor(float(stop), device=loss.device)])
    dist.all_reduce(t)
    mean, stopping = t.tolist()
    return mean / dist.get_world_size(), stopping > 0


def gather(t: torch.Tensor) -> torch.Tensor:
    """Every rank's tensor, concatenated in rank order (on the CPU)."""
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, t.cpu())
    return torch.cat(parts)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's BatchNorm statistics on every rank, so that the ranks evaluate one model
    (its checkpoint's)."""
    for b in model.buffers():
        dist.broadcast(b, 0)
