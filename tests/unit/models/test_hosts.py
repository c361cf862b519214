"""The download address policy: schemes, the host allow-list with CDN hosts, private addresses, tokens."""

from __future__ import annotations

import socket

import pytest

from visionatrix.errors import DownloadRefused
from visionatrix.models import hosts
from visionatrix.models.hosts import DownloadPolicy


def policy(*names: str, **kwargs) -> DownloadPolicy:
    return DownloadPolicy(allow_hosts=frozenset(names), **kwargs)


CATALOG_DEFAULT = hosts.policy_from_settings(None, {"huggingface.co", "civitai.com"}, hf_token=None,
                                             civitai_token=None)


@pytest.mark.parametrize("host", ["huggingface.co", "cdn-lfs.huggingface.co", "cdn-lfs-us-1.huggingface.co",
                                  "cas-bridge.xethub.hf.co", "hf.co", "civitai.com", "b2.civitai.com",
                                  "civitai-delivery-worker-prod.5ac0637cfd0766c97916cefa3764fbdf"
                                  ".r2.cloudflarestorage.com", "HuggingFace.co."])
def test_catalog_hosts_allow_their_subdomains_and_cdn_redirects(host):
    assert hosts.host_allowed(host, CATALOG_DEFAULT)


@pytest.mark.parametrize("host", ["evilhuggingface.co", "huggingface.co.evil.com", "example.org",
                                  "other-bucket.abc.r2.cloudflarestorage.com",
                                  "civitai-delivery-worker-prod.a.b.r2.cloudflarestorage.com", "civitai.com.evil"])
def test_hosts_that_only_look_like_catalog_hosts_are_not_allowed(host):
    assert not hosts.host_allowed(host, CATALOG_DEFAULT)


def test_no_allow_list_allows_any_host_name():
    assert hosts.host_allowed("example.org", DownloadPolicy(allow_hosts=None))


@pytest.mark.parametrize(("address", "problem"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"),
    ("172.16.5.4", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
    ("100.64.0.1", "non-public"), ("fd00::1", "private"), ("240.0.0.1", "reserved"),
])
def test_non_public_addresses_are_named_by_kind(address, problem):
    assert hosts.address_problem(address) == problem


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "18.164.52.75"])
def test_public_addresses_have_no_problem(address):
    assert hosts.address_problem(address) is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://huggingface.co/x", "gopher://huggingface.co/",
                                 "huggingface.co/x", "http://", "http://huggingface.co:99999/x"])
def test_only_http_urls_with_a_host_are_downloaded(url):
    with pytest.raises(DownloadRefused) as caught:
        hosts.check_url("m", url, CATALOG_DEFAULT)
    assert caught.value.name == "m"


def test_a_host_off_the_allow_list_is_refused_by_name():
    with pytest.raises(DownloadRefused, match=r"host example\.org is not in VIX_DOWNLOAD_ALLOW_HOSTS"):
        hosts.check_url("m", "https://example.org/model.bin", CATALOG_DEFAULT)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/m", "http://[::1]/m", "http://10.0.0.7/m",
                                 "http://169.254.169.254/latest/meta-data"])
def test_private_ip_urls_are_refused_even_when_any_host_is_allowed(url):
    with pytest.raises(DownloadRefused, match="address; name it in VIX_DOWNLOAD_ALLOW_HOSTS"):
        hosts.check_url("m", url, DownloadPolicy(allow_hosts=None))


def test_an_ip_named_explicitly_is_allowed():
    assert hosts.check_url("m", "http://127.0.0.1:8000/m", policy("127.0.0.1")) == "127.0.0.1"
    assert hosts.check_url("m", "http://[::1]:8000/m", policy("::1")) == "::1"


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f000001", "017700000001"])
def test_legacy_numeric_host_forms_are_refused(host):
    with pytest.raises(DownloadRefused, match="canonical"):
        hosts.check_url("m", f"http://{host}/m", DownloadPolicy(allow_hosts=None))


def test_settings_default_uses_catalog_hosts_but_never_lets_them_reach_private_addresses():
    assert CATALOG_DEFAULT.allow_hosts == frozenset({"huggingface.co", "civitai.com"})
    assert not hosts.host_named("huggingface.co", CATALOG_DEFAULT)
    with pytest.raises(DownloadRefused):
        hosts.check_address("m", "huggingface.co", "127.0.0.1", CATALOG_DEFAULT)


def test_settings_list_with_star_allows_any_host_and_its_named_private_ones():
    made = hosts.policy_from_settings(["*", "127.0.0.1"], {"huggingface.co"}, hf_token="t", civitai_token=None)
    assert made.allow_hosts is None
    hosts.check_address("m", "127.0.0.1", "127.0.0.1", made)
    with pytest.raises(DownloadRefused):
        hosts.check_address("m", "10.0.0.1", "10.0.0.1", made)


def test_settings_list_names_hosts_that_may_resolve_to_private_addresses():
    made = hosts.policy_from_settings(["models.lan"], {"huggingface.co"}, hf_token=None, civitai_token=None)
    assert made.allow_hosts == frozenset({"models.lan"})
    hosts.check_address("m", "models.lan", "192.168.1.20", made)
    assert not hosts.host_allowed("huggingface.co", made)


def test_a_subdomain_of_a_named_host_may_not_use_a_private_address():
    with pytest.raises(DownloadRefused, match=r"x\.models\.lan \(10\.0\.0\.2\) is a private address"):
        hosts.check_address("m", "x.models.lan", "10.0.0.2", policy("models.lan"))


@pytest.mark.parametrize(("host", "expected"), [
    ("huggingface.co", ("HF_TOKEN", "hf")), ("cdn-lfs.huggingface.co", ("HF_TOKEN", "hf")),
    ("civitai.com", ("CIVITAI_TOKEN", "cv")), ("b2.civitai.com", ("CIVITAI_TOKEN", "cv")),
    ("cas-bridge.xethub.hf.co", None), ("example.org", None), ("huggingface.co.evil.com", None),
])
def test_tokens_go_only_to_their_own_hosts(host, expected):
    assert hosts.token_for(host, policy(hf_token="hf", civitai_token="cv")) == expected


def test_policy_repr_hides_tokens():
    text = repr(policy("huggingface.co", hf_token="hf_secret", civitai_token="cv_secret"))
    assert "secret" not in text and "hf_token=set" in text


async def test_resolver_refuses_a_name_that_resolves_to_loopback():
    resolver = hosts.VettedResolver(DownloadPolicy(allow_hosts=None))
    with pytest.raises(DownloadRefused, match=r"localhost \(.*\) is a loopback address"):
        await resolver.resolve("localhost", 80, family=socket.AF_UNSPEC)


async def test_resolver_answers_only_the_vetted_fixed_address():
    made = policy("models.test", host_addresses={"models.test": "127.0.0.1"})
    answers = await hosts.VettedResolver(made).resolve("models.test", 8080)
    assert [(a["host"], a["port"], a["hostname"]) for a in answers] == [("127.0.0.1", 8080, "models.test")]
    with pytest.raises(DownloadRefused):
        await hosts.VettedResolver(policy("other.test", host_addresses={"models.test": "10.0.0.1"})).resolve(
            "models.test", 80)
