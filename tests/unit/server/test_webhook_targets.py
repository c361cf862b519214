"""Where a webhook may go: the URL and header checks at task creation, the address checks at delivery."""

from __future__ import annotations

import ipaddress

import pytest

from visionatrix.server.webhooks import targets


def _check(url: object, headers: object = None) -> tuple[dict | None, dict[str, str]]:
    problems: dict[str, str] = {}
    return targets.check_webhook(url, headers, problems), problems


@pytest.mark.parametrize("url", ["https://hooks.example.com/vix?x=1", "http://203.0.113.9:8080/h",
                                 "http://[2001:db8::1]/h", "https://bücher.example/h"])
def test_good_urls_and_headers_make_the_webhook_column(url: str) -> None:
    webhook, problems = _check(url, {"Authorization": "Bearer abc", "X-Tenant": "7"})
    assert problems == {}
    assert webhook == {"url": url, "headers": {"Authorization": "Bearer abc", "X-Tenant": "7"}}


def test_no_url_is_no_webhook() -> None:
    assert _check(None) == (None, {})
    assert _check("") == (None, {})


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/x", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("https://user:pw@example.com/", "credentials"),
    ("https://example.com/#frag", "fragment"),
    ("https://exa mple.com/", "spaces"),
    ("https://example.com/\r\nX: y", "control"),
    ("https:///nohost", "host"),
    ("https://-bad-.example/", "host"),
    ("https://example.com:99999/", "ort"),
    ("https://example.com/" + "a" * 3000, "longer than"),
    (42, "as a string"),
])
def test_bad_urls_are_named(url: object, why: str) -> None:
    webhook, problems = _check(url)
    assert webhook is None
    assert why in problems["webhook_url"]


@pytest.mark.parametrize(("headers", "why"), [
    (["x"], "expected an object"),
    ({"Host": "evil"}, "set by the server"),
    ({"content-length": "1"}, "set by the server"),
    ({"Transfer-Encoding": "chunked"}, "set by the server"),
    ({"Connection": "close"}, "set by the server"),
    ({"X-Visionatrix-Signature": "sha256=0"}, "set by the server"),
    ({"X-Ok": "a\r\nInjected: 1"}, "control characters"),
    ({"X-Ok": "a\nb"}, "control characters"),
    ({"Bad Name": "v"}, "not a valid header name"),
    ({"X-Num": 5}, "must be a string"),
    ({"X-A": "1", "x-a": "2"}, "more than once"),
    ({f"X-{i}": "v" for i in range(targets.MAX_HEADERS + 1)}, "at most"),
    ({"X-Big": "v" * (targets.MAX_HEADER_VALUE_CHARS + 1)}, "longer than"),
])
def test_bad_headers_are_named(headers: object, why: str) -> None:
    webhook, problems = _check("https://example.com/h", headers)
    assert webhook is None
    assert why in problems["webhook_headers"]


def test_headers_without_a_url_are_a_problem() -> None:
    assert _check(None, {"X-A": "1"})[1] == {"webhook_headers": "given without a webhook_url"}


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12::1",
    "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1",
    "2001:db8::1"])
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert targets.blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert targets.blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "localhost", "[::1]"])
async def test_a_host_with_a_non_public_address_is_refused_unless_allowed(host: str) -> None:
    with pytest.raises(targets.WebhookRefused):
        await targets.vetted_addresses(host.strip("[]"), 80, ())
    with pytest.raises(targets.WebhookRefused):
        await targets.vetted_addresses(host.strip("[]"), 80, ("other.example",))
    allowed = await targets.vetted_addresses(host.strip("[]"), 80, (host,))
    assert allowed and all(ipaddress.ip_address(a["host"]).is_loopback or not ipaddress.ip_address(a["host"]).is_global
                           for a in allowed)
    assert await targets.vetted_addresses(host.strip("[]"), 80, ("*",))


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(targets.WebhookRefused, match="does not resolve"):
        await targets.vetted_addresses("no-such-host.invalid", 80, ("*",))


async def test_the_vetted_resolver_only_answers_for_its_host() -> None:
    resolver = targets.VettedResolver("hooks.example", [{"hostname": "hooks.example", "host": "203.0.113.5",
                                                         "port": 443, "family": 2, "proto": 0, "flags": 4}])
    assert (await resolver.resolve("hooks.example", 443))[0]["host"] == "203.0.113.5"
    with pytest.raises(OSError):
        await resolver.resolve("elsewhere.example", 443)
