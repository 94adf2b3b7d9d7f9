"""P-tuning core: templates, prompt encoders, the prompt table, prompt injection, data."""
