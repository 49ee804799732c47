"""The voice demo page: a portal page for signed-in users, scripts only from static files
(the strict CSP allows no inline script)."""

import re

import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_the_demo_page_is_for_signed_in_users(client, user):
    url = reverse("voice-demo")
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]

    client.force_login(user)
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="voice-key"' in html and 'data-socket-path="/ws/voice-agent"' in html
    assert "/static/voice/demo.js" in html and "/static/voice/pcm-capture.js" in html
    # no inline script or style: the CSP forbids both
    assert "script-src 'self'" in page["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert " style=" not in html and " onclick=" not in html
    assert "microphone=(self)" in page["Permissions-Policy"]
