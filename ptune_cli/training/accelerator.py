"""accelerate for a training run: mixed precision from ``--precision``, the gloo backend for
several CPU processes. (``--report-to`` trackers: :mod:`ptune_cli.tracking`, fed by the run's
events on the main process.)"""

from __future__ import annotations

import os

import torch

from ptune_cli.errors import UserError
from ptune_cli.training.config import TrainConfig


def make_accelerator(cfg: TrainConfig):
    """The Accelerator of a run: mixed precision from --precision."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # Several processes but no GPU (torchrun, `accelerate launch --multi_gpu` on a CPU box):
    # accelerate only picks the gloo CPU backend when told the run is on CPU.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    # accelerate keeps mixed precision process-wide: a second run_train in the same process
    # (Python API, tests) with another --precision was refused. The process group is kept.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    try:
        return Accelerator(
            cpu=cpu,
            mixed_precision=mixed_precision(cfg.precision),
            # tasks trained together: a batch uses one task's input table, the others idle
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
    except (ValueError, ImportError, RuntimeError) as e:
        raise UserError(f"--precision {cfg.precision}: {e}") from None


def mixed_precision(precision: str) -> str:
    """``--precision`` → accelerate's ``mixed_precision`` (the ``auto`` rule of eval/translate)."""
    from ptune_cli.models import torch_dtype

    dtype = torch_dtype(precision, "cuda" if torch.cuda.is_available() else "cpu")
    return {torch.float32: "no", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
