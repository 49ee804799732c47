"""A stateful property test of the money path end to end: Stripe top-ups (new, redelivered, a
second event for a paid session, through the signed webhook or the service), pods created (or
refused by the spend rules), placed, started (heartbeat report or start_pod ack), stopped,
exiting, failing to start, agents acking stops, nodes heartbeating, going silent, being marked
offline (restartable pods rescheduled, possibly onto the node they left once it is back), and
metering ticks run once, late, twice at the same instant, as a heartbeat begins, or killed in
their k-th chunk (by the database connection) before or after its writes. After every step:

- every transaction sums to zero and every cached balance is the sum of its entries;
- every wallet holds its top-ups (once per Stripe session) less its usage, never below the
  overdraft floor (0, or BILLING_OVERDRAFT_MICROS in some runs) nor past a monthly cap;
- each pod's usage records run contiguously from its container's start on each node it stayed
  on (no gap, no overlap: no interval charged twice), never past its stop, its container's
  end, or the last heartbeat its node had sent when the record was written; each charges
  exactly the price × GPUs × seconds of its stay to date rounded once, less what came before
  (no drift whatever the prices), less only where the floor or cap bound (the pod then stops);
  the provider shares carry their remainder the same way.

Time is simulated: `django.utils.timezone.now` returns the machine's clock (two days ago at
midnight, then moved on only by the rules), so a stop, a heartbeat, a container report and a
tick all agree on "now". Pod ids come from the example so a replay meters in the same order."""

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection, transaction
from django.db.models import Sum
from django.test import Client, TestCase, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.accounts.models import User
from apps.billing.models import (
    AccountKind,
    Entry,
    LedgerAccount,
    SpendLimit,
    Transaction,
    TransactionKind,
)
from apps.billing.services import ledger_check, topup_from_checkout_event
from apps.core.gpu_models import CPU_MODEL
from apps.core.money import prorate_increment, split_with_carry
from apps.nodes import services as node_services
from apps.nodes.models import CommandStatus, CommandType, Node, NodeCommand, NodeStatus
from apps.pods.metering import BILLABLE, meter_tick
from apps.pods.models import (
    ACTIVE_STATUSES,
    ON_NODE_STATUSES,
    Pod,
    PodEvent,
    PodStatus,
    UsageRecord,
)
from apps.pods.scheduler import schedule_pending
from apps.pods.services import SpendRefusedError, pod_create, pod_stop
from tests.factories import (
    POD,
    WEBHOOK_SECRET,
    ack,
    deliver,
    make_node,
    paid_event,
    report_container,
)
from tests.fakes.stripe_server import checkout_event

USERS = 2
FEE_PERCENT = 20  # PROVIDER_DEFAULT_FEE_PERCENT: the community node's platform cut
# (hostname, GPUs, community). Each example draws the nodes' prices per GPU-hour: catalogue
# prices or arbitrary ones (most do not divide into whole micro-dollars per second, so a
# charge rounded per interval would drift); distinct prices keep placement deterministic.
NODES = (
    ("plat-a", 2, False),
    ("comm-c", 1, True),
    ("plat-b", 2, False),
)
CATALOGUE = (3_590_000, 2_490_000, 2_190_000, 1_690_000, 1_490_000, 990_000, 690_000, 390_000)
node_prices = st.lists(
    st.one_of(st.sampled_from(CATALOGUE), st.integers(300_000, 5_000_000)),
    min_size=len(NODES),
    max_size=len(NODES),
    unique=True,
)
HEARTBEAT_S = 10
OFFLINE_AFTER = timedelta(seconds=HEARTBEAT_S * 3)
UNACKED = (CommandStatus.QUEUED, CommandStatus.DELIVERED)

picks = st.integers(min_value=0, max_value=31)  # an index into whatever is eligible
chunks = st.sampled_from([1, 2, 10_000])
beating = st.sampled_from([True, True, False])  # the online nodes heartbeat meanwhile
elapsed = st.one_of(  # milliseconds
    st.sampled_from([1_000, 10_000, 45_000, 60_000, 300_000]), st.integers(0, 300_000)
)
pod_specs = st.tuples(
    st.integers(0, USERS - 1),  # owner
    st.sampled_from([1, 1, 2, 2, 0]),  # GPUs
    st.booleans(),  # restartable
    st.sampled_from(["report", "report", "ack", "later"]),  # how its container starts
    st.integers(0, 2**64 - 1),  # its id's high bits
)


class WorkerKilledError(OperationalError):
    """The metering worker's connection died: the database rolls its open transaction back
    (a DatabaseError, so Django rolls the chunk's savepoint back as the server would)."""


class ChunkKiller:
    """A `connection.execute_wrapper` that kills the metering tick in its k-th chunk: at the
    chunk's first statement (its pods' lock: before it wrote anything), or at the statement
    that commits it (after it wrote everything). The tick is driven through its public entry
    point and the failure comes from the database connection, as a killed worker's would."""

    CHUNK = re.compile(r'FROM "pods_pod" .*"pods_pod"\."id" >= .*"pods_pod"\."id" <= ', re.S)
    SAVEPOINT = re.compile(r'^(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT) "?(\w+)"?')

    def __init__(self, k: int, after_writes: bool) -> None:
        self.k, self.after_writes = k, after_writes
        self.chunks = 0
        self.open: list[str] = []  # savepoints open now, innermost last
        self.doomed: str | None = None  # the k-th chunk's savepoint

    def __call__(self, execute, sql, params, many, context):
        savepoint = self.SAVEPOINT.match(sql)
        if savepoint and savepoint[1] == "RELEASE SAVEPOINT" and savepoint[2] == self.doomed:
            self.doomed = None  # once: Django then rolls the savepoint back and releases it
            raise WorkerKilledError("the worker died before the chunk committed")
        if not savepoint and self.CHUNK.search(sql):
            self.chunks += 1
            if self.chunks == self.k:
                if not self.after_writes:
                    raise WorkerKilledError("the worker died in the chunk, before its writes")
                self.doomed = self.open[-1]
        result = execute(sql, params, many, context)
        if savepoint and savepoint[1] == "SAVEPOINT":
            self.open.append(savepoint[2])
        elif savepoint and savepoint[2] in self.open:
            del self.open[self.open.index(savepoint[2]) :]
        return result


@dataclass
class Placement:
    """One stay of a pod on a node, from placement to leaving it."""

    node_id: uuid.UUID
    placed_at: datetime
    started_at: datetime | None = None
    # Nothing of this stay may be charged past this: the stop, the container's end, the
    # node's last heartbeat before it was marked offline.
    limit: datetime | None = None
    closed: bool = False

    def cap(self, moment: datetime) -> None:
        self.limit = moment if self.limit is None else min(self.limit, moment)


@dataclass
class PodModel:
    owner: int
    placements: list[Placement] = field(default_factory=list)


class MoneyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each example runs in a savepoint that teardown rolls back: examples never mix.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        # Two days ago at midnight: in the past, so nothing real-time ever binds.
        self.now = (timezone.now() - timedelta(days=2)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        self._clock = mock.patch("django.utils.timezone.now", new=lambda: self.now)
        self._clock.start()
        self._overridden = None
        self.overdraft = 0
        self.client = Client()
        self.users = [User.objects.create_user(email=f"m{i}@example.com") for i in range(USERS)]
        self.nodes: list[Node] = []
        self.price: dict[uuid.UUID, int] = {}
        self.community: set[uuid.UUID] = set()
        for hostname, gpus, community in NODES:
            node = make_node(hostname, gpus=gpus, provider_id=uuid.uuid4() if community else None)
            self.nodes.append(node)
            if community:
                self.community.add(node.pk)
        self.credited = [0] * USERS
        self.credited_sessions: set[str] = set()
        self.events: list[dict] = []
        self.pods: dict[uuid.UUID, PodModel] = {}
        self.status: dict[uuid.UUID, str] = {}  # as of the end of the last step
        self.node_status: dict[uuid.UUID, str] = {}
        self.last_event_id = 0
        self.last_record_id = 0
        self.killed = False  # the step killed a tick (its exhausted pods were not stopped)
        self.month_allowed: list[int | None] = [None] * USERS  # usage allowed by the cap
        self.max_burn: list[int | None] = [None] * USERS

    def teardown(self) -> None:
        self._clock.stop()
        if self._overridden is not None:
            self._overridden.disable()
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    @initialize(
        overdraft=st.sampled_from([0, 0, 250_000]),
        opening_cents=st.lists(st.integers(1, 50), min_size=USERS, max_size=USERS),
        limits=st.lists(
            st.tuples(
                st.sampled_from([None, None, None, 50_000, 500_000]),  # monthly cap
                st.sampled_from([None, None, None, 400_000, 1_000_000]),  # max hourly burn
            ),
            min_size=USERS,
            max_size=USERS,
        ),
        pods=st.lists(pod_specs, max_size=3),
        prices=node_prices,
    )
    def open_accounts(
        self,
        prices: list[int],
        overdraft: int,
        opening_cents: list[int],
        limits: list[tuple[int | None, int | None]],
        pods: list[tuple[int, int, bool, str, int]],
    ) -> None:
        for node, price in zip(self.nodes, prices, strict=True):
            Node.objects.filter(pk=node.pk).update(price_per_gpu_hour=price)
            self.price[node.pk] = price
        self.overdraft = overdraft
        self._overridden = override_settings(BILLING_OVERDRAFT_MICROS=overdraft)
        self._overridden.enable()
        for who, (monthly_cap, max_hourly_burn) in enumerate(limits):
            if monthly_cap is not None or max_hourly_burn is not None:
                SpendLimit.objects.create(
                    user=self.users[who], monthly_cap=monthly_cap, max_hourly_burn=max_hourly_burn
                )
            self.month_allowed[who] = monthly_cap
            self.max_burn[who] = max_hourly_burn
        for who, cents in enumerate(opening_cents):
            paid = paid_event(user=self.users[who], cents=cents)
            self.events.append(paid)
            self._deliver(paid, via_webhook=False)
        for pod in pods:
            self._create_and_start(*pod)
        self._sync()

    # -- helpers ----------------------------------------------------------------------------

    def _our_pods(self, *statuses):
        return Pod.objects.filter(pk__in=list(self.pods), status__in=statuses)

    def _has(self, *statuses) -> bool:
        return any(status in statuses for status in self.status.values())

    def _pick(self, i: int, *statuses) -> Pod:
        """The i-th (cyclically) of our pods in one of `statuses`, in creation order."""
        found = self._our_pods(*statuses).select_related("node").in_bulk()
        rows = [found[pk] for pk in self.pods if pk in found]
        return rows[i % len(rows)]

    def _current(self, pod: Pod) -> Placement | None:
        placements = self.pods[pod.pk].placements
        if placements and not placements[-1].closed:
            return placements[-1]
        return None

    def _node(self, i: int) -> Node:
        return Node.objects.get(pk=self.nodes[i % len(self.nodes)].pk)

    def _beat(self, node: Node) -> None:
        with TestCase.captureOnCommitCallbacks(execute=True):
            node_services.node_heartbeat(node=node, gpus=[], system={}, containers=[])

    def _deliver(self, paid: dict, via_webhook: bool) -> None:
        """Deliver a Stripe event (signed, through the webhook, or straight to the service):
        it credits its session's amount the first time that session is seen, never again."""
        if via_webhook:
            response = deliver(self.client, paid)
            assert response.status_code == 200, response.content
            credited = response.json()["credited"]
        else:
            credited = topup_from_checkout_event(event=paid) is not None
        session = paid["data"]["object"]
        first_time = session["id"] not in self.credited_sessions
        assert credited is first_time, ("credited twice or not at all", paid["id"], session["id"])
        if first_time:
            self.credited_sessions.add(session["id"])
            who = next(
                i for i, u in enumerate(self.users) if str(u.pk) == session["metadata"]["user_id"]
            )
            self.credited[who] += session["amount_total"] * 10_000

    def _usage(self, user: User) -> int:
        return UsageRecord.objects.filter(owner=user).aggregate(s=Sum("amount"))["s"] or 0

    def _should_refuse(self, who: int) -> bool:
        """pod_create's spend rules, from the model: no balance above the floor, the monthly
        cap reached, or already at the maximum hourly burn."""
        user = self.users[who]
        balance = self.credited[who] - self._usage(user)
        limit = SpendLimit.objects.filter(user=user).first()
        burn = sum(
            p.hourly_rate
            for p in Pod.objects.filter(owner=user, status__in=ON_NODE_STATUSES).exclude(
                status=PodStatus.STOPPING
            )
        )
        return (
            balance + self.overdraft <= 0
            or (
                limit is not None
                and limit.monthly_cap is not None
                and self._usage(user) >= limit.monthly_cap
            )
            or (
                limit is not None
                and limit.max_hourly_burn is not None
                and burn >= limit.max_hourly_burn
            )
        )

    def _sync(self) -> None:
        """Follow the pods' status history (PodEvent.at is simulated time) into the model."""
        events = PodEvent.objects.filter(pk__gt=self.last_event_id).order_by("pk")
        for change in events.select_related("pod"):
            self.last_event_id = change.pk
            model = self.pods.get(change.pod_id)
            if model is None:
                continue
            pod = change.pod
            if change.to_status == PodStatus.SCHEDULED:
                assert pod.node_id is not None
                if any(p.node_id == pod.node_id for p in model.placements):
                    event("a pod placed again on a node it ran on")
                model.placements.append(Placement(node_id=pod.node_id, placed_at=change.at))
            elif change.to_status == PodStatus.RUNNING:
                placement = model.placements[-1]
                assert not placement.closed and placement.started_at is None
                placement.started_at = pod.started_at
            elif change.to_status == PodStatus.PENDING and change.from_status != PodStatus.PENDING:
                event("a pod sent back to PENDING by its node's loss")
                model.placements[-1].closed = True
            elif change.to_status in (PodStatus.STOPPED, PodStatus.FAILED) and model.placements:
                model.placements[-1].closed = True
        self.status = dict(Pod.objects.filter(pk__in=list(self.pods)).values_list("pk", "status"))
        self.node_status = dict(Node.objects.values_list("pk", "status"))

    def _after(self, *, killed: bool = False) -> None:
        self.killed = killed
        self._sync()

    # -- money in ---------------------------------------------------------------------------

    @rule(
        who=st.integers(0, USERS - 1),
        cents=st.integers(1, 100),
        delivery=st.sampled_from(["new", "new", "again", "second_event"]),
        i=picks,
        via_webhook=st.booleans(),
    )
    def stripe_pays(self, who: int, cents: int, delivery: str, i: int, via_webhook: bool) -> None:
        """A new paid Checkout Session; or a redelivery of an earlier event, or a second event
        (async payment succeeded) for an earlier session: those credit nothing."""
        if delivery == "new" or not self.events:
            paid = paid_event(user=self.users[who], cents=cents)
            self.events.append(paid)
        elif delivery == "again":
            paid = self.events[i % len(self.events)]
        else:
            session = self.events[i % len(self.events)]["data"]["object"]
            paid = checkout_event(session, event_type="checkout.session.async_payment_succeeded")
        self._deliver(paid, via_webhook)
        self._after()

    # -- pods -------------------------------------------------------------------------------

    @rule(pod=pod_specs)
    def start_pod(self, pod: tuple[int, int, bool, str, int]) -> None:
        """Create a pod; if it was placed, its agent starts it now (or in a later step)."""
        self._create_and_start(*pod)
        self._after()

    def _create_and_start(
        self, who: int, gpus: int, restartable: bool, start: str, key: int
    ) -> None:
        spec = {**POD, "gpu_count": gpus, "restartable": restartable}
        if gpus == 0:
            spec["gpu_model"] = CPU_MODEL
        refuse = self._should_refuse(who)
        # The pod's id (metering goes in pk order) from the example, so a replay is the same
        # run; the counter keeps ids unique. A millisecond apart, creations are ordered too.
        pod_id = uuid.UUID(int=key << 64 | len(self.pods))
        self.now += timedelta(milliseconds=1)
        try:
            with mock.patch.object(Pod._meta.pk, "_get_default", new=lambda: pod_id):
                pod = pod_create(owner=self.users[who], spec=spec).pod
        except SpendRefusedError:
            assert refuse
            return
        assert not refuse
        self.pods[pod.pk] = PodModel(owner=who)
        self._sync()
        if pod.status == PodStatus.SCHEDULED and start != "later":
            self._start(pod, start, lag=0)

    @precondition(lambda self: self._has(PodStatus.PENDING))
    @rule()
    def scheduler_pass(self) -> None:
        schedule_pending()
        self._after()

    def _start(self, pod: Pod, how: str, lag: int) -> None:
        node = pod.node
        if how == "report":
            placed_at = self.pods[pod.pk].placements[-1].placed_at
            started = max(placed_at, self.now - timedelta(seconds=lag))
            report_container(node, pod.pk, "running", started_at=started)
            return
        command = (
            NodeCommand.objects.filter(
                node=node,
                type=CommandType.START_POD,
                payload__pod_id=str(pod.pk),
                status__in=UNACKED,
            )
            .order_by("-created_at")
            .first()
        )
        assert command is not None
        if how == "ack":
            result = {"container_id": "c" * 12, "state": "running"}
            ack(node, command.pk, succeeded=True, result=result)
        else:
            ack(node, command.pk, succeeded=False, result={}, error="image pull failed")

    @precondition(lambda self: self._has(PodStatus.SCHEDULED, PodStatus.STARTING))
    @rule(i=picks, how=st.sampled_from(["report", "ack", "ack_failed"]), lag=picks)
    def container_starts(self, i: int, how: str, lag: int) -> None:
        """The agent starts a placed pod: its heartbeat reports the container running (started
        up to `lag` s ago, not before the placement), or its ack of start_pod comes first."""
        pod = self._pick(i, PodStatus.SCHEDULED, PodStatus.STARTING)
        self._start(pod, how, lag)
        self._after()

    @precondition(lambda self: self._has(*ACTIVE_STATUSES))
    @rule(i=picks)
    def owner_stops_pod(self, i: int) -> None:
        pod = self._pick(i, *ACTIVE_STATUSES)
        placement = self._current(pod)
        pod_stop(pod=pod)
        if placement is not None:
            placement.cap(self.now)
        self._after()

    @precondition(lambda self: self._has(*ON_NODE_STATUSES))
    @rule(
        i=picks,
        state=st.sampled_from(["exited", "exited", "dead", "missing"]),
        code=st.sampled_from([0, 1, 137]),
        permille=st.integers(0, 1000),
        reports_finish=st.booleans(),
        tick_lands_mid_heartbeat=st.sampled_from([False, False, True]),
    )
    def container_ends(
        self,
        i: int,
        state: str,
        code: int,
        permille: int,
        reports_finish: bool,
        tick_lands_mid_heartbeat: bool,
    ) -> None:
        """The container ends on its own some time after the node's previous heartbeat; the
        next heartbeat reports it (with the end time, or without). The heartbeat is no single
        transaction: a metering tick in another process may run as it begins, before its
        container reports are stored (so before the exit they carry ends the pod's billing)."""
        pod = self._pick(i, *ON_NODE_STATUSES)
        node = pod.node
        placement = self._current(pod)
        previous = node.last_heartbeat_at
        finished = previous + (self.now - previous) * permille / 1000
        if placement is not None and placement.started_at is not None:
            finished = max(finished, placement.started_at)
        finished = finished if reports_finish and state != "missing" else None
        exit_code = code if state == "exited" else None
        if tick_lands_mid_heartbeat:
            # The tick lands as the heartbeat begins: after the node came back (if it had gone
            # silent; nothing metering reads) and before its container reports are stored.
            meter_tick(now=self.now)
        report_container(node, pod.pk, state, exit_code=exit_code, finished_at=finished)
        if placement is not None and placement.started_at is not None:
            placement.cap(finished or self.now)
        self._after()

    @precondition(lambda self: self._has(PodStatus.STOPPING))
    @rule(i=picks)
    def agent_acks_stop(self, i: int) -> None:
        pod = self._pick(i, PodStatus.STOPPING)
        command = (
            NodeCommand.objects.filter(
                node_id=pod.node_id,
                type=CommandType.STOP_POD,
                payload__pod_id=str(pod.pk),
                status__in=UNACKED,
            )
            .order_by("-created_at")
            .first()
        )
        if command is not None:
            ack(pod.node, command.pk, succeeded=True, result={"state": "removed", "exit_code": 0})
        self._after()

    # -- nodes and time ---------------------------------------------------------------------

    @precondition(lambda self: NodeStatus.OFFLINE in self.node_status.values())
    @rule(
        i=picks,
        then=st.sampled_from(["nothing", "placement", "placement+ack", "placement+report"]),
    )
    def node_comes_back(self, i: int, then: str) -> None:
        """An offline node heartbeats again (its old pods are gone from it). The scheduler's
        next pass may place waiting pods on it, and its agent start them: the start_pod ack
        arriving before the next heartbeat, or that heartbeat reporting them running."""
        offline = [n.pk for n in self.nodes if self.node_status[n.pk] == NodeStatus.OFFLINE]
        node_id = offline[i % len(offline)]
        self._beat(Node.objects.get(pk=node_id))
        if then != "nothing":
            schedule_pending()
            self._sync()
            if then != "placement":
                for pod in self._our_pods(PodStatus.SCHEDULED).filter(node_id=node_id):
                    self._start(pod, then.split("+")[1], lag=0)
        self._after()

    @rule(
        ms=st.integers(1, 600_000),
        then=st.sampled_from(["beats", "beats", "silence", "sweep"]),
        metering_runs=st.booleans(),
    )
    def time_passes(self, ms: int, then: str, metering_runs: bool) -> None:
        """Time passes; then every online node heartbeats, or none does (their pods are billed
        only up to their last heartbeat), or none does and the liveness sweep runs; then the
        periodic metering tick may run."""
        self._pass_time(ms, beats=then == "beats")
        if then == "sweep":
            self._sweep()
        if metering_runs:
            self._complete_tick(self.now, chunk=10_000)
        self._after()

    def _pass_time(self, ms: int, *, beats: bool) -> None:
        self.now += timedelta(milliseconds=ms)
        if beats:
            for node in Node.objects.filter(status=NodeStatus.ONLINE).order_by("hostname"):
                self._beat(node)

    def _sweep(self) -> list[uuid.UUID]:
        last_beats = dict(Node.objects.values_list("pk", "last_heartbeat_at"))
        with TestCase.captureOnCommitCallbacks(execute=True):
            marked = node_services.nodes_mark_silent_offline(now=self.now)
        for model in self.pods.values():
            if model.placements and model.placements[-1].node_id in marked:
                placement = model.placements[-1]
                if not placement.closed:
                    placement.cap(last_beats[placement.node_id])
        return marked

    @rule(i=picks, extra_s=st.integers(1, 120), others_keep_beating=beating)
    def node_goes_silent(self, i: int, extra_s: int, others_keep_beating: bool) -> None:
        """One node stops heartbeating long enough to be marked offline; the others go on (or
        the outage is ours and every node looks silent)."""
        node = self._node(i)
        deadline = node.last_heartbeat_at + OFFLINE_AFTER + timedelta(seconds=extra_s)
        self.now = max(self.now, deadline)
        if others_keep_beating:
            for other in Node.objects.filter(status=NodeStatus.ONLINE).exclude(pk=node.pk):
                self._beat(other)
        marked = self._sweep()
        if node.status == NodeStatus.ONLINE:
            assert node.pk in marked
        self._after()

    # -- metering ---------------------------------------------------------------------------

    def _assert_billed_up_to(self, now: datetime) -> None:
        """After a complete tick at `now`, no billable pod has a whole second left unbilled."""
        for pod in (
            self._our_pods(*BILLABLE).filter(billed_until__isnull=False).select_related("node")
        ):
            end = min(
                t for t in (now, pod.node.last_heartbeat_at, pod.billing_ends_at) if t is not None
            )
            assert end - pod.billed_until < timedelta(seconds=1), (pod.pk, end, pod.billed_until)

    def _assert_within_burn_limits(self) -> None:
        """After a complete tick, each user's pods still on their nodes fit their max burn."""
        for who, user in enumerate(self.users):
            if self.max_burn[who] is None:
                continue
            pods = Pod.objects.filter(owner=user, status__in=ON_NODE_STATUSES).exclude(
                status=PodStatus.STOPPING
            )
            assert sum(p.hourly_rate for p in pods) <= self.max_burn[who]

    # Ticks run as time goes by: each first moves the clock `ms` on (the online nodes
    # heartbeating meanwhile, or not).

    @rule(
        ms=elapsed,
        beats=beating,
        chunk=chunks,
        late_ms=st.sampled_from([0, 0, 0, 1_500, 20_000]),
    )
    def tick(self, ms: int, beats: bool, chunk: int, late_ms: int) -> None:
        """A tick; sometimes one whose `now` was read a while ago."""
        self._pass_time(ms, beats=beats)
        self._complete_tick(self.now - timedelta(milliseconds=late_ms), chunk=chunk)
        self._after()

    def _complete_tick(self, now: datetime, *, chunk: int) -> None:
        meter_tick(now=now, chunk=chunk)
        self._assert_billed_up_to(now)
        self._assert_within_burn_limits()

    @rule(ms=elapsed, beats=beating, chunk=chunks)
    def tick_twice(self, ms: int, beats: bool, chunk: int) -> None:
        self._pass_time(ms, beats=beats)
        meter_tick(now=self.now, chunk=chunk)
        again = meter_tick(now=self.now, chunk=chunk)
        assert (again.charged, again.records) == (0, 0)
        self._assert_billed_up_to(self.now)
        self._assert_within_burn_limits()
        self._after()

    def _snapshot(self) -> tuple:
        return (
            sorted(Pod.objects.values_list("pk", "status", "billed_until", "billing_ends_at")),
            UsageRecord.objects.count(),
            Transaction.objects.count(),
            Entry.objects.count(),
            sorted(LedgerAccount.objects.values_list("pk", "balance")),
        )

    @rule(
        ms=elapsed,
        beats=beating,
        k=st.integers(1, 3),
        after_writes=st.booleans(),
        chunk=chunks,
    )
    def tick_killed(self, ms: int, beats: bool, k: int, after_writes: bool, chunk: int) -> None:
        """The tick's worker dies in its k-th chunk: before it wrote anything, or after it
        wrote everything but before the commit. Earlier chunks stay; the k-th leaves no trace."""
        self._pass_time(ms, beats=beats)
        before = self._snapshot()
        due = Pod.objects.filter(status__in=BILLABLE, billed_until__lt=self.now).count()
        killed = False
        with connection.execute_wrapper(ChunkKiller(k, after_writes)):
            try:
                meter_tick(now=self.now, chunk=chunk)
            except WorkerKilledError:
                killed = True
        assert killed == (-(-due // chunk) >= k), (due, chunk, k)  # it dies iff it has a k-th chunk
        if killed and k == 1:
            assert self._snapshot() == before
        self._after(killed=killed)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def every_transaction_sums_to_zero_and_every_balance_is_its_entries(self) -> None:
        assert ledger_check() == []

    @invariant()
    def money_adds_up(self) -> None:
        """Each wallet holds its top-ups (each paid session once) less its usage, never below
        the floor nor past the monthly cap; its usage debits are its usage records; usage is
        split between provider payables and platform revenue by the fee."""
        wallets: dict[uuid.UUID, int] = {}
        by_kind: dict[str, int] = defaultdict(int)
        for kind, user_id, balance in LedgerAccount.objects.values_list(
            "kind", "user_id", "balance"
        ):
            by_kind[kind] += balance
            if kind == AccountKind.USER_WALLET:
                wallets[user_id] = balance
        usage = {
            owner: (amount, share)
            for owner, amount, share in UsageRecord.objects.values("owner_id")
            .annotate(amount=Sum("amount"), share=Sum("provider_share"))
            .values_list("owner_id", "amount", "share")
        }
        debits = dict(
            Entry.objects.filter(
                transaction__kind=TransactionKind.USAGE, account__kind=AccountKind.USER_WALLET
            )
            .values("account__user_id")
            .annotate(total=Sum("amount"))
            .values_list("account__user_id", "total")
        )
        for who, user in enumerate(self.users):
            used = usage.get(user.pk, (0, 0))[0]
            balance = wallets.get(user.pk, 0)
            assert debits.get(user.pk, 0) == -used, "wallet debits differ from usage records"
            assert balance == self.credited[who] - used, "wallet is not top-ups less usage"
            assert balance >= -self.overdraft, "wallet below the overdraft floor"
            if self.month_allowed[who] is not None:
                assert used <= self.month_allowed[who], "charged past the monthly cap"
        refs = Transaction.objects.filter(kind=TransactionKind.TOPUP).values_list(
            "external_ref", flat=True
        )
        assert sorted(refs) == sorted(
            f"stripe:checkout_session:{s}" for s in self.credited_sessions
        ), "a paid session credited twice, or not at all"
        assert by_kind[AccountKind.STRIPE_CLEARING] == -sum(self.credited)
        amount = sum(a for a, _ in usage.values())
        share = sum(s for _, s in usage.values())
        assert by_kind[AccountKind.PROVIDER_PAYABLE] == share
        assert by_kind[AccountKind.PLATFORM_REVENUE] == amount - share

    @invariant()
    def usage_records_are_exact_contiguous_and_within_bounds(self) -> None:
        """Per pod and per stay on a node: records run contiguously from the container's
        start (no gap, no overlap, no interval twice), end by the pod's stop, its container's
        end and its node's last heartbeat, and charge exactly price × GPUs × seconds (less
        only when the floor or the cap bound, and then the pod is stopped)."""
        if not self.pods:
            return
        records_by_pod: dict[uuid.UUID, list[UsageRecord]] = defaultdict(list)
        for record in UsageRecord.objects.order_by("period_start"):
            records_by_pod[record.pod_id].append(record)
        beats = dict(Node.objects.values_list("pk", "last_heartbeat_at"))
        pods = Pod.objects.in_bulk(list(self.pods))
        legs: dict[int, dict[str, int]] = defaultdict(dict)
        for tx_id, account_kind, amount in Entry.objects.filter(
            transaction__kind=TransactionKind.USAGE
        ).values_list("transaction_id", "account__kind", "amount"):
            legs[tx_id][account_kind] = amount
        newest = self.last_record_id
        full: dict[int, int] = {}  # each record's uncapped charge
        share: dict[int, int] = {}  # each record's provider share
        for pod_id, model in self.pods.items():
            pod = pods[pod_id]
            records = records_by_pod.get(pod_id, [])
            stays = [p for p in model.placements if p.started_at is not None]
            assigned = 0
            for n, stay in enumerate(stays):
                assert stay.placed_at <= stay.started_at <= self.now, (
                    "billing starts before the pod was placed on its node",
                    pod_id,
                    stay,
                )
                until = stays[n + 1].started_at if n + 1 < len(stays) else None
                charged = [
                    r
                    for r in records
                    if r.period_start >= stay.started_at
                    and (until is None or r.period_start < until)
                ]
                assigned += len(charged)
                cursor = stay.started_at
                rate = self.price[stay.node_id] * max(pod.gpu_count, 1)
                billed = carry = 0  # the stay's charged seconds and the share's carry
                for r in charged:
                    assert r.period_start == cursor, ("a gap or an overlap", pod_id, r, cursor)
                    cursor = r.period_end
                    # The stay's price to date rounded once, less what came before: no drift.
                    full[r.pk] = prorate_increment(
                        per_hour=rate, billed_seconds=billed, seconds=r.seconds
                    )
                    billed += r.seconds
                    share[r.pk] = 0
                    if r.node_id in self.community:
                        share[r.pk], carry = split_with_carry(
                            amount=r.amount, percent=100 - FEE_PERCENT, carry=carry
                        )
                    assert r.node_id == stay.node_id
                    assert r.period_end <= self.now
                    assert stay.limit is None or r.period_end <= stay.limit, (
                        "charged after the pod stopped (stop, container end or node loss)",
                        pod_id,
                        r.period_end,
                        stay.limit,
                    )
                    assert pod.billing_ends_at is None or r.period_end <= pod.billing_ends_at
                if not stay.closed:
                    assert pod.started_at == stay.started_at
                    if pod.status in BILLABLE:
                        assert pod.billed_until == cursor
            assert assigned == len(records), ("charged outside any stay on a node", pod_id)
            for r in records:
                assert r.seconds == (r.period_end - r.period_start).total_seconds() >= 1
                price = self.price[r.node_id]
                assert (r.price_per_gpu_hour, r.gpu_count) == (price, pod.gpu_count)
                assert 0 <= r.amount <= full[r.pk]
                assert r.provider_share == share[r.pk]
                if r.amount:
                    assert legs[r.transaction_id] == {
                        AccountKind.USER_WALLET: -r.amount,
                        **({AccountKind.PROVIDER_PAYABLE: share[r.pk]} if share[r.pk] else {}),
                        **(
                            {AccountKind.PLATFORM_REVENUE: r.amount - share[r.pk]}
                            if r.amount - share[r.pk]
                            else {}
                        ),
                    }
                else:
                    assert r.transaction_id is None
                if r.pk > self.last_record_id:  # written in this step
                    event("usage charged")
                    assert r.period_end <= beats[r.node_id], (
                        "charged past the node's last heartbeat",
                        pod_id,
                        r.period_end,
                    )
                    if r.amount < full[r.pk]:
                        event("a charge capped by the floor or the monthly cap")
                        if not self.killed:  # a killed tick stops no one; the next one does
                            assert pod.status != PodStatus.RUNNING, ("capped, not stopped", pod_id)
                newest = max(newest, r.pk)
        self.last_record_id = newest


@pytest.mark.django_db
def test_money_invariants_hold_under_random_pod_lifecycles(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.NODE_HEARTBEAT_INTERVAL = HEARTBEAT_S
    # Money, not liveness: a node is condemned at OFFLINE_AFTER, and neither the mass-silence
    # guard nor the sweep's own gaps (time jumps here) hold it back (tests/nodes covers those).
    settings.NODE_OFFLINE_GRACE_S = int(OFFLINE_AFTER.total_seconds())
    settings.NODE_MASS_SILENCE_PERCENT = 100
    settings.NODE_LIVENESS_SWEEP_GAP_S = 10**9
    settings.PROVIDER_DEFAULT_FEE_PERCENT = FEE_PERCENT
    settings.POD_CAPACITY_SOURCES = ["apps.pods.scheduler.community_nodes"]
    run_state_machine_as_test(
        MoneyMachine,
        settings=hypothesis_settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
