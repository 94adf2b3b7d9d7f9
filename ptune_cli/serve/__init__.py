"""``ptune serve``: a run's prompt table over HTTP (FastAPI + uvicorn), concurrent requests
batched dynamically onto one model worker. config.py (ServeConfig) → app.py (routes, auth,
request checks) → batcher.py (the queue and the model's one worker thread) → server.py
(uvicorn, host check, signals)."""
