"""Brute force against the API login, registration and the portal's password reset: per-account
and per-IP back-off, the same answer for accounts that exist and accounts that don't."""

import re
import time
import uuid

import pytest

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def lock(settings, *, account_free=5, ip_free=1000, base_s=60.0, max_s=900.0):
    common = {"WINDOW_S": 900, "BASE_LOCK_S": base_s, "MAX_LOCK_S": max_s}
    settings.AUTH_LOGIN_ACCOUNT_LOCK = {**common, "FREE_FAILURES": account_free}
    settings.AUTH_LOGIN_IP_LOCK = {**common, "FREE_FAILURES": ip_free}


def many_ips():
    n = 0
    while True:
        n += 1
        yield f"10.{n // 250 % 250}.{n % 250}.{uuid.uuid4().int % 250}"


def login(client, email, password, ip):
    return client.post(
        "/api/v1/auth/login",
        {"email": email, "password": password},
        content_type="application/json",
        REMOTE_ADDR=ip,
    )


def attack(client, email, ips, attempts=50):
    return [login(client, email, f"guess-{i}", next(ips)) for i in range(attempts)]


def test_50_wrong_passwords_from_many_ips_lock_the_account(client, settings, django_user_model):
    lock(settings, account_free=5)
    django_user_model.objects.create_user(email="victim@example.com", password=PASSWORD)
    ips = many_ips()

    answers = attack(client, "victim@example.com", ips)

    statuses = [r.status_code for r in answers]
    assert statuses[:6] == [401] * 6
    assert statuses[6:] == [429] * 44
    assert int(answers[-1]["Retry-After"]) > 0
    assert answers[-1].json()["error"]["code"] == "throttled"
    # While locked, even the right password is refused (from yet another address).
    assert login(client, "victim@example.com", PASSWORD, next(ips)).status_code == 429


def test_an_unknown_account_gets_exactly_the_same_answers(client, settings, django_user_model):
    lock(settings, account_free=5)
    django_user_model.objects.create_user(email="victim@example.com", password=PASSWORD)
    ips = many_ips()

    known = attack(client, "victim@example.com", ips, attempts=10)
    unknown = attack(client, "nobody@example.com", ips, attempts=10)

    def shape(response):  # the wait in the message may differ by a second
        error = response.json()["error"]
        return response.status_code, error["code"], re.sub(r"\d+", "N", error["message"])

    assert [shape(r) for r in known] == [shape(r) for r in unknown]
    assert [r.status_code for r in known] == [401] * 6 + [429] * 4


def test_the_owner_logs_in_once_the_lock_expires(client, settings, django_user_model):
    lock(settings, account_free=5, base_s=1.0, max_s=1.0)  # a short lock, to wait it out
    django_user_model.objects.create_user(email="victim@example.com", password=PASSWORD)
    ips = many_ips()
    assert {r.status_code for r in attack(client, "victim@example.com", ips, attempts=6)} == {401}
    owner_ip = next(ips)

    deadline = time.monotonic() + 15
    while (response := login(client, "victim@example.com", PASSWORD, owner_ip)).status_code == 429:
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.1)

    assert response.status_code == 200
    assert response.json()["access_token"]
    # Success cleared the account's failures: one more typo is a plain 401, not a lock.
    assert login(client, "victim@example.com", "typo", owner_ip).status_code == 401


def test_one_ip_guessing_many_accounts_is_locked(client, settings):
    lock(settings, account_free=1000, ip_free=20)
    ip = "10.9.9.9"

    statuses = [login(client, f"user{i}@example.com", "guess", ip).status_code for i in range(30)]

    assert statuses[:21] == [401] * 21
    assert statuses[21:] == [429] * 9
    # Another address is not affected.
    assert login(client, "user0@example.com", "guess", "10.8.8.8").status_code == 401


def test_registrations_are_limited_per_address_and_per_ip(client, settings):
    settings.AUTH_REGISTER_RATES_PER_ACCOUNT = ["3/d"]
    settings.AUTH_REGISTER_RATES_PER_IP = ["5/d"]

    def register(email, ip):
        return client.post(
            "/api/v1/auth/register",
            {"email": email, "password": PASSWORD},
            content_type="application/json",
            REMOTE_ADDR=ip,
        )

    same_address = [register("target@example.com", f"10.1.0.{i}").status_code for i in range(4)]
    assert same_address == [201, 400, 400, 429]
    one_ip = [register(f"bulk{i}@example.com", "10.2.0.1").status_code for i in range(6)]
    assert one_ip == [201] * 5 + [429]


def test_password_reset_is_limited_per_address_known_or_not(client, django_user_model):
    django_user_model.objects.create_user(email="victim@example.com", password=PASSWORD)

    def reset(email, n):
        return client.post(
            "/accounts/password/reset/", {"email": email}, REMOTE_ADDR=f"10.3.0.{n}"
        ).status_code

    known = [reset("victim@example.com", n) for n in range(6)]
    unknown = [reset("nobody@example.com", n) for n in range(6)]

    assert known == unknown == [302] * 5 + [429]
