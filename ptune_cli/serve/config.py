"""Options of ``ptune serve``: each declared once, here (the decoding ones are eval's).

Kept free of heavy imports: ``ptune --help`` imports it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from ptune_cli.inference.options import DecodeOptions
from ptune_cli.options import flag_of, option

_HTTP = "Server"
_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; a name or address reachable from elsewhere
    (0.0.0.0, a LAN address, a host name) is not."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(kw_only=True)  # required --run after the inherited defaults
class ServeConfig(DecodeOptions):
    """Options of ``ptune serve``."""

    CLI_OMIT: ClassVar[frozenset[str]] = frozenset({"batch_size"})  # one batch size: --max-batch-size

    run: str = option(help="Run folder with the prompt table (from ptune train); re-read on SIGHUP or POST /v1/reload.")
    host: str = option("127.0.0.1", panel=_HTTP, help="Address to bind (loopback by default).")
    port: int = option(8000, panel=_HTTP, help="TCP port (0: any free port, printed at start).")
    max_batch_size: int = option(32, panel=_HTTP,
                                 help="Most records in one model batch: the worker takes up to this many from the queue "
                                      "(concurrent requests and tasks share a batch).")
    max_wait_ms: float = option(10.0, panel=_HTTP,
                                help="How long the worker waits for more records after the first before it decodes.")
    max_records: int = option(256, panel=_HTTP, help="Most records in one request (more: 413).")
    max_request_bytes: int = option(1_000_000, panel=_HTTP, help="Largest request body in bytes (more: 413).")
    api_key: str | None = option(None, panel=_HTTP,
                                 help="Bearer token every route but /health requires (Authorization: Bearer KEY); also read from PTUNE_API_KEY.")
    insecure: bool = option(False, panel=_HTTP, help="Allow a non-loopback --host without --api-key.")
    drain_timeout: float = option(60.0, panel=_HTTP, help="On SIGTERM or Ctrl+C: seconds in-flight requests may "
                                  "take to finish; those still running then get 503 and the server exits.")
    task: str | None = option(None, help="Task of the records without a 'taskname' (default: the table's only task).")

    @property
    def mode(self) -> str:
        return "run"  # job.py's rules for a run's prompts

    def problems(self) -> list[str]:
        p = self.decode_problems()
        flag = lambda name: flag_of(self, name)  # noqa: E731 - messages name flags through the declaration
        if not 0 <= self.port <= 65535:
            p.append(f"{flag('port')} must be in 0..65535 (got {self.port})")
        for name in ("max_batch_size", "max_records", "max_request_bytes"):
            if getattr(self, name) < 1:
                p.append(f"{flag(name)} must be at least 1 (got {getattr(self, name)})")
        if self.max_wait_ms < 0:
            p.append(f"{flag('max_wait_ms')} must be >= 0 (got {self.max_wait_ms})")
        if not self.drain_timeout >= 0:
            p.append(f"{flag('drain_timeout')} must be >= 0 seconds (got {self.drain_timeout})")
        if not is_loopback(self.host) and not self.api_key and not self.insecure:
            p.append(f"{flag('host')} {self.host} is reachable from other machines: give {flag('api_key')} KEY "
                     f"(or {flag('insecure')} to serve it without authentication)")
        return p
