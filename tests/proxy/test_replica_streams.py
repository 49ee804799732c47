"""What the proxy makes of a replica's stream: a compressed one reaches the `openai` SDK readable,
completion tokens without `include_usage` match the replica's own count, and a stream the client
drops is recorded as cancelled by the client."""

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from tests.factories import make_deployment
from tests.support import wait_for

TOKENS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]


def chunk(delta, finish=None):
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def vllm_stream(include_usage: bool) -> bytes:
    """A stream shaped like vLLM's: a role-only first chunk, one chunk per token, a final
    chunk with the finish reason (and an empty content), the usage chunk when asked, [DONE]."""
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": token}) for token in TOKENS]
    events.append(chunk({"content": ""}, "stop"))
    if include_usage:
        usage = chunk({})
        usage["choices"] = []
        usage["usage"] = {"prompt_tokens": 3, "completion_tokens": len(TOKENS), "total_tokens": 13}
        events.append(usage)
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


class FakeReplica:
    """An OpenAI-style chat server speaking HTTP/1.1 with chunked streams. `gzip`: "never",
    "when-asked" (only if the request's Accept-Encoding allows it, as uvicorn's GZipMiddleware
    does) or "always" (a misconfigured one)."""

    def __init__(self, gzip_mode: str) -> None:
        self.gzip_mode = gzip_mode
        self.accept_encodings: list[str] = []
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                accept = self.headers.get("Accept-Encoding", "")
                replica.accept_encodings.append(accept)
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                payload = vllm_stream(include_usage)
                compress = replica.gzip_mode == "always" or (
                    replica.gzip_mode == "when-asked" and "gzip" in accept
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                if compress:
                    self.send_header("Content-Encoding", "gzip")
                    payload = gzip.compress(payload)
                self.end_headers()
                for at in range(0, len(payload), 97):  # many small chunks, split mid-event
                    piece = payload[at : at + 97]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeReplica":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def stream_text(proxy_server, key, **extra) -> str:
    client = openai.OpenAI(base_url=proxy_server.url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "go"}], stream=True, **extra
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@pytest.mark.parametrize("gzip_mode", ["when-asked", "always"])
def test_a_compressing_replica_is_relayed_readable(proxy_server, user, gzip_mode):
    from apps.catalog.models import ModelUsageLog

    with FakeReplica(gzip_mode) as replica:
        deployment, key = make_deployment(user, backends=[replica.url], model_name="fake-model")

        text = stream_text(proxy_server, key)

    assert text == "".join(TOKENS)
    assert replica.accept_encodings == ["identity"]
    row = wait_for(lambda: ModelUsageLog.objects.filter(deployment=deployment).first(), "usage")
    assert row.completion_tokens == len(TOKENS) and row.error == ""


def test_completion_tokens_match_the_replica_with_or_without_include_usage(proxy_server, user):
    from apps.catalog.models import ModelUsageLog

    with FakeReplica("never") as replica:
        deployment, key = make_deployment(user, backends=[replica.url], model_name="fake-model")

        stream_text(proxy_server, key)
        stream_text(proxy_server, key, stream_options={"include_usage": True})

    def both_rows():
        rows = list(ModelUsageLog.objects.filter(deployment=deployment))
        return rows if len(rows) == 2 else None

    rows = wait_for(both_rows, "both usage rows")
    assert [row.completion_tokens for row in rows] == [len(TOKENS), len(TOKENS)]


def test_httpx_does_not_log_each_proxied_request():
    """One access line per request is enough: httpx's own INFO line per call is silenced."""
    import logging

    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
