"""`/api/v1/auth/*`: register, log in (JWT), who am I, personal API keys, SSH keys."""

from typing import Any

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import serializers as s
from apps.accounts import throttles
from apps.accounts.jwt import jwt_issue
from apps.accounts.models import ApiKey
from apps.accounts.services import (
    ApiKeyInputError,
    EmailTakenError,
    api_key_create,
    api_key_revoke,
    user_register,
)
from apps.accounts.ssh_keys import SshKeyError, keys_of, ssh_key_add, ssh_key_delete


def _token_body(user: Any) -> dict[str, Any]:
    token, expires_in = jwt_issue(user=user)
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}


class PublicView(APIView):
    """No credentials needed (and none checked, so no CSRF); a failed login is still a 401."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class RegisterView(PublicView):
    @extend_schema(request=s.RegisterInput, responses={201: s.RegisterOutput}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = s.RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        throttles.register_guard(request._request, email=data.validated_data["email"])
        try:
            user = user_register(**data.validated_data)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"password": exc.messages}) from exc
        except EmailTakenError as exc:
            raise exceptions.ValidationError(
                {"email": "An account with this email address already exists."}
            ) from exc
        address = user.emailaddress_set.get(primary=True)  # type: ignore[attr-defined]
        address.send_confirmation(request._request, signup=True)
        body = {"user": s.UserOutput(user).data, **_token_body(user)}
        return Response(body, status=status.HTTP_201_CREATED)


class LoginView(PublicView):
    @extend_schema(request=s.LoginInput, responses={200: s.TokenOutput}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = s.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"].lower()
        throttles.login_guard(request._request, email=email)
        user = authenticate(request._request, email=email, password=data.validated_data["password"])
        if user is None:
            throttles.login_failed(request._request, email=email)
            raise exceptions.AuthenticationFailed("Invalid email or password.")
        throttles.login_succeeded(request._request, email=email)
        return Response(_token_body(user))


class MeView(APIView):
    @extend_schema(responses={200: s.UserOutput}, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(s.UserOutput(request.user).data)


class ApiKeyListView(APIView):
    @extend_schema(responses={200: s.ApiKeyOutput(many=True)}, tags=["auth"])
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.for_user(request.user)  # type: ignore[arg-type]
        return Response(s.ApiKeyOutput(keys, many=True).data)

    @extend_schema(
        request=s.ApiKeyCreateInput, responses={201: s.ApiKeyCreatedOutput}, tags=["auth"]
    )
    def post(self, request: Request) -> Response:
        data = s.ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            created = api_key_create(user=request.user, **data.validated_data)  # type: ignore[arg-type]
        except ApiKeyInputError as exc:
            raise exceptions.ValidationError({exc.field: str(exc)}) from exc
        body = {**s.ApiKeyOutput(created.api_key).data, "key": created.raw_key}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    @extend_schema(responses={204: None}, tags=["auth"])
    def delete(self, request: Request, key_id: str) -> Response:
        api_key = get_object_or_404(ApiKey.objects.for_user(request.user), pk=key_id)  # type: ignore[arg-type]
        api_key_revoke(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SshKeyListView(APIView):
    @extend_schema(responses={200: s.SshKeyOutput(many=True)}, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(s.SshKeyOutput(keys_of(request.user), many=True).data)

    @extend_schema(request=s.SshKeyInput, responses={201: s.SshKeyOutput}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = s.SshKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            key = ssh_key_add(user=request.user, **data.validated_data)  # type: ignore[arg-type]
        except SshKeyError as exc:
            raise exceptions.ValidationError({"public_key": str(exc)}) from exc
        return Response(s.SshKeyOutput(key).data, status=status.HTTP_201_CREATED)


class SshKeyDetailView(APIView):
    @extend_schema(responses={204: None}, tags=["auth"])
    def delete(self, request: Request, key_id: str) -> Response:
        ssh_key_delete(key=get_object_or_404(keys_of(request.user), pk=key_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
