import pytest

from tests.factories import WEBHOOK_SECRET
from tests.fakes.stripe_server import running_stripe


@pytest.fixture(autouse=True)
def _billing_settings(settings):
    # Users are created in nearly every test here; the real hasher costs ~0.25 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_SECRET_KEY = ""
    settings.BILLING_OVERDRAFT_MICROS = 0


@pytest.fixture
def stripe_fake(settings):
    """The fake Stripe API on a free local port, with the SDK pointed at it."""
    with running_stripe() as fake:
        settings.STRIPE_SECRET_KEY = fake.api_key
        settings.STRIPE_API_BASE = fake.base_url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        yield fake


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(
        email="operator@example.com", password="s3cret-pass-3", is_staff=True
    )
