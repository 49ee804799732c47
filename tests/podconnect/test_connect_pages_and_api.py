"""The terminal page, the ports-and-tokens page and the token API: owner, other tenant,
anonymous; bad input changes nothing."""

import pytest

from apps.podconnect.models import PodAccessToken
from tests.factories import make_pod

pytestmark = pytest.mark.django_db


@pytest.fixture
def pod(user):
    return make_pod(user, None, endpoints={"8888/tcp": "127.0.0.1:8888"})


def test_terminal_page_is_the_owners_and_allows_xterms_inline_styles(client, user, other_user, pod):
    anonymous = client.get(f"/pods/{pod.pk}/terminal/")
    client.force_login(other_user)
    stranger = client.get(f"/pods/{pod.pk}/terminal/")
    client.force_login(user)
    owner = client.get(f"/pods/{pod.pk}/terminal/")

    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert stranger.status_code == 404
    assert owner.status_code == 200
    csp = owner["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in csp and "script-src 'self';" in csp
    assert f'data-socket="/ws/pods/{pod.pk}/terminal"' in owner.content.decode()
    assert "vendor/xterm/xterm.js" in owner.content.decode()


def test_access_page_creates_shows_once_and_revokes(client, user, pod):
    client.force_login(user)

    page = client.get(f"/pods/{pod.pk}/access/")
    created = client.post(f"/pods/{pod.pk}/access/", {"name": "laptop"})
    token = PodAccessToken.objects.get(pod=pod)
    listed = client.get(f"/pods/{pod.pk}/access/")
    revoked = client.post(f"/pods/{pod.pk}/access/{token.pk}/revoke")

    assert f"/pods/{pod.pk}/ports/8888/" in page.content.decode()
    body = created.content.decode()
    assert created.status_code == 200 and token.prefix in body and 'id="new-pod-token"' in body
    assert 'id="new-pod-token"' not in listed.content.decode()  # shown once
    assert revoked.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_access_page_refuses_strangers_and_empty_names(client, user, other_user, pod):
    mine = make_pod(other_user, None)
    client.force_login(other_user)
    token_of_user = PodAccessToken.objects.create(pod=pod, name="x", prefix="pt_x", digest="d")

    assert client.get(f"/pods/{pod.pk}/access/").status_code == 404
    assert client.post(f"/pods/{pod.pk}/access/", {"name": "steal"}).status_code == 404
    assert client.post(f"/pods/{pod.pk}/access/{token_of_user.pk}/revoke").status_code == 404
    assert client.post(f"/pods/{mine.pk}/access/{token_of_user.pk}/revoke").status_code == 404
    empty = client.post(f"/pods/{mine.pk}/access/", {"name": ""})
    assert empty.status_code == 400
    assert PodAccessToken.objects.filter(revoked_at__isnull=True).count() == 1
    assert not PodAccessToken.objects.filter(pod=mine).exists()


def test_token_api(api_client, user, other_user, pod):
    api_client.force_authenticate(user)
    url = f"/api/v1/pods/{pod.pk}/access-tokens"

    bad = api_client.post(url, {"name": ""}, format="json")
    missing = api_client.post(url, {}, format="json")
    created = api_client.post(url, {"name": "ci"}, format="json")
    api_client.force_authenticate(other_user)
    stranger_list = api_client.get(url)
    stranger_revoke = api_client.delete(f"{url}/{created.json()['id']}")
    api_client.force_authenticate(None)
    anonymous = api_client.get(url)

    assert bad.status_code == 400 and "name" in bad.json()["error"]["fields"]
    assert missing.status_code == 400 and "name" in missing.json()["error"]["fields"]
    assert created.status_code == 201 and created.json()["token"].startswith("pt_")
    assert stranger_list.status_code == 404 and stranger_revoke.status_code == 404
    assert anonymous.status_code in (401, 403)
    assert PodAccessToken.objects.get().revoked_at is None
