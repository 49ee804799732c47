import signal

import openai
import pytest

from apps.catalog.models import ModelUsageLog
from tests.factories import make_deployment
from tests.support import start_daphne

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_web_process_that_stops_cleanly_writes_the_usage_it_holds(echo_backends, user):
    deployment, key = make_deployment(user, backends=[echo_backends()])
    daphne, url = start_daphne(PROXY_USAGE_FLUSH_S="3600")  # only the exit can write them
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)
    for _ in range(3):
        client.embeddings.create(model="echo-model", input="x")
    assert not ModelUsageLog.objects.filter(deployment=deployment).exists()

    daphne.send_signal(signal.SIGTERM)
    daphne.wait(timeout=30)

    assert ModelUsageLog.objects.filter(deployment=deployment).count() == 3
