"""Edge behaviour that lives in the ASGI layer (config/asgi.py), driven in-process: chunked bodies
to the site, security headers and HTTPS on `/v1`, and `/v1/docs` from our own static files."""

import json
import re

import pytest

from tests.core.asgi_inprocess import CountingReceive, call, http_scope

pytestmark = pytest.mark.asyncio

SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "content-security-policy",
)


@pytest.fixture
def app():
    from config.asgi import application

    return application


@pytest.mark.django_db(transaction=True)
async def test_a_chunked_body_to_the_api_is_read(app):
    payload = json.dumps({"email": "nobody@example.com", "password": "wrong-password"}).encode()
    receive = CountingReceive(total=0, chunk=16, payload=payload)
    scope = http_scope(
        "POST",
        "/api/v1/auth/login",
        {"content-type": "application/json", "transfer-encoding": "chunked"},
    )

    answer = await call(app, scope, receive)

    # Read as sent: a wrong password, not "email: This field is required".
    assert answer.status == 401, answer.body
    assert json.loads(answer.body)["error"]["message"] == "Invalid email or password."


async def test_a_chunked_body_over_the_limit_is_413_after_at_most_one_chunk_more(app, settings):
    settings.MAX_REQUEST_BODY_BYTES = cap = 64 * 1024
    receive = CountingReceive(total=50 * 1024 * 1024, chunk=16 * 1024)
    scope = http_scope(
        "POST",
        "/api/v1/auth/register",
        {"content-type": "application/json", "transfer-encoding": "chunked"},
    )

    answer = await call(app, scope, receive)

    assert answer.status == 413
    assert json.loads(answer.body)["error"]["code"] == "body_too_large"
    assert receive.bytes_read <= cap + 16 * 1024


async def test_v1_answers_carry_the_security_headers(app):
    answer = await call(app, http_scope("GET", "/v1/models"), CountingReceive(total=0))

    assert answer.status == 401
    for name in SECURITY_HEADERS:
        assert answer.headers.get(name), name
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


async def test_v1_docs_come_from_our_static_files_under_a_strict_csp(app, client):
    answer = await call(app, http_scope("GET", "/v1/docs"), CountingReceive(total=0))

    assert answer.status == 200
    html = answer.body.decode()
    for name in SECURITY_HEADERS:
        assert answer.headers.get(name), name
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all('src="/static/' in attrs for attrs in scripts)  # nothing inline
    assert "cdn" not in html.lower() and "//" not in "".join(re.findall(r'src="([^"]+)"', html))
    # The page's files are really served from here, and the schema it points at exists.
    for path in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert (await call(app, http_scope("GET", path), CountingReceive(total=0))).status == 200
    schema_url = re.search(r'data-schema-url="([^"]+)"', html).group(1)
    schema = await call(app, http_scope("GET", schema_url), CountingReceive(total=0))
    assert schema.status == 200 and json.loads(schema.body)["openapi"]


@pytest.fixture
def production_tls(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True


async def test_production_redirects_v1_to_https_before_reading_it(app, production_tls):
    receive = CountingReceive(total=4096)
    scope = http_scope(
        "POST", "/v1/chat/completions", {"host": "gpu.example.com", "content-length": "4096"}
    )

    answer = await call(app, scope, receive)

    assert answer.status == 301
    assert answer.headers["location"] == "https://gpu.example.com/v1/chat/completions"
    assert receive.bytes_read == 0


async def test_production_sends_hsts_on_v1(app, production_tls):
    scope = http_scope("GET", "/v1/models", {"x-forwarded-proto": "https"})

    answer = await call(app, scope, CountingReceive(total=0))

    assert answer.status == 401
    assert answer.headers["strict-transport-security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )


@pytest.mark.django_db
def test_production_redirects_and_sends_hsts_on_the_site(client, production_tls):
    assert client.get("/api/v1/auth/me").status_code == 301
    for path in ("/", "/api/v1/auth/me", "/healthz", "/static/js/swagger-init.js"):
        response = client.get(path, secure=True)
        assert response["Strict-Transport-Security"].startswith("max-age=31536000"), path
