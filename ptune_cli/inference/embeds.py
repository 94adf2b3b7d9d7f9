"""A record's prompt as embeddings (``[L, hidden]``): its template tokens embedded by the base
model with the task's prompt rows spliced in at the virtual positions — what ``ptune predict``
feeds the model, and what an engine that accepts prompt embeddings (vLLM's ``prompt_embeds``
input) takes instead of token ids. No ``ptune`` command uses it; see the README for how.
"""

from __future__ import annotations


def prompt_embeds(model, tokenizer, template, prompt, record: dict):
    """``[L, hidden]`` float tensor for ``record`` through ``template`` (no answer), the rows of
    ``prompt`` (``[T, hidden]``, the prompt table's entry) at the virtual positions."""
    import torch

    from ptune_cli.errors import UserError
    from ptune_cli.ptuning.model import PrefixKind, inject_prompts, kind_of
    from ptune_cli.ptuning.template import encode_example

    if kind_of(prompt) is PrefixKind:
        # a deep prompt lives in every layer's keys/values: no input embeddings can carry it
        raise UserError(f"task '{template.taskname}' is a prefix task (--encoder prefix): it has no prompt "
                        "embeddings for an embeddings engine; serve it with ptune serve")
    enc = encode_example(template, record, tokenizer, include_answer=False)
    if enc is None:
        raise UserError(f"record does not fit template '{template.taskname}'")
    device = model.get_input_embeddings().weight.device
    ids = torch.tensor([enc.input_ids], device=device)
    vmask = torch.tensor([enc.virtual_mask], device=device)
    with torch.inference_mode():
        return inject_prompts(model, ids, vmask, prompt.to(device))[0]
