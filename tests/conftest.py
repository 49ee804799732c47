import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _isolated_rate_limits(request):
    """Most tests are not about rate limits: give them room. Rate-limit tests set their own
    limits, and the cache starts empty, so counters never leak between tests.
    (The agent's tests run without Django too: then there is nothing to set.)"""
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    settings = request.getfixturevalue("settings")
    settings.RATE_LIMITS = ["100000/m", "1000000/h"]
    # The cache also holds allauth's own rate limits; tests use a Redis database of their own.
    cache.clear()
    yield


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(
        email="owner@example.com", password="s3cret-pass-1"
    )


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(
        email="other@example.com", password="s3cret-pass-2"
    )


@pytest.fixture
def owner_client(api_client, user):
    """`api_client` authenticated as `user`, with money on the wallet (new work needs a
    balance)."""
    from tests.factories import fund

    fund(user, 100_000_000)
    api_client.force_authenticate(user)
    return api_client
