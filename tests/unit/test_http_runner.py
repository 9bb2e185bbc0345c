"""The reply mapping and the masking of endpoints of finejobs.http_runner, and the plan conversion of
finejobs.services: pure code, no database, no network."""

from __future__ import annotations

from datetime import timedelta

import pytest

from finejobs import Adaptive, DailyAt
from finejobs.http_runner import ServiceError, mask_endpoint, parse_reply
from finejobs.services import ServiceFileError, parse_services

JSON = "application/json; charset=utf-8"


def test_replies_are_read_or_refused_with_a_clear_message() -> None:
    assert parse_reply(200, JSON, b'{"code": "success", "message": "ok"}') == ("success", "ok", None)
    assert parse_reply(200, "application/problem+json", b'{"code": "idle"}') == ("idle", "", None)
    assert parse_reply(200, JSON, b'{"code": "error", "message": {"a": 1}, "error_details": [1]}') == \
        ("error", '{"a": 1}', [1])
    refusals = {
        (500, JSON, b'{"code": "success"}'): "HTTP 500 Internal Server Error from the service",
        (302, JSON, b""): "HTTP 302 Found from the service",
        (200, "text/html", b"<p>hi</p>"): "content type 'text/html', not application/json",
        (200, "", b"{}"): "content type '(none)'",
        (200, JSON, b"[1, 2]"): "JSON that is not an object",
        (200, JSON, b"\xff\xfe"): "a body that is not JSON",
        (200, JSON, b'{"message": "x"}'): "without a 'code'",
        (200, JSON, b'{"code": "SUCCESS"}'): "an unknown code 'SUCCESS'",
    }
    for (status, content_type, body), words in refusals.items():
        with pytest.raises(ServiceError) as refused:
            parse_reply(status, content_type, body)
        assert words in str(refused.value), (status, content_type, body, str(refused.value))


def test_endpoints_are_masked() -> None:
    assert mask_endpoint("https://bob:pw@h.example:8443/run?token=abc&x=&y") == \
        "https://bob:***@h.example:8443/run?token=***&x=***&y=***"
    assert mask_endpoint("http://apikey@h/p") == "http://***@h/p"
    assert mask_endpoint("http://h/p#frag") == "http://h/p"
    assert mask_endpoint("http://[::1") == "***"


def test_plans_become_rules() -> None:
    daily, interval = parse_services([
        {"name": "d", "endpoint": "http://h/", "execution_plan": {"period": "daily", "time": "06:30:05",
                                                                  "timezone": "Europe/Madrid"}},
        {"name": "i", "endpoint": "http://h/", "timeout": "2m",
         "execution_plan": {"period": "interval", "intervals": {"on_success": "1h30m", "on_error": 30}}},
    ])
    assert isinstance(daily.rule(), DailyAt) and daily.rule().describe() == "daily at 06:30:05 (Europe/Madrid)"
    rule = interval.rule()
    assert isinstance(rule, Adaptive) and interval.timeout == 120
    assert [rule.delay(o) for o in ("success", "idle", "error", "timeout")] == \
        [timedelta(minutes=90), timedelta(minutes=90), timedelta(seconds=30), timedelta(seconds=30)]
    assert daily.schedule_options()["overlap"] == "skip" and daily.schedule_name == "service:d"
    with pytest.raises(ServiceFileError, match=r"<root>: expected a list of services, got dict"):
        parse_services({"name": "x"})
    with pytest.raises(ServiceFileError, match=r"\[0\]\.name: must not be blank"):
        parse_services([{"name": " ", "endpoint": "http://h/", "execution_plan": {"period": "interval",
                                                                                  "intervals": {"on_success": 1}}}])
