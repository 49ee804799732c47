"""The liveness rules on a simulated clock (no wall time, no database): a large fleet on lossy
links, a node that really dies, a fleet-wide silence and a control-plane restart. The judge is the
one the sweep runs (`apps.nodes.liveness.liveness_judge`); what a heartbeat does to a SUSPECT node
(back to ONLINE) is mirrored here and checked against the database in test_liveness_sweep.py."""

import bisect
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from apps.nodes.liveness import (
    AlertKind,
    GuardState,
    LivenessPolicy,
    SilentNode,
    liveness_judge,
)
from apps.nodes.models import NodeStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
INTERVAL = 10
SWEEP = 10.0
POLICY = LivenessPolicy()  # the defaults: SUSPECT after 3 intervals, grace 5 min, guard at 30%


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def silences(
    rng: random.Random, *, horizon: float, drop: float, stop_at: float | None = None
) -> list[tuple[float, float]]:
    """One agent beating every 10 ± 5 s with a share `drop` of its beats lost: the stretches
    (last delivered beat, next delivered beat) longer than the suspect point. One draw per beat:
    below `drop` the beat is lost, and the draw rescaled within its branch is the jitter."""
    suspect_s = POLICY.suspect_after(INTERVAL).total_seconds()
    end = horizon if stop_at is None else stop_at
    t = rng.uniform(0, INTERVAL)
    last = 0.0
    out = []
    while t < end:
        u = rng.random()
        if u >= drop:
            if t - last > suspect_s:
                out.append((last, t))
            last = t
            u = (u - drop) / (1 - drop)
        else:
            u = u / drop
        t += INTERVAL - 5 + 10 * u
    if horizon - last > suspect_s:
        out.append((last, float("inf")))
    return out


class Fleet:
    """Statuses of a simulated fleet driven by the judge, sweep after sweep."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.status = dict.fromkeys(range(size), NodeStatus.ONLINE)
        self.down: set[int] = set()  # SUSPECT or OFFLINE: set-based, not a walk over the fleet
        self.state = GuardState()
        self.offline_marks: list[tuple[int, float]] = []
        self.suspect_marks: list[tuple[int, float]] = []
        self.alerts = []

    def sweep(self, now: float, silent: dict[int, float]) -> None:
        """`silent`: node → last beat, for nodes past their suspect point at `now`. A node that
        was SUSPECT and is no longer silent has beaten since: it is ONLINE again."""
        for node in [n for n in self.down if n not in silent]:
            self.status[node] = NodeStatus.ONLINE
            self.down.discard(node)
        offline = sum(1 for n in self.down if self.status[n] == NodeStatus.OFFLINE)
        judgement = liveness_judge(
            now=at(now),
            fleet_size=self.size - offline,
            silent=[
                SilentNode(node, self.status[node], at(last), INTERVAL)
                for node, last in silent.items()
                if self.status[node] != NodeStatus.OFFLINE
            ],
            state=self.state,
            policy=POLICY,
        )
        self.state = judgement.state
        for node in judgement.suspect:
            self.status[node.id] = NodeStatus.SUSPECT
            self.down.add(node.id)
            self.suspect_marks.append((node.id, now))
        for node in judgement.offline:
            self.status[node.id] = NodeStatus.OFFLINE
            self.down.add(node.id)
            self.offline_marks.append((node.id, now))
        if judgement.alert is not None:
            self.alerts.append(judgement.alert)


def run(fleet: Fleet, stretches: dict[int, list[tuple[float, float]]], sweeps: list[float]):
    """Bucket every silent stretch into the sweeps that fall inside it, then sweep in order."""
    suspect_s = POLICY.suspect_after(INTERVAL).total_seconds()
    buckets: dict[int, dict[int, float]] = defaultdict(dict)
    for node, spans in stretches.items():
        for last, next_beat in spans:
            first = bisect.bisect_right(sweeps, last + suspect_s)
            stop = bisect.bisect_left(sweeps, next_beat)
            for k in range(first, stop):
                buckets[k][node] = last
    for k, now in enumerate(sweeps):
        fleet.sweep(now, buckets.get(k, {}))


def test_a_lossy_fleet_of_1000_for_24_hours_has_no_false_offline_and_a_dead_node_is_caught():
    # given 1,000 agents beating every 10 ± 5 s over 24 simulated hours, one beat in three
    # lost, and agent 0 that really stops at 12 h
    rng = random.Random(20261204)
    horizon = 24 * 3600.0
    stop_at = 12 * 3600.0
    stretches = {
        node: silences(rng, horizon=horizon, drop=1 / 3, stop_at=stop_at if node == 0 else None)
        for node in range(1000)
    }
    sweeps = [SWEEP * k + 3.7 for k in range(int(horizon / SWEEP))]
    fleet = Fleet(1000)

    # when the sweep runs every 10 s for the whole day
    run(fleet, stretches, sweeps)

    # then nobody but the dead agent is ever marked OFFLINE, and the guard never engages
    assert [node for node, _ in fleet.offline_marks if node != 0] == []
    assert fleet.alerts == []
    assert len({node for node, _ in fleet.suspect_marks}) > 900  # lossy links do look silent
    # and the dead agent is SUSPECT within 40 s of its last beat, OFFLINE at the grace plus at
    # most one sweep
    last_beat = stretches[0][-1][0]
    suspect_at = min(t for node, t in fleet.suspect_marks if node == 0 and t > last_beat)
    assert suspect_at - last_beat <= 40
    (offline_at,) = [t for node, t in fleet.offline_marks if node == 0]
    grace = POLICY.grace.total_seconds()
    assert grace <= offline_at - last_beat <= grace + SWEEP


def test_sixty_percent_silent_at_once_condemns_nobody_and_alerts_once():
    # given 1,000 nodes beating steadily, 600 of which fall silent together for 20 minutes
    rng = random.Random(7)
    beats = {node: rng.uniform(0, INTERVAL) for node in range(1000)}
    fleet = Fleet(1000)
    outage = (3600.0, 3600.0 + 20 * 60)
    suspect_s = POLICY.suspect_after(INTERVAL).total_seconds()

    # when the sweep runs every 10 s for two hours
    for k in range(720):
        now = SWEEP * k + 1.0
        silent = {}
        for node, phase in beats.items():
            last = phase + INTERVAL * ((now - phase) // INTERVAL)
            if node < 600 and outage[0] <= now:
                last = min(last, phase + INTERVAL * ((outage[0] - phase) // INTERVAL))
                if now >= outage[1]:
                    last = phase + INTERVAL * ((now - phase) // INTERVAL)
            if now - last > suspect_s:
                silent[node] = last
        fleet.sweep(now, silent)

    # then no node went OFFLINE, exactly one alert was raised, and the guard let go
    assert fleet.offline_marks == []
    assert [a.kind for a in fleet.alerts] == [AlertKind.MASS_SILENCE]
    assert fleet.alerts[0].silent_nodes >= 300
    assert not fleet.state.guarding
    assert all(s == NodeStatus.ONLINE for s in fleet.status.values())


def test_a_node_dead_during_the_outage_gets_its_grace_again_when_beats_resume():
    # given a guard that engaged over a mass silence and lets go at t=1000 s, and node 7 whose
    # last beat was at 100 s (it really died during the outage)
    state = GuardState(last_sweep_at=at(990), guard_since=at(200), guard_reason="x")
    dead = SilentNode(7, NodeStatus.SUSPECT, at(100), INTERVAL)

    # when beats resume (only node 7 is still silent) and sweeps go on every 10 s
    judgements = []
    for k in range(31):
        judgements.append(
            liveness_judge(
                now=at(1000 + 10 * k), fleet_size=100, silent=[dead], state=state, policy=POLICY
            )
        )
        state = judgements[-1].state

    # then the guard lets go, and node 7 goes OFFLINE a full grace after that, not before
    assert judgements[0].released
    assert [k for k, j in enumerate(judgements) if j.offline] == [30]


def test_after_a_control_plane_restart_no_node_is_condemned_before_the_grace():
    # given a fleet of 50 whose sweep last ran at t=0, and a control plane down for 20 minutes:
    # every node's last recorded beat is from before the outage; node 3 died during it
    state = GuardState(last_sweep_at=at(0))
    restart = 20 * 60.0
    fleet = Fleet(50)
    fleet.state = state

    # when the sweeps resume every 10 s; the other agents' beats land again from the restart on
    condemned = []
    for k in range(60):
        now = restart + SWEEP * k
        silent = {3: -5.0}
        if k == 0:
            silent = dict.fromkeys(range(50), -5.0)
        fleet.sweep(now, silent)
        condemned += [(node, now) for node, t in fleet.offline_marks if t == now]

    # then one alert names the sweep's gap, and node 3 is condemned only a full grace after the
    # control plane came back
    assert [a.kind for a in fleet.alerts] == [AlertKind.SWEEP_GAP]
    assert [node for node, _ in condemned] == [3]
    assert condemned[0][1] - restart >= POLICY.grace.total_seconds()


def test_an_operator_release_condemns_the_really_dead_from_their_last_beat():
    # given a guard holding over 60 silent nodes of 100
    dead = [SilentNode(n, NodeStatus.SUSPECT, at(0), INTERVAL) for n in range(60)]
    state = GuardState(last_sweep_at=at(990), guard_since=at(40), guard_reason="x")
    held = liveness_judge(now=at(1000), fleet_size=100, silent=dead, state=state, policy=POLICY)
    assert held.offline == [] and held.state.guarding

    # when an operator releases it (the nodes are gone)
    released = liveness_judge(
        now=at(1010),
        fleet_size=100,
        silent=dead,
        state=GuardState(**{**held.state.__dict__, "operator_release": True}),
        policy=POLICY,
    )

    # then they go OFFLINE at once (their grace from the last beat is long past), no new alert
    assert released.released and released.alert is None
    assert len(released.offline) == 60
