"""Inference: a prompt table (or a baseline) applied to records, shared by ``ptune eval``,
``ptune predict`` and ``ptune serve``, read top-down:

* :mod:`.options` — the decoding options the three commands share (``DecodeOptions``);
* :mod:`.job` — the task (template + prompts, or a :mod:`.baseline`) and the typed ``EvalJob``;
* :mod:`.decode` — batched greedy generation and rank decoding;
* :mod:`.router` — a table's tasks on one loaded model, records routed by ``taskname``;
* :mod:`.predict` — ``ptune predict``'s core (new records, no gold labels);
* :mod:`.embeds` — a record's prompt as embeddings, for engines that take ``prompt_embeds``.
"""
