"""The real clients against the simulators over HTTP: every operation of the adapter
interface and every error class of fact sheet §4, per provider."""

import socket

import httpx
import pytest

from apps.sourcing.adapters import ADAPTERS
from apps.sourcing.adapters.base import (
    AccountError,
    AmbiguousCreateError,
    CapacityError,
    CredentialsError,
    ExecutionModel,
    FatalError,
    InstanceConfig,
    InstanceState,
    MalformedResponseError,
    Offer,
    OfferFilters,
    PortSpec,
    RetryableError,
    RetryBudget,
    RetryPolicy,
    WorkloadSpec,
)
from tests.e2e.upstream_conftest import docker_client, net_image  # noqa: F401 - fixtures
from tests.sourcing.conftest import PROVIDERS, Sleeps, make_adapter
from tests.support import wait_for_async

pytestmark = pytest.mark.asyncio

CONFIG = InstanceConfig(label="gco-adapter-test", ssh_key_name="gco", startup_script="true")


async def _first_offer(adapter, gpu_model=None) -> Offer:
    offers = await adapter.list_offers(OfferFilters(gpu_model=gpu_model))
    assert offers, "the simulated market has offers"
    return offers[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lifecycle_config(name: str, image: str, port: int) -> InstanceConfig:
    """A VM cloud runs a startup script; a container cloud runs the workload itself."""
    if ADAPTERS[name].execution_model == ExecutionModel.VM:
        return CONFIG
    return InstanceConfig(
        label=CONFIG.label,
        workload=WorkloadSpec(
            image=image,
            command=("sh", "-c", f"exec httpd -f -p {port} -h /tmp"),
            env={"GREETING": "hi"},
            ports=(PortSpec(port),),
        ),
    )


async def _wait_running(adapter, instance_id):
    async def running():
        instance = await adapter.get_instance(instance_id)
        return instance if instance.state == InstanceState.RUNNING else None

    return await wait_for_async(running, f"instance {instance_id} RUNNING")


def _sim_view(sim, instance_id: str) -> dict:
    """The simulator's own view of the instance (its container, its process)."""
    return next(i for i in sim.control.instances() if str(i["id"]) == instance_id)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_full_lifecycle_over_http(sims, name, net_image):  # noqa: F811 - the fixture
    # given a market
    adapter = make_adapter(sims[name], name)
    offers = await adapter.list_offers(OfferFilters())
    assert offers and all(o.provider == name and o.price_per_hour > 0 for o in offers)
    assert all(o.gpu_model and o.vram_gb > 0 for o in offers)  # canonical names only
    offer = offers[0]
    # when we rent, wait, list and terminate
    port = _free_port()
    config = lifecycle_config(name, net_image, port)
    created = await adapter.create_instance(offer, config)
    assert created.state == InstanceState.CREATING and created.label == CONFIG.label
    first = await adapter.get_instance(created.instance_id)
    assert first.state in (InstanceState.CREATING, InstanceState.STARTING, InstanceState.RUNNING)
    running = await _wait_running(adapter, created.instance_id)
    assert running.gpu_model == offer.gpu_model and running.public_ip
    if config.workload is None:
        assert running.ssh_port
    else:  # the container's port, from the provider's port mapping
        assert running.endpoints[f"{port}/tcp"] == f"127.0.0.1:{port}"
    assert "\n" not in running.public_ip  # Vast's trailing newline is stripped
    listed = await adapter.list_instances()
    assert [i.instance_id for i in listed] == [created.instance_id]
    assert (await adapter.find_by_label(CONFIG.label)).instance_id == created.instance_id
    await adapter.terminate_instance(created.instance_id)
    # then it is gone, and terminating again is not an error (ALREADY GONE)
    assert await adapter.list_instances() == []
    await adapter.terminate_instance(created.instance_id)
    from apps.sourcing.adapters.base import AlreadyGoneError

    with pytest.raises(AlreadyGoneError):
        await adapter.get_instance(created.instance_id)
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_filters_by_gpu_model_and_price(sims, name):
    adapter = make_adapter(sims[name], name)
    every = await adapter.list_offers(OfferFilters())
    model = every[0].gpu_model
    some = await adapter.list_offers(OfferFilters(gpu_model=model))
    assert some and {o.gpu_model for o in some} == {model}
    cap = min(o.price_per_gpu_hour for o in some)
    assert all(
        o.price_per_gpu_hour <= cap
        for o in await adapter.list_offers(
            OfferFilters(gpu_model=model, max_price_per_gpu_hour=cap)
        )
    )
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_capacity_error(sims, name):
    adapter = make_adapter(sims[name], name)
    offer = await _first_offer(adapter)
    sims[name].control.fault("create", "capacity")
    with pytest.raises(CapacityError):
        await adapter.create_instance(offer, CONFIG)
    assert sims[name].control.stats()["create"] == 1  # no retry of a capacity error
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_retryable_5xx_is_retried_with_backoff_then_succeeds(sims, name):
    sleeps = Sleeps()
    adapter = make_adapter(
        sims[name], name, sleeps=sleeps, policy=RetryPolicy(timeout=2, max_attempts=3)
    )
    sims[name].control.fault("list", "status", status=503, count=2)
    assert await adapter.list_instances() == []
    assert sims[name].control.stats()["list"] == 3
    assert len(sleeps) == 2 and all(0 < s <= 5.0 for s in sleeps)
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_rate_limited_429_is_retryable(sims, name):
    adapter = make_adapter(sims[name], name, policy=RetryPolicy(timeout=2, max_attempts=1))
    sims[name].control.fault("offers", "rate_limit")
    with pytest.raises(RetryableError) as caught:
        await adapter.list_offers(OfferFilters())
    assert caught.value.status == 429
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_create_is_resent_after_503_but_never_after_a_lost_answer(sims, name):
    adapter = make_adapter(sims[name], name)
    offer = await _first_offer(adapter)
    sims[name].control.fault("create", "status", status=503, count=1)
    created = await adapter.create_instance(offer, CONFIG)  # 503: not processed, re-sent
    assert sims[name].control.stats()["create"] == 2
    assert created.instance_id
    other = (await adapter.list_offers(OfferFilters()))[-1]
    sims[name].control.fault("create", "lost_answer")
    with pytest.raises(AmbiguousCreateError):
        await adapter.create_instance(other, InstanceConfig(label="gco-lost", ssh_key_name="gco"))
    assert sims[name].control.stats()["create"] == 3  # not re-sent
    found = await adapter.find_by_label("gco-lost")  # it was created upstream
    assert found is not None
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_timeout_on_a_read_is_retryable(sims, name):
    adapter = make_adapter(sims[name], name, policy=RetryPolicy(timeout=0.3, max_attempts=2))
    sims[name].control.fault("list", "timeout", seconds=2)
    assert await adapter.list_instances() == []  # first attempt timed out, the retry answered
    assert sims[name].control.stats()["list"] == 2
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_bad_key_is_a_credentials_error(sims, name):
    adapter = make_adapter(sims[name], name, api_key="wrong")
    with pytest.raises(CredentialsError):
        await adapter.list_instances()
    assert sims[name].control.stats()["list"] == 1  # never retried
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_account_and_fatal_errors_over_http(sims, name):
    adapter = make_adapter(sims[name], name)
    offer = await _first_offer(adapter)
    sims[name].control.fault("create", "account")
    with pytest.raises(AccountError):
        await adapter.create_instance(offer, CONFIG)
    sims[name].control.fault("create", "invalid")
    with pytest.raises(FatalError) as caught:
        await adapter.create_instance(offer, CONFIG)
    assert not isinstance(caught.value, CredentialsError)
    assert sims[name].control.stats()["create"] == 2  # neither is retried
    assert await adapter.list_instances() == []  # nothing was created
    await adapter.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_malformed_body(sims, name):
    adapter = make_adapter(sims[name], name)
    sims[name].control.fault("offers", "malformed")
    with pytest.raises(MalformedResponseError):
        await adapter.list_offers(OfferFilters())
    await adapter.aclose()


async def test_retry_budget_stops_retries_during_an_outage(sims):
    budget = RetryBudget(ratio=0.1, initial=1)
    adapter = make_adapter(sims["vast_ai"], "vast_ai", budget=budget, policy=RetryPolicy(timeout=2))
    sims["vast_ai"].control.fault("list", "status", status=503, count=-1)
    for _ in range(10):
        with pytest.raises(RetryableError):
            await adapter.list_instances()
    # 10 requests with up to 3 attempts each would be 30 calls; the budget allowed 1 + 10×0.1
    assert sims["vast_ai"].control.stats()["list"] <= 12
    assert budget.retries_refused >= 8
    await adapter.aclose()


# --- provider-specific wire quirks ---


async def test_vast_consumed_offer_is_a_capacity_error(sims):
    adapter = make_adapter(sims["vast_ai"], "vast_ai")
    offer = await _first_offer(adapter)
    await adapter.create_instance(offer, CONFIG)
    with pytest.raises(CapacityError) as caught:  # same ask id again: no_such_ask
        await adapter.create_instance(offer, InstanceConfig(label="gco-second"))
    assert caught.value.status == 404 and "no_such_ask" in caught.value.code
    assert offer.offer_id not in {o.offer_id for o in await adapter.list_offers(OfferFilters())}
    await adapter.aclose()


async def test_vast_stale_offer_listed_but_gone(sims):
    adapter = make_adapter(sims["vast_ai"], "vast_ai")
    taken = await _first_offer(adapter)
    await adapter.create_instance(taken, CONFIG)
    sims["vast_ai"].control.fault("offers", "stale_offer")
    listed = await adapter.list_offers(OfferFilters())
    assert taken.offer_id in {o.offer_id for o in listed}  # the cached view still shows it
    with pytest.raises(CapacityError):
        await adapter.create_instance(
            next(o for o in listed if o.offer_id == taken.offer_id), CONFIG
        )
    await adapter.aclose()


async def test_vast_list_paginates_25_at_a_time(sims):
    adapter = make_adapter(sims["vast_ai"], "vast_ai")
    for _ in range(30):
        sims["vast_ai"].control.plant(gpu_model="RTX 4090", label="planted")
    assert len(await adapter.list_instances()) == 30
    assert sims["vast_ai"].control.stats()["list"] == 2
    await adapter.aclose()


async def test_vast_bad_args_is_fatal_and_low_credit_is_account(sims):
    adapter = make_adapter(sims["vast_ai"], "vast_ai")
    offer = await _first_offer(adapter)
    with pytest.raises(FatalError):
        await adapter.create_instance(offer, InstanceConfig(label="x", image=""))
    response = httpx.Response(
        400, json={"success": False, "error": "insufficient_credit", "msg": "low"}
    )
    from apps.sourcing.adapters.vast_ai.mapping import classify

    assert isinstance(classify(response, "create"), AccountError)
    await adapter.aclose()


async def test_runpod_errors_inside_http_200(sims):
    adapter = make_adapter(sims["runpod"], "runpod", policy=RetryPolicy(timeout=2, max_attempts=1))
    offer = await _first_offer(adapter)
    sims["runpod"].control.exhaust(offer.gpu_model)
    with pytest.raises(CapacityError) as caught:
        await adapter.create_instance(offer, CONFIG)
    assert caught.value.status == 200 and caught.value.code == "SUPPLY_CONSTRAINT"
    # INTERNAL_SERVER_ERROR inside a 200 to a create: maybe processed → ambiguous, not re-sent
    sims["runpod"].control.reset()
    offer = await _first_offer(adapter)
    sims["runpod"].control.fault("create", "graphql_error")
    with pytest.raises(AmbiguousCreateError):
        await adapter.create_instance(offer, CONFIG)
    assert sims["runpod"].control.stats()["create"] == 1
    await adapter.aclose()


async def test_runpod_graphql_accepts_inline_literals_and_rejects_unknown_fields(sims):
    sim = sims["runpod"]
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    inline = """mutation { podFindAndDeployOnDemand(input: {
        name: "gco-inline", imageName: "busybox", gpuTypeId: "NVIDIA GeForce RTX 4090",
        gpuCount: 1, cloudType: SECURE, env: [{ key: "A", value: "b\\"c" }] }) { id env } }"""
    async with httpx.AsyncClient(base_url=sim.url, headers=headers) as http:
        answer = (await http.post("/graphql", json={"query": inline})).json()
        created = answer["data"]["podFindAndDeployOnDemand"]
        assert created["env"] == ['A=b"c'] and set(created) == {"id", "env"}
        bad = await http.post(
            "/graphql",
            json={"query": "mutation { podFindAndDeployOnDemand(input: {bogus: 1}) { id } }"},
        )
        assert bad.status_code == 400
        unauthorised = await http.post(
            "/graphql",
            json={"query": "{ gpuTypes { id } }"},
            headers={"Authorization": "Bearer nope"},
        )
        assert unauthorised.status_code == 401


async def test_runpod_spot_create_goes_through_pod_rent_interruptable(sims):
    adapter = make_adapter(sims["runpod"], "runpod")
    offer = (await adapter.list_offers(OfferFilters(spot=True)))[0]
    created = await adapter.create_instance(
        offer, InstanceConfig(label="gco-spot", bid_per_gpu_hour=offer.price_per_gpu_hour)
    )
    assert created.instance_id
    await adapter.aclose()


async def test_runpod_403_is_account(sims):
    from apps.sourcing.adapters.runpod.mapping import classify

    assert isinstance(
        classify(httpx.Response(403, json={"detail": "access denied"}), "get"), AccountError
    )


async def test_lambda_needs_exactly_one_existing_ssh_key(sims):
    adapter = make_adapter(sims["lambda_labs"], "lambda_labs")
    offer = await _first_offer(adapter)
    with pytest.raises(FatalError) as caught:
        await adapter.create_instance(offer, InstanceConfig(label="x", ssh_key_name="missing"))
    assert caught.value.code == "global/object-does-not-exist"
    with pytest.raises(FatalError) as caught:
        await adapter.create_instance(offer, InstanceConfig(label="x"))
    assert caught.value.code == "global/invalid-parameters"
    await adapter.aclose()


async def test_lambda_launch_rate_limit_and_capacity(sims):
    sim = sims["lambda_labs"]
    adapter = make_adapter(sim, "lambda_labs", policy=RetryPolicy(timeout=2, max_attempts=1))
    offers = await adapter.list_offers(OfferFilters())
    sim.control.configure(launch_interval=60)
    await adapter.create_instance(offers[0], CONFIG)
    with pytest.raises(RetryableError) as caught:
        await adapter.create_instance(offers[1], InstanceConfig(label="b", ssh_key_name="gco"))
    assert caught.value.status == 429
    sim.control.configure(launch_interval=0)
    sim.control.exhaust(None)
    with pytest.raises(CapacityError) as caught:
        await adapter.create_instance(offers[1], InstanceConfig(label="b", ssh_key_name="gco"))
    assert caught.value.code == "instance-operations/launch/insufficient-capacity"
    assert await adapter.list_offers(OfferFilters()) == []  # no region has capacity left
    await adapter.aclose()


async def test_lambda_quota_is_account(sims):
    from apps.sourcing.adapters.lambda_labs.mapping import classify

    body = {"error": {"code": "global/quota-exceeded", "message": "quota"}}
    assert isinstance(classify(httpx.Response(400, json=body), "create"), AccountError)


@pytest.mark.parametrize("name", ["vast_ai", "runpod"])
async def test_a_container_cloud_runs_the_image_it_is_given_not_a_script(sims, name):
    """The rental is a container of the image in the create call: the machine-style path
    (an agent installer in a startup script, on the default CUDA image) runs no process, and
    an image this machine does not have never comes up (Vast: OCI failure; RunPod: RUNNING
    with no runtime, as its pods sit)."""
    adapter = make_adapter(sims[name], name)
    offer = await _first_offer(adapter)
    created = await adapter.create_instance(
        offer, InstanceConfig(label="gco-legacy", startup_script="sleep 30")
    )
    view = await wait_for_async(
        lambda: (v := _sim_view(sims[name], created.instance_id))["container"] == "failed" and v,
        "the container to fail",
    )
    assert not view["process_alive"]
    # read after the failure (read before it, the state could still be the one before it)
    instance = await adapter.get_instance(created.instance_id)
    assert instance.state == (InstanceState.FAILED if name == "vast_ai" else InstanceState.STARTING)
    await adapter.terminate_instance(created.instance_id)
    await adapter.aclose()


async def test_startup_script_runs_when_the_machine_is_up(sims):
    name = "lambda_labs"  # the VM cloud: user_data runs on the machine
    adapter = make_adapter(sims[name], name)
    offer = await _first_offer(adapter)
    script = "nvidia-smi --query-gpu=name --format=csv > gpus.txt; sleep 30"
    created = await adapter.create_instance(
        offer, InstanceConfig(label="gco-boot", ssh_key_name="gco", startup_script=script)
    )
    await _wait_running(adapter, created.instance_id)
    await wait_for_async(
        lambda: _sim_view(sims[name], created.instance_id)["process_alive"],
        "the startup script running",
    )
    await adapter.terminate_instance(created.instance_id)
    # the machine is gone, and its processes with it
    await wait_for_async(
        lambda: not _sim_view(sims[name], created.instance_id)["process_alive"],
        "the startup script's process gone",
    )
    await adapter.aclose()
