"""Evaluation: predictions from a p-tuned model (``predict``), metrics (``metrics``), frozen-model
baselines (``baseline``), the ``ptune eval`` driver (``run``) and fold aggregation / plots
(``report``, ``plots``)."""
