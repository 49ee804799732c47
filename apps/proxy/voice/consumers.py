"""The three voice sockets. Thin: authenticate (the key was resolved by
DeploymentKeyAuthMiddleware), find the user's READY deployments, take a session slot, then hand
frames to the session object (agent.py, transcription.py, speech.py).

Close codes: 4401 bad key (before any frame is read), 4409 a needed deployment is not READY,
4429 too many sessions on this key (or rate limited), 4408 idle too long, 1011 backend
failure; each after an `error` event saying why (protocol: voice-protocol.md)."""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.proxy.hold import holder
from apps.proxy.routing import DeploymentRoute, KeyIdentity, ProxyError, router
from apps.proxy.voice.agent import AgentRoutes, VoiceAgent
from apps.proxy.voice.limits import session_slots
from apps.proxy.voice.messages import (
    CLOSE_BAD_KEY,
    CLOSE_IDLE,
    CLOSE_NOT_READY,
    CLOSE_RATE_LIMITED,
    MessageError,
    VoiceConf,
    check_audio_frame,
    check_text_frame,
    parse_text_frame,
)
from apps.proxy.voice.routes import LiveRoutes, NotReadyError
from apps.proxy.voice.speech import Synthesizer
from apps.proxy.voice.transcription import Transcriber

logger = logging.getLogger(__name__)

CAPABILITY_NAMES = {
    "transcription": "speech-to-text",
    "chat": "chat",
    "speech": "text-to-speech",
}


class VoiceConsumer(AsyncWebsocketConsumer):
    # No channel layer: these sockets never receive group messages, and subscribing would cost
    # every session a Redis channel and a blocking receive loop.
    channel_layer_alias = "voice-sessions-use-no-channel-layer"

    session: Any = None
    identity: KeyIdentity | None = None
    session_id = ""
    _watchdog: asyncio.Task[None] | None = None
    _closing = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        """As Channels' dispatch, without its `close_old_connections` thread hop per frame:
        nothing here touches the ORM directly (routing's reads manage their connections)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- lifecycle ---

    async def connect(self) -> None:
        """Every check runs before the handshake completes, so a client whose socket opened
        holds a session slot; a refused one is accepted only to be told why, then closed."""
        identity: KeyIdentity | None = self.scope.get("voice_identity")
        if identity is None:
            message = self.scope.get("voice_auth_error") or "Missing deployment key."
            await self._refuse("invalid_api_key", message, CLOSE_BAD_KEY)
            return
        self.session_id = uuid.uuid4().hex[:16]
        try:
            session = await self.open_session(identity)
        except NotReadyError as exc:
            await self._refuse("deployment_not_ready", str(exc), CLOSE_NOT_READY)
            return
        limit = settings.VOICE_MAX_SESSIONS_PER_KEY
        if not await session_slots.acquire(
            key_id=identity.key_id, session_id=self.session_id, limit=limit
        ):
            await self._refuse(
                "too_many_sessions",
                f"This key already has {limit} voice sessions open; close one first.",
                CLOSE_RATE_LIMITED,
            )
            return
        self.identity = identity
        self.session = session
        self._last_activity = time.monotonic()
        await self.accept()
        self._watchdog = asyncio.create_task(self._watch())

    async def disconnect(self, code: int) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.session is not None:
            await self.session.close()
        if self.identity is not None:
            await session_slots.release(key_id=self.identity.key_id, session_id=self.session_id)
            self.identity = None

    async def open_session(self, identity: KeyIdentity) -> Any:
        raise NotImplementedError

    async def ready_route(self, identity: KeyIdentity, capability: str) -> DeploymentRoute:
        """The user's deployment that serves `capability`, READY, or NotReadyError saying why.
        A key's deployment with no READY replica holds the session's opening until one is
        (scale from zero, as for /v1), within its queue bounds."""
        try:
            own = await router.deployment_route(identity)
            if not own.routable:
                await holder.wait_for_replica(own)
            return await router.resolve_for_owner(identity, capability=capability)
        except ProxyError as exc:
            name = CAPABILITY_NAMES.get(capability, capability)
            raise NotReadyError(f"No ready {name} deployment: {exc.message}") from exc

    # --- frames ---

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None or self._closing:
            return
        try:
            if bytes_data is not None:
                check_audio_frame(bytes_data)
                await self.session.on_audio(bytes_data)
                # A microphone streams silence forever: only speech keeps a session alive.
                if self.session.hearing_speech:
                    self._last_activity = time.monotonic()
            elif text_data is not None:
                self._last_activity = time.monotonic()
                check_text_frame(text_data)
                await self.session.on_message(parse_text_frame(text_data))
        except MessageError as exc:
            await self.send_event({"type": "error", "code": exc.code, "message": exc.message})

    # --- ClientLink, for the sessions ---

    async def send_event(self, event: dict[str, Any]) -> None:
        if not self._closing:
            await self.send_json(event)

    async def send_audio(self, pcm: bytes) -> None:
        if not self._closing:
            await self.send(bytes_data=pcm)

    async def send_json(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(event))

    async def fail(self, *, code: str, message: str, close_code: int) -> None:
        if self._closing:
            return
        await self.send_event({"type": "error", "code": code, "message": message})
        self._closing = True
        await self._close(close_code)

    async def _refuse(self, code: str, message: str, close_code: int) -> None:
        await self.accept()
        await self.send_json({"type": "error", "code": code, "message": message})
        self._closing = True
        await self._close(close_code)

    async def _close(self, code: int) -> None:
        try:
            await self.close(code=code)
        except Exception:
            # daphne's WebSocket layer (autobahn) lets an application close only with 1000 or
            # 3000-4999, yet 1011 ("unexpected condition") is the RFC 6455 code a server sends
            # for a backend failure, and the protocol promises it. daphne hands each
            # connection's protocol to `send` as its bound argument: send the frame there.
            protocol = next(iter(getattr(self.base_send, "args", ())), None)
            send_close_frame = getattr(protocol, "sendCloseFrame", None)
            if send_close_frame is None:
                raise
            send_close_frame(code=code, isReply=False)

    async def _watch(self) -> None:
        """Closes the session with 4408 after VOICE_IDLE_TIMEOUT_S with no speech and no
        message from the client and no work in progress (audio of silence does not count),
        and keeps the session's slot lease alive."""
        idle_limit = float(settings.VOICE_IDLE_TIMEOUT_S)
        renew_every = float(settings.VOICE_SESSION_LEASE_S) / 3
        renewed = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            while not self._closing:
                now = time.monotonic()
                if self.session.busy:
                    self._last_activity = now
                idle_for = now - self._last_activity
                if idle_for >= idle_limit:
                    await self.fail(
                        code="idle_timeout",
                        message=f"No audio or message for {idle_limit:g} s; closing.",
                        close_code=CLOSE_IDLE,
                    )
                    return
                if self.identity is not None and now - renewed >= renew_every:
                    renewed = now
                    await session_slots.renew(
                        key_id=self.identity.key_id, session_id=self.session_id
                    )
                await asyncio.sleep(min(idle_limit - idle_for, renew_every, 1.0))


class TranscriptionConsumer(VoiceConsumer):
    async def open_session(self, identity: KeyIdentity) -> Transcriber:
        async def resolve() -> DeploymentRoute:
            return await self.ready_route(identity, "transcription")

        return Transcriber(
            link=self,
            routes=LiveRoutes(await resolve(), resolve),
            conf=VoiceConf.load(),
            session_id=self.session_id,
        )


class SpeechConsumer(VoiceConsumer):
    async def open_session(self, identity: KeyIdentity) -> Synthesizer:
        async def resolve() -> DeploymentRoute:
            return await self.ready_route(identity, "speech")

        return Synthesizer(
            link=self,
            routes=LiveRoutes(await resolve(), resolve),
            conf=VoiceConf.load(),
            session_id=self.session_id,
        )


class VoiceAgentConsumer(VoiceConsumer):
    async def open_session(self, identity: KeyIdentity) -> VoiceAgent:
        async def resolve() -> AgentRoutes:
            return AgentRoutes(
                stt=await self.ready_route(identity, "transcription"),
                chat=await self.ready_route(identity, "chat"),
                tts=await self.ready_route(identity, "speech"),
            )

        return VoiceAgent(
            link=self,
            routes=LiveRoutes(await resolve(), resolve),
            conf=VoiceConf.load(),
            session_id=self.session_id,
        )
