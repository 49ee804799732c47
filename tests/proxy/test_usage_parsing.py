import json

from apps.proxy.api import usage_in


def test_usage_from_the_end_of_a_large_body():
    body = json.dumps(
        {
            "data": [{"embedding": [0.1] * 4096, "index": i} for i in range(50)],
            "usage": {"prompt_tokens": 123, "total_tokens": 123},
        }
    ).encode()

    assert usage_in(body) == (123, 0)


def test_chat_usage_and_no_usage():
    chat = b'{"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}'

    assert usage_in(chat) == (5, 7)
    assert usage_in(b'{"text": "hello"}') == (0, 0)
