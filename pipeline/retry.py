"""Bounded retries with exponential backoff for operations the docker daemon performs for us (push, pull).

Registry HTTP requests retry inside pipeline.registry.http; this is for the
engine's own registry traffic, whose errors arrive as text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures worth another try: the registry or the network is down or overloaded.
TRANSIENT = (
    "connection refused", "connection reset", "i/o timeout", "timeout", "eof", "tls handshake",
    "502 bad gateway", "503 service unavailable", "504 gateway", "500 internal server error",
    "received unexpected http status: 5", "too many requests", "no route to host",
)
# Never retried: the registry answered and said no.
FINAL = ("unauthorized", "denied", "401", "403", "404", "not found", "name unknown", "manifest invalid", "read-only")


def transient(message: str) -> bool:
    text = message.lower()
    return not any(word in text for word in FINAL) and any(word in text for word in TRANSIENT)


def with_retries(fn: Callable[[], T], *, what: str, attempts: int, backoff: float) -> T:
    """Call ``fn``; on a transient PipelineError try again up to ``attempts`` times in all.

    Raises:
        PipelineError: the last error, with the number of attempts when more than one was made.
    """
    attempt = 1
    while True:
        try:
            return fn()
        except PipelineError as exc:
            if attempt >= attempts or not transient(str(exc)):
                if attempt > 1:
                    raise type(exc)(f"{exc} (gave up after {attempt} attempts)") from None
                raise
            delay = backoff * 2 ** (attempt - 1)
            log.info("%s: %s; retrying in %.1f s (%d/%d)", what, exc, delay, attempt, attempts - 1)
            time.sleep(delay)
            attempt += 1
