import uuid

import pytest

from apps.providers.models import Provider
from apps.providers.services import provider_register
from tests.factories import CRYPTO
from tests.fakes.paypal_server import running_paypal


@pytest.fixture(autouse=True)
def _provider_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYOUT_HOLD_SECONDS = 0
    settings.PAYOUT_MINIMUM_MICROS = 10_000_000
    settings.PAYPAL_CLIENT_ID = ""
    settings.PAYPAL_CLIENT_SECRET = ""


@pytest.fixture
def make_provider(django_user_model):
    def make(email: str | None = None, **kwargs) -> Provider:
        user = django_user_model.objects.create_user(
            email=email or f"p-{uuid.uuid4().hex[:8]}@example.com", password="pw-123456789"
        )
        kwargs.setdefault("payout_method", "CRYPTO")
        kwargs.setdefault("payout_details", dict(CRYPTO))
        return provider_register(owner=user, display_name=email or "GPU farm", **kwargs).provider

    return make


@pytest.fixture
def provider(make_provider):
    return make_provider("farm@example.com")


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(
        email="operator@example.com", password="pw-123456789", is_staff=True
    )


@pytest.fixture
def paypal(settings):
    with running_paypal() as fake:
        settings.PAYPAL_CLIENT_ID = fake.client_id
        settings.PAYPAL_CLIENT_SECRET = fake.client_secret
        settings.PAYPAL_API_BASE = fake.base_url
        yield fake
