"""Training checkpoints: encoder, optimizer, scheduler, step, early-stopping state, best
prompts and RNG states in one file, replaced atomically so a kill -9 never leaves half of one."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from ptune_cli.io import atomic_output

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"


def checkpoint_path(run_dir) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / STATE_FILE


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # numpy is optional here
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir, state: dict) -> None:
    """Write ``state`` (plus RNG states) to RUN_DIR/checkpoint/state.pt atomically."""
    with atomic_output(checkpoint_path(run_dir), "wb") as fh:
        torch.save({**state, "rng": rng_state()}, fh)


def load_checkpoint(run_dir) -> dict | None:
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
