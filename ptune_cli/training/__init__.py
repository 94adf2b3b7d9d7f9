"""``ptune train``: the training recipe (setup → train → save), its config and its events.

``from ptune_cli.training import TrainConfig, run_train`` works without torch until
``run_train`` is called.
"""

from ptune_cli.training.config import TrainConfig
from ptune_cli.training.events import Evaluated, Finished, Started, Step, TrainResult

__all__ = ["Evaluated", "Finished", "Started", "Step", "TrainConfig", "TrainResult", "run_train"]


def run_train(cfg, on_event=None):
    """See :func:`ptune_cli.training.recipe.run_train` (imported lazily: it needs torch)."""
    from ptune_cli.training.recipe import run_train as _run

    return _run(cfg, on_event=on_event)
