"""Backend calls through the proxy's routing: a READY replica with the fewest outstanding
requests, counted while the call runs, the next replica when one refuses the connection before
any byte, the deployment's per-minute rate limit, and one usage row per call."""

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

from apps.proxy.routing import (
    DeploymentRoute,
    NoReadyReplicaError,
    ProxyError,
    RateLimitedError,
    UsageEntry,
    router,
    usage_buffer,
)
from apps.proxy.voice import backends
from apps.proxy.voice.audio import pcm_seconds, wav_encode
from apps.proxy.voice.backends import BackendError
from apps.proxy.voice.messages import CLOSE_BACKEND_FAILURE, CLOSE_RATE_LIMITED, FatalError

T = TypeVar("T")


@dataclass
class CallRecord:
    """What one backend call did, for its usage row."""

    endpoint: str
    route: DeploymentRoute
    started: float
    replica_id: int | None = None
    first_byte: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_in_s: float = 0.0
    audio_out_s: float = 0.0
    error: str = ""

    def log(self) -> None:
        now = time.monotonic()
        usage_buffer.record(
            UsageEntry(
                deployment_id=self.route.id,
                endpoint=self.endpoint,
                status_code=502 if self.error else 200,
                latency_ms=(now - self.started) * 1000,
                replica_id=self.replica_id,
                first_byte_ms=None
                if self.first_byte is None
                else (self.first_byte - self.started) * 1000,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                streamed=True,
                error=self.error,
                audio_in_s=self.audio_in_s,
                audio_out_s=self.audio_out_s,
            )
        )


async def call_replica(
    route: DeploymentRoute, record: CallRecord, call: Callable[[str], Awaitable[T]]
) -> T:
    """`call(base_url)` on a READY replica of `route`."""
    await router.check_rate(route)
    for replica in router.candidates(route):
        async with router.lease(replica):
            record.replica_id = replica.replica_id
            try:
                result = await call(replica.base_url)
            except BackendError as exc:
                if exc.connected:
                    raise
                router.mark_failed(replica, str(exc))
                continue
            record.first_byte = time.monotonic()
            return result
    raise NoReadyReplicaError(f"Every replica of '{route.model_name}' refused the connection.")


async def stream_replica(
    route: DeploymentRoute,
    record: CallRecord,
    open_stream: Callable[[str], AsyncGenerator[T, None]],
) -> AsyncGenerator[T, None]:
    """The items of `open_stream(base_url)` from a READY replica of `route`; a replica that
    refuses the connection before its first item is skipped for the next one."""
    await router.check_rate(route)
    for replica in router.candidates(route):
        async with router.lease(replica), aclosing(open_stream(replica.base_url)) as stream:
            record.replica_id = replica.replica_id
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                return
            except BackendError as exc:
                if exc.connected:
                    raise
                router.mark_failed(replica, str(exc))
                continue
            record.first_byte = time.monotonic()
            yield first
            async for item in stream:
                yield item
            return
    raise NoReadyReplicaError(f"Every replica of '{route.model_name}' refused the connection.")


async def transcribe_utterance(
    *,
    route: DeploymentRoute,
    pcm: bytes,
    sample_rate: int,
    language: str | None,
    request_id: str,
    endpoint: str,
    bill_audio: bool = True,
) -> str:
    """The text of one utterance from a speech-to-text replica (one usage row)."""
    record = CallRecord(endpoint=endpoint, route=route, started=time.monotonic())
    if bill_audio:
        record.audio_in_s = pcm_seconds(len(pcm), sample_rate)
    wav = wav_encode(pcm, sample_rate)
    try:
        return await call_replica(
            route,
            record,
            lambda base_url: backends.transcribe(
                base_url=base_url,
                model=route.model_name,
                wav=wav,
                language=language,
                request_id=request_id,
            ),
        )
    except Exception as exc:
        record.error = exc.__class__.__name__
        raise
    finally:
        record.log()


def fatal_from(exc: Exception) -> FatalError:
    """What a failed backend call does to the session: rate limits close with 4429, anything
    else that failed on the backend side with 1011."""
    if isinstance(exc, FatalError):
        return exc
    if isinstance(exc, RateLimitedError):
        return FatalError("rate_limited", exc.message, CLOSE_RATE_LIMITED)
    if isinstance(exc, ProxyError):
        return FatalError(exc.code, exc.message, CLOSE_BACKEND_FAILURE)
    return FatalError("backend_error", str(exc), CLOSE_BACKEND_FAILURE)
