"""When the lean heartbeat path sheds: by how long beats wait for a database connection (a
standing queue), never for a burst the pool drains within the window, however deep. Times are
given, not slept: the rule is a function of the waits and the clock."""

from apps.nodes.heartbeat_asgi import QueueDelay


def fresh() -> QueueDelay:
    return QueueDelay(target_s=0.050, window_s=0.5)


def test_a_deep_burst_that_drains_within_the_window_is_served_whole():
    queue = fresh()
    # 500 beats arrive at once; the pool drains them over 300 ms, the first waiting ~0
    for i in range(500):
        now = 10.0 + i * 0.0006
        assert queue.admit(queued=500 - i, now=now)
        queue.waited(i * 0.0006, now)
    # the next window begins: the last window's shortest wait was ~0, so nothing is shed
    queue.waited(0.001, 10.6)
    assert queue.admit(queued=3, now=10.6)


def test_a_queue_standing_above_the_target_for_a_window_sheds_until_it_drains():
    queue = fresh()
    for i in range(100):  # every beat of the first window waits 80 ms or more
        queue.waited(0.080 + i * 0.001, i * 0.005)
    queue.waited(0.200, 0.51)  # the window closes: its shortest wait was above 50 ms
    assert not queue.admit(queued=40, now=0.52)
    assert not queue.admit(queued=1, now=0.8)  # still queued behind the old waits
    # drained: admits again, in a fresh window that the old queue's waits do not condemn
    assert queue.admit(queued=0, now=0.9)
    queue.waited(0.3, 0.95)  # a last beat of the old queue
    queue.waited(0.001, 1.0)
    queue.waited(0.002, 1.41)
    assert queue.admit(queued=2, now=1.42)


def test_one_short_wait_in_a_window_means_the_queue_drained_and_nothing_is_shed():
    queue = fresh()
    for i in range(100):
        queue.waited(0.090, i * 0.005)
    queue.waited(0.004, 0.3)  # one beat found a free connection
    queue.waited(0.090, 0.51)
    assert queue.admit(queued=10, now=0.52)
