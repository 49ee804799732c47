"""Every customer page, at desktop and phone width, in a real browser: no console error, no CSP
violation, nothing wider than the screen. The pages are filled with data in every state a
fragment can show (pods pending, scheduled, stopped; statements with rows; a key; limits)."""

import re
import uuid
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.utils import timezone
from playwright.sync_api import expect

from apps.accounts.services import api_key_create
from apps.billing.services import spend_limits_set
from apps.pods.models import Pod, PodStatus, UsageRecord
from apps.pods.services import pod_create, pod_stop
from tests.e2e.portal_conftest import DESKTOP, PHONE
from tests.factories import fund, make_node

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "pages-pass-2026"


@pytest.fixture
def customer(django_user_model):
    user = django_user_model.objects.create_user(email="pages@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    fund(user, 50_000_000)
    node = make_node("host-1", gpus=4, price=690_000)
    spec = {"image": "local/busybox:1", "gpu_model": "RTX 4090", "gpu_count": 1}
    placed = pod_create(owner=user, spec={**spec, "name": "placed"}).pod
    stopped = pod_create(owner=user, spec={**spec, "name": "stopped"}).pod
    pod_stop(pod=stopped)
    Pod.objects.filter(pk=stopped.pk).update(status=PodStatus.STOPPED)
    pod_create(owner=user, spec={**spec, "name": "waiting", "gpu_model": "H200"})
    start = timezone.now() - timedelta(minutes=10)
    UsageRecord.objects.create(
        pod=stopped,
        owner=user,
        node=node,
        period_start=start,
        period_end=start + timedelta(minutes=5),
        seconds=300,
        gpu_count=1,
        price_per_gpu_hour=690_000,
        amount=57_500,
    )
    api_key_create(user=user, name="laptop")
    spend_limits_set(user=user, monthly_cap=100_000_000, max_hourly_burn=None)
    return {"user": user, "placed": placed, "stopped": stopped}


def log_in(page, live_server) -> None:
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=login]", "pages@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/dashboard/")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_customer_page_is_clean(new_page, live_server, customer, browser_guard, viewport):
    page = new_page(viewport=viewport)
    log_in(page, live_server)
    placed, stopped = customer["placed"], customer["stopped"]
    paths = [
        "/",
        "/dashboard/",
        "/dashboard/?period=week",
        "/dashboard/?period=month",
        "/pods/",
        "/pods/?scope=active",
        "/pods/new/",
        f"/pods/{placed.pk}/",
        f"/pods/{stopped.pk}/",
        "/billing/topup/",
        "/billing/topup/?cancelled=1",
        "/billing/topup/done?session_id=cs_test_unknown",
        "/billing/limits/",
        "/billing/transactions/",
        "/billing/transactions/?kind=USAGE",
        "/billing/usage/",
        "/api-keys/",
        "/accounts/email/",
        "/accounts/password/change/",
        "/accounts/logout/",
    ]
    for path in paths:
        response = page.goto(live_server.url + path)
        assert response.status == 200, path
        page.wait_for_load_state("load")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{path} is {width}px wide"
        browser_guard.check()  # name the page that misbehaved

    # A wrong address is a page too (the browser logs the 404 status itself).
    browser_guard.allow(r"status of 404")
    response = page.goto(f"{live_server.url}/pods/{uuid.uuid4()}/")
    assert response.status == 404 and page.get_by_role("heading", name="Not found").is_visible()


def test_pod_form_prices_the_chosen_gpus_live(page, live_server, customer):
    log_in(page, live_server)
    page.goto(live_server.url + "/pods/new/")
    price = page.get_by_test_id("price")

    page.select_option("select[name=gpu_model]", "RTX 4090")
    page.fill("input[name=gpu_count]", "2")
    expect(price).to_have_text(re.compile(r"^\$1\.38/h \(2 × \$0\.69/GPU-h\) · \d+ free"))
    page.fill("input[name=gpu_count]", "8")
    expect(price).to_contain_text("no node has 8 free: it will wait")
    page.select_option("select[name=gpu_model]", "H200")
    expect(price).to_have_text(re.compile(r"^No free H200 right now"))
    page.select_option("select[name=gpu_model]", "CPU")
    expect(page.locator("input[name=gpu_count]")).to_have_value("0")
