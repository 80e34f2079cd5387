"""Measuring a training step: its wall time and its memory, the same way on a CPU and a GPU.

Memory of one training step:
- on a GPU, `torch.cuda.max_memory_allocated` above what was resident before the step
  (weights, optimizer state): activations, gradients and temporaries, measured by the allocator;
- on a CPU there is no allocator counter, so we count what dominates training memory and is
  the same on every device: the bytes of the tensors autograd saves for backward during the
  forward pass (through `torch.autograd.graph.saved_tensors_hooks`), each storage once, the
  parameters left out. It is exact for what it counts; it leaves out gradients, optimizer state
  and the transient buffers of single ops. Under gradient checkpointing it counts the inputs
  kept for recomputation, not the one block recomputed at a time in backward.

Used by minildm/why_latent.py (pixel vs latent cost, LDM sec. 4.1) and the scripts of bench/.
"""

import statistics
import time
from collections.abc import Callable, Iterable

import torch


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a timer reads the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    steps: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median wall time of each callable; the callables run interleaved, so that load from other
    processes on a shared machine hits all of them alike. Warm-up calls are not timed."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def saved_activation_bytes(step: Callable[[], None], parameters: Iterable[torch.Tensor]) -> int:
    """Bytes of the tensors saved for backward while `step` runs (each storage once, parameters excluded)."""
    parameter_storages = {p.untyped_storage().data_ptr() for p in parameters}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(saved.values())


def peak_step_bytes(step: Callable[[], None], parameters: Iterable[torch.Tensor], device: torch.device) -> int:
    """Memory of one call of `step`: GPU allocator peak above the resident memory, or on a CPU the
    saved-for-backward bytes (see the module docstring). Call it after a warm-up step."""
    if device.type != "cuda":
        return saved_activation_bytes(step, parameters)
    sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - resident


def memory_kind(device: torch.device) -> str:
    """What `peak_step_bytes` counts on this device, for the line under a table."""
    if device.type == "cuda":
        return "GPU peak allocated above resident weights and optimizer state (torch.cuda.max_memory_allocated)"
    return "activations saved for backward, parameters excluded (saved_tensors_hooks; a device-independent proxy)"
