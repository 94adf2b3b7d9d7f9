"""``ptune train``: the accelerate training loop, checkpoints, early stopping, export.

``from ptune_cli.training import TrainConfig, run_train`` works without typer.
"""

from ptune_cli.training.config import TrainConfig

__all__ = ["TrainConfig", "run_train"]


def run_train(cfg, on_event=None):
    """See :func:`ptune_cli.training.loop.run_train` (imported lazily: it needs torch)."""
    from ptune_cli.training.loop import run_train as _run

    return _run(cfg, on_event=on_event)
