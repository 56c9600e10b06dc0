"""The remote backend against a hostile fake OpenAI server on 127.0.0.1 (written here, real HTTP).

Each malformed answer must become one per-sample error saying the server's answer was malformed (never a
raw Python error, never lost labels); a server that does not answer must fail after ``timeout_s``, not
block the run; caption and find retry the same way and say so with the same words.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fiftyone as fo
import fiftyone.operators as foo
import pytest

from marlin_core.serving.openai_http import DEFAULT_TIMEOUT_S, MalformedAnswerError, RetryPolicy
from marlin_core.serving.remote import RemoteMarlin
from vllm_server import REPO, free_port

CAPTION = "@marlin/marlin/caption"
FIND = "@marlin/marlin/find"
MODELS_OK = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
FAST_RETRY = RetryPolicy(attempts=2, backoff_s=0.01)


class FakeServer:
    """An HTTP server whose answers the test sets: ``models`` / ``chat`` bytes (or an int: that HTTP status),
    ``hang_s`` before answering a chat request; ``hits`` counts requests per path."""

    def __init__(self):
        self.models: bytes | int = MODELS_OK
        self.chat: bytes | int = b"{}"
        self.hang_s = 0.0
        self.hits: dict[str, int] = {}
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, answer):
                if isinstance(answer, int):
                    self.send_response(answer)
                    self.send_header("Content-Type", "application/json")
                    body = json.dumps({"error": {"message": f"busy ({answer})"}}).encode()
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    body = answer
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fake.hits[self.path] = fake.hits.get(self.path, 0) + 1
                self._answer(fake.models if self.path == "/v1/models" else 404)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.hits[self.path] = fake.hits.get(self.path, 0) + 1
                if fake.hang_s:
                    fake.release.wait(fake.hang_s)
                self._answer(fake.chat)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def model(self) -> str:
        return f"openai://127.0.0.1:{self.server.server_address[1]}/v1/m"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def red_dataset(dataset, color_videos):
    dataset.add_sample(fo.Sample(filepath=str(color_videos["red"])))
    return dataset


def _chat(text) -> bytes:
    return json.dumps(text).encode()


MALFORMED_CHATS = {
    "not UTF-8": (b'{"choices": [{"message": {"content": "\xff\xfe"}}]}', "not UTF-8 text"),
    "not JSON": (b"<html>502 Bad Gateway</html>", "not JSON"),
    "a JSON list": (_chat([{"choices": []}]), "a JSON list instead of a chat completion"),
    "empty choices": (_chat({"choices": []}), "no 'choices'"),
    "no message": (_chat({"choices": [{"finish_reason": "stop"}]}), "no 'message' object"),
    "content not text": (_chat({"choices": [{"message": {"content": 5}}]}), "'content' is int, not text"),
    "logprob not a number": (_chat({"choices": [{"message": {"content": "From 1.0 to 2.0."}, "logprobs": {
        "content": [{"token": "From", "logprob": "high"}]}}]}), "a log-prob is str, not a number"),
    "bytes not bytes": (_chat({"choices": [{"message": {"content": "x"}, "logprobs": {
        "content": [{"token": "x", "bytes": [999], "logprob": -0.1}]}}]}), "'bytes' is not a list of byte values"),
    "logprobs not a list": (_chat({"choices": [{"message": {"content": "x"}, "logprobs": {"content": 7}}]}),
                            "'logprobs' is not a list"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CHATS))
def test_each_malformed_chat_answer_is_one_error_saying_so(fake, color_videos, case):
    fake.chat, detail = MALFORMED_CHATS[case]
    remote = RemoteMarlin.from_url(fake.model, retry=FAST_RETRY)
    ((_, caption),) = list(remote.iter_captions([color_videos["red"]], max_new_tokens=8))
    ((_, find),) = list(remote.iter_finds([(color_videos["red"], ["red light"])], max_new_tokens=8))
    for error in (caption, find):
        assert isinstance(error, MalformedAnswerError), repr(error)
        assert "the server's answer was malformed" in str(error) and detail in str(error)
        assert f"http://127.0.0.1:{fake.server.server_address[1]}/v1" in str(error) and "\n" not in str(error)
    assert fake.hits["/v1/chat/completions"] == 2  # a malformed answer is not retried


@pytest.mark.parametrize(("models", "detail"), [
    (b"this is not json", "not JSON: 'this is not json'"),
    (_chat([{"id": "m"}]), "GET /v1/models is not an object with a 'data' list of models"),
    (_chat({"data": "m"}), "GET /v1/models is not an object with a 'data' list of models"),
])
def test_a_models_list_that_is_not_vllms_fails_every_sample_with_one_clear_error(fake, red_dataset, models, detail):
    fake.models = models
    for uri, extra in ((CAPTION, {}), (FIND, {"queries": ["red light"]})):
        outcome = foo.get_operator(uri)(red_dataset, model=fake.model, overwrite=True, **extra)
        assert outcome["done"] == 0 and outcome["failed"] == 1
        message = red_dataset.first()["marlin_error"]
        assert "the server's answer was malformed" in message and detail in message and "\n" not in message
    assert "/v1/chat/completions" not in fake.hits


def test_malformed_answers_through_the_operators_keep_labels(fake, red_dataset, trained_model_dir):
    foo.get_operator(CAPTION)(red_dataset, model=str(trained_model_dir), max_new_tokens=64)
    before = red_dataset.first()
    assert before["marlin_scene"] and before["marlin_events"].detections
    fake.chat = _chat({"choices": [{"message": None}]})
    outcome = foo.get_operator(CAPTION)(red_dataset, model=fake.model, overwrite=True, max_new_tokens=8)
    assert (outcome["done"], outcome["failed"]) == (0, 1)
    sample = red_dataset.first()
    assert sample["marlin_scene"] == before["marlin_scene"]
    assert [d.label for d in sample["marlin_events"].detections] == [d.label for d in before["marlin_events"].detections]
    assert sample["marlin_error"].startswith("caption: ") and "the server's answer was malformed" in sample[
        "marlin_error"]


def test_a_server_that_never_answers_fails_after_the_timeout_not_blocking_the_run(fake, red_dataset):
    fake.hang_s = 60.0
    started = time.monotonic()
    outcome = foo.get_operator(FIND)(red_dataset, model=fake.model, queries=["red light"], timeout_s=1.5)
    waited_s = time.monotonic() - started
    assert (outcome["done"], outcome["failed"]) == (0, 1)
    message = red_dataset.first()["marlin_error"]
    assert "gave no answer within 1.5 s" in message and "timeout_s" in message
    assert fake.hits["/v1/chat/completions"] == 1  # a timeout is not retried (it would multiply the wait)
    assert waited_s < fake.hang_s  # the run ended long before the server would have answered


def test_the_default_timeout_is_two_minutes():
    assert DEFAULT_TIMEOUT_S == 120.0
    assert RemoteMarlin.from_url("openai://127.0.0.1:1/v1/m").settings.timeout_s == 120.0


def test_timeout_is_checked_before_any_work(red_dataset):
    with pytest.raises(Exception, match="timeout_s: -1.0: seconds must be more than 0"):
        foo.get_operator(CAPTION)(red_dataset, model="openai://127.0.0.1:1/v1/m", timeout_s=-1)
    assert not red_dataset.has_sample_field("marlin_error")  # refused before any field or run was made
    done = subprocess.run([sys.executable, "-m", "marlin_core", "find", str(red_dataset.first().filepath), "red",
                           "--timeout", "0", "--model", "openai://127.0.0.1:1/v1/m"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "--timeout 0: seconds must be more than 0" in done.stderr


def test_cli_timeout_reaches_the_server_requests(fake, color_videos):
    fake.hang_s = 60.0
    done = subprocess.run([sys.executable, "-m", "marlin_core", "caption", str(color_videos["red"]), "--quiet",
                           "--timeout", "1", "--model", fake.model],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "gave no answer within 1 s" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("down", ["no server", "HTTP 503"])
def test_caption_and_find_retry_the_same_and_say_so_in_the_same_words(fake, red_dataset, down):
    if down == "no server":
        model = f"openai://127.0.0.1:{free_port()}/v1/m"
    else:
        fake.chat, model = 503, fake.model
    messages = []
    for uri, extra in ((CAPTION, {}), (FIND, {"queries": ["red light"]})):
        outcome = foo.get_operator(uri)(red_dataset, model=model, overwrite=True, max_new_tokens=8, **extra)
        assert outcome["failed"] == 1
        messages.append(red_dataset.first()["marlin_error"].split(": ", 1)[1])
    attempts = RetryPolicy().attempts
    for message in messages:
        assert f"unavailable after {attempts} tries" in message
    assert messages[0].replace("caption", "") == messages[1].replace("find", "")
    if down == "HTTP 503":
        assert fake.hits["/v1/chat/completions"] == 2 * attempts  # caption's 4 tries, then find's 4


def test_a_server_that_speaks_no_http_is_a_malformed_answer(color_videos):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def garbage():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01garbage")
            connection.close()

    threading.Thread(target=garbage, daemon=True).start()
    try:
        remote = RemoteMarlin.from_url(f"openai://127.0.0.1:{listener.getsockname()[1]}/v1/m", retry=FAST_RETRY)
        with pytest.raises(MalformedAnswerError, match=r"the server's answer was malformed \(not an HTTP answer"):
            remote.check()
    finally:
        listener.close()
