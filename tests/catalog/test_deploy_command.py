import pytest
from django.core.management import CommandError, call_command

from apps.billing.services import wallet_for
from apps.catalog.models import Deployment

pytestmark = pytest.mark.django_db


def test_deploy_local_model_with_demo_credit(django_user_model, cpu_node, capsys):
    operator = django_user_model.objects.create_superuser(email="op@example.com", password="x")

    call_command(
        "deploy_local_model", "local-echo-test", "--email", "op@example.com", "--demo-credit"
    )
    call_command(
        "deploy_local_model", "local-echo-test", "--email", "op@example.com", "--demo-credit"
    )

    out = capsys.readouterr().out
    assert out.count("api key: sk_") == 2
    assert Deployment.objects.filter(owner=operator).count() == 2
    assert wallet_for(operator).balance == 5_000_000  # credited once


def test_demo_credit_is_for_staff_only(user, cpu_node):
    with pytest.raises(CommandError, match="staff"):
        call_command(
            "deploy_local_model", "local-echo-test", "--email", user.email, "--demo-credit"
        )
    with pytest.raises(CommandError, match="refused"):
        call_command("deploy_local_model", "local-echo-test", "--email", user.email)
