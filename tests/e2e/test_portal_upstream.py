"""The pod form in a real browser with an upstream cloud behind it: the form lists an upstream
H100 offer at our marked-up price, its live price shows it, and the pod started from the form
reaches RUNNING as a container on the (simulated) container cloud; its page reads the
container's log from the provider."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from allauth.account.models import EmailAddress
from django.db import connection
from playwright.sync_api import expect

from apps.core.money import micros_to_usd
from apps.pods.models import Pod, PodStatus
from apps.sourcing import offer_book, services
from apps.sourcing.models import OfferBookEntry, ProvisionedInstance
from tests.e2e.upstream_conftest import net_image  # noqa: F401 - the fixture
from tests.factories import fund
from tests.sourcing.conftest import sims, simulators, sourcing  # noqa: F401 - fixtures
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PASSWORD = "upstream-pass-2026"
GPU = "H100 SXM"


def in_thread(work) -> None:
    """Sourcing work on a thread of its own: Playwright's sync API keeps an event loop
    running on this one, and the sourcing services run their own."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


def tick() -> None:
    in_thread(services.provisioning_tick)  # one poll


def test_the_form_shows_an_upstream_h100_and_starting_it_reaches_running(
    page,
    live_server,
    sourcing,  # noqa: F811 - the fixture
    settings,
    django_user_model,
    net_image,  # noqa: F811 - the fixture
):
    settings.SOURCING_PROVIDERS = {"vast_ai": settings.SOURCING_PROVIDERS["vast_ai"]}
    sourcing["vast_ai"].control.reset(offers=400, seed=5)
    sourcing["vast_ai"].control.configure(boot_seconds=0.3)
    in_thread(offer_book.offer_book_refresh)
    cheapest = (
        OfferBookEntry.objects.filter(gpu_model=GPU, spot=False, gpu_count=1)
        .order_by("price_per_gpu_hour")
        .first()
    )
    assert cheapest.price_per_gpu_hour == -(-cheapest.upstream_price_per_gpu_hour * 125 // 100)
    # the list shows the lowest per-GPU price of any H100 SXM offer ("from")
    lowest = (
        OfferBookEntry.objects.filter(gpu_model=GPU, spot=False)
        .order_by("price_per_gpu_hour")
        .first()
    )
    user = django_user_model.objects.create_user(email="up@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    fund(user, 50_000_000)

    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/dashboard/")

    page.goto(live_server.url + "/pods/new/")
    price = f"${micros_to_usd(lowest.price_per_gpu_hour)}/GPU-h"
    row = page.locator(f'[data-testid=offer-row][data-source=upstream][data-gpu="{GPU}"]').first
    expect(row).to_contain_text("Vast.ai")
    expect(row.get_by_test_id("offer-price")).to_have_text(price)

    page.fill("input[name=name]", "h100-from-the-form")
    page.fill("input[name=image]", net_image)
    page.fill("input[name=command]", "sh -c 'echo started on the cloud; exec sleep 300'")
    page.select_option("select[name=gpu_model]", GPU)
    page.fill("input[name=gpu_count]", "1")
    page.select_option("select[name=cloud]", "upstream")
    page.select_option("select[name=strategy]", "LOWEST_PRICE")
    expect(page.get_by_test_id("price")).to_contain_text(price)
    expect(page.get_by_test_id("price")).to_contain_text("markup included")
    page.get_by_role("button", name="Start pod").click()
    page.wait_for_url(re.compile(r".*/pods/[0-9a-f-]{36}/$"))

    pod = Pod.objects.get(owner=user)
    wait_for(
        lambda: tick() or Pod.objects.filter(pk=pod.pk, status=PodStatus.RUNNING).exists(),
        "the pod RUNNING on the simulated cloud",
        timeout=90,
    )
    instance = ProvisionedInstance.objects.get(pod=pod)
    assert instance.execution_model == "container" and instance.provider == "vast_ai"
    assert Pod.objects.get(pk=pod.pk).price_per_gpu_hour == cheapest.price_per_gpu_hour
    page.reload()
    expect(page.get_by_text("RUNNING").first).to_be_visible()
    page.get_by_role("button", name="Fetch the last lines").click()
    expect(page.get_by_test_id("logs")).to_contain_text("started on the cloud")
