"""60/min and 1000/h per API key or client IP, shared across processes through Redis."""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def fresh_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}"  # only a label: nothing is sent


@pytest.mark.django_db
def test_61st_request_in_a_minute_is_429_with_headers(client, settings):
    settings.RATE_LIMITS = ["60/m", "1000/h"]
    ip = fresh_ip()
    statuses = [client.get("/api/v1/auth/me", REMOTE_ADDR=ip).status_code for _ in range(60)]
    assert set(statuses) == {401}

    response = client.get("/api/v1/auth/me", REMOTE_ADDR=ip)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response["X-RateLimit-Limit"] == "60"
    assert response["X-RateLimit-Remaining"] == "0"
    assert int(response["X-RateLimit-Reset"]) > time.time()
    assert response.json()["error"]["code"] == "rate_limited"
    # Another client is unaffected; health checks are exempt.
    assert client.get("/api/v1/auth/me", REMOTE_ADDR=fresh_ip()).status_code == 401
    assert client.get("/healthz", REMOTE_ADDR=ip).status_code == 200


@pytest.mark.django_db
def test_limits_are_per_verified_api_key_not_per_ip(client, settings, user):
    from apps.accounts.services import api_key_create

    settings.RATE_LIMITS = ["3/d"]
    ip = fresh_ip()
    key_a = api_key_create(user=user, name="a").raw_key
    key_b = api_key_create(user=user, name="b").raw_key
    for _ in range(3):
        assert (
            client.get("/api/v1/auth/me", REMOTE_ADDR=ip, HTTP_X_API_KEY=key_a).status_code == 200
        )
    assert client.get("/api/v1/auth/me", REMOTE_ADDR=ip, HTTP_X_API_KEY=key_a).status_code == 429
    # The same key as a bearer token is the same bucket; another key has its own.
    assert (
        client.get("/api/v1/auth/me", REMOTE_ADDR=ip, HTTP_AUTHORIZATION=f"Bearer {key_a}")
    ).status_code == 429
    assert client.get("/api/v1/auth/me", REMOTE_ADDR=ip, HTTP_X_API_KEY=key_b).status_code == 200


FAKE_CREDENTIALS = [
    lambda: {"HTTP_AUTHORIZATION": f"Bearer x{uuid.uuid4().hex}"},
    lambda: {"HTTP_AUTHORIZATION": f"Bearer gco_{uuid.uuid4().hex}"},
    lambda: {"HTTP_AUTHORIZATION": f"Bearer a{uuid.uuid4().hex[:6]}.b.c"},  # a forged JWT
    lambda: {"HTTP_X_API_KEY": f"gco_{uuid.uuid4().hex}"},
    lambda: {"HTTP_X_AGENT_API_KEY": uuid.uuid4().hex},
]


@pytest.mark.django_db
def test_made_up_credentials_count_against_the_ip(client, settings, user):
    """100 logins, each with a fresh made-up credential, from one IP: 429 past the IP's limit."""
    from apps.accounts.services import api_key_create

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.RATE_LIMITS = ["60/d"]  # a day's window: no boundary to cross mid-test
    settings.AUTH_LOGIN_IP_LOCK = {**settings.AUTH_LOGIN_IP_LOCK, "FREE_FAILURES": 1000}
    ip = fresh_ip()

    statuses = []
    for i in range(100):
        response = client.post(
            "/api/v1/auth/login",
            {"email": f"guess{i}@example.com", "password": "wrong-password"},
            content_type="application/json",
            REMOTE_ADDR=ip,
            **FAKE_CREDENTIALS[i % len(FAKE_CREDENTIALS)](),
        )
        statuses.append(response.status_code)

    assert statuses[:60] == [401] * 60
    assert statuses[60:] == [429] * 40
    assert response.json()["error"]["code"] == "rate_limited"
    # A client whose key verifies still has its own bucket behind the same address.
    key = api_key_create(user=user, name="ci").raw_key
    assert client.get("/api/v1/auth/me", REMOTE_ADDR=ip, HTTP_X_API_KEY=key).status_code == 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.e2e
def test_limit_holds_across_two_server_processes(tmp_path):
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.skip("needs REDIS_URL: the limit is shared through Redis")
    env = {
        **os.environ,
        "RATE_LIMITS": "60/m,1000/h",
        "TRUSTED_PROXY_COUNT": "1",
        "CACHE_KEY_PREFIX": f"rl-test-{uuid.uuid4().hex}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "VAR_DIR": str(tmp_path),
    }
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "config.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port in ports:
            wait_until_up(f"http://127.0.0.1:{port}/healthz")
        # One client (a fresh address behind our one trusted proxy, no credential), two servers.
        ip_header = {"X-Forwarded-For": fresh_ip()}
        # The windows are fixed (aligned to the clock's minute): start the 61 requests early in
        # one, so a slow machine doesn't carry them across a boundary into a fresh count.
        into_minute = time.time() % 60
        if into_minute > 20:
            time.sleep(60 - into_minute + 0.05)
        statuses = []
        for i in range(61):
            port = ports[i % 2]
            response = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/does-not-matter", headers=ip_header
            )
            statuses.append(response.status_code)
        assert statuses[:60].count(429) == 0
        assert statuses[60] == 429
        assert response.headers["Retry-After"]
        assert response.headers["X-RateLimit-Remaining"] == "0"
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)
