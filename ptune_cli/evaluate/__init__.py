"""``ptune eval`` and ``ptune report``, read top-down:

* :mod:`.config` — the options of both commands (``EvalConfig``, ``ReportConfig``);
* :mod:`.runner` — ``run_eval``: check outputs, read the test file once, build the task and the
  job, decode (resuming through :mod:`ptune_cli.resumable`), score, write;
* :mod:`.job` — the task (template + prompts, or a :mod:`.baseline`) and the typed ``EvalJob``;
* :mod:`.predict` — decoding: batched greedy generation and rank decoding;
* :mod:`.metrics` — accuracy and intent/slot P/R/F1; :mod:`.meta` — the results' ``meta``;
* :mod:`.report` + :mod:`.plots` — ``ptune report``: aggregate results files over folds.
"""
