"""``ptune eval`` and ``ptune report``, read top-down:

* :mod:`.config` — the options of both commands (``EvalConfig``, ``ReportConfig``);
* :mod:`.runner` — ``run_eval``: check outputs, read the test file once, build the task and the
  job (:mod:`ptune_cli.inference`), decode (resuming through :mod:`ptune_cli.resumable`), score,
  write;
* :mod:`.metrics` — accuracy and intent/slot P/R/F1; :mod:`.meta` — the results' ``meta``;
* :mod:`.report` + :mod:`.plots` — ``ptune report``: aggregate results files over folds.
"""
