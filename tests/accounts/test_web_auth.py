"""allauth pages: signup with email verification, login, logout, password reset."""

import re

import pytest
from django.core import mail

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"


def link_in_last_mail() -> str:
    match = re.search(r"https?://[^/\s]+(/\S+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def test_signup_verify_login_logout(client, django_user_model):
    response = client.post(
        "/accounts/signup/",
        {"email": "web@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert django_user_model.objects.filter(email="web@example.com").exists()
    # Verification is mandatory: no session until the emailed link is confirmed.
    assert "_auth_user_id" not in client.session

    confirm_path = link_in_last_mail()
    assert client.get(confirm_path).status_code == 200
    response = client.post(confirm_path)
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")

    home = client.get("/")
    assert b"web@example.com" in home.content

    client.post("/accounts/logout/")
    assert "_auth_user_id" not in client.session

    response = client.post("/accounts/login/", {"login": "web@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")


def test_login_with_wrong_password_shows_error(client, user):
    response = client.post("/accounts/login/", {"login": user.email, "password": "wrong-one-1"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_password_reset_by_email(client, user):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    response = client.post("/accounts/password/reset/", {"email": user.email})
    assert response.status_code == 302

    reset_path = link_in_last_mail()
    response = client.get(reset_path, follow=True)
    form_path = response.redirect_chain[-1][0] if response.redirect_chain else reset_path
    response = client.post(
        form_path, {"password1": "brand-new-pass-77", "password2": "brand-new-pass-77"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand-new-pass-77")
