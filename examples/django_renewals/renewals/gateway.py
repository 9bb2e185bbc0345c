"""A stand-in for the SMS gateway that tells insurees their policy was renewed: it fails the first attempt
for numbers ending in 0 (so that the example shows a renewal retried), and records what it sent."""

from __future__ import annotations

import threading

SENT: list[tuple[str, str]] = []
_lock = threading.Lock()


class GatewayUnavailable(ConnectionError):
    """The gateway did not answer."""


def send_sms(phone: str, text: str, *, attempt: int) -> None:
    if phone.endswith("0") and attempt == 1:
        raise GatewayUnavailable(f"SMS gateway timed out sending to {phone}")
    with _lock:
        SENT.append((phone, text))
