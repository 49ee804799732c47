"""What the README promises of `make run`'s top-ups, in a real browser: the portal's Top up
opens the Stripe Checkout stand-in, a declined test card is refused on its page, the 4242 card
pays, and the customer lands back on /billing/topup/done with the credit already there (the
stand-in delivered the signed webhook). The real `stripe` SDK made the session."""

import pytest

from apps.billing.stripe_standin import RunningStandin
from tests.e2e.portal_conftest import screenshot
from tests.e2e.test_portal_auth import sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "whsec_readme_checkout_0123456789"
STRIPE_KEY = "sk_test_readme_checkout_0123456789"


def test_paying_on_the_checkout_standin_in_a_browser(page, live_server, settings):
    with RunningStandin(
        api_key=STRIPE_KEY,
        webhook_secret=WEBHOOK_SECRET,
        webhook_url=f"{live_server.url}/webhooks/stripe",
    ) as standin:
        settings.STRIPE_SECRET_KEY = STRIPE_KEY
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = standin.url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        settings.STRIPE_CHECKOUT_SUCCESS_URL = (
            live_server.url + "/billing/topup/done?session_id={CHECKOUT_SESSION_ID}"
        )
        settings.STRIPE_CHECKOUT_CANCEL_URL = live_server.url + "/billing/topup/?cancelled=1"

        sign_up(page, live_server, "demo@example.com")
        assert page.get_by_test_id("balance").inner_text() == "$0.00"
        page.get_by_role("link", name="Top up", exact=True).first.click()
        page.fill("input[name=amount_usd]", "25")
        page.get_by_role("button", name="Continue to payment").click()
        page.wait_for_url(f"{standin.url}/c/pay/*")
        assert page.get_by_text("$25.00", exact=True).is_visible()

        page.fill("input[name=card_number]", "4000 0000 0000 0002")
        page.get_by_role("button", name="Pay $25.00").click()
        page.get_by_role("alert").wait_for()
        assert page.get_by_role("alert").inner_text() == "Your card was declined."
        assert standin.standin.deliveries == []

        page.fill("input[name=card_number]", "4242 4242 4242 4242")
        page.fill("input[name=expiry]", "12 / 34")
        page.fill("input[name=cvc]", "123")
        screenshot(page, "topup-checkout-standin")
        page.get_by_role("button", name="Pay $25.00").click()
        page.wait_for_url("**/billing/topup/done?session_id=*")
        page.get_by_test_id("topup-credited").wait_for()
        page.goto(live_server.url + "/dashboard/")
        assert page.get_by_test_id("balance").inner_text() == "$25.00"
        [(_, status)] = standin.standin.deliveries
        assert status == 200
