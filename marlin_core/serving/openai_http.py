"""Talking to an OpenAI-compatible server (vLLM) over HTTP with the standard library only.

One job: send a JSON body to ``/v1/chat/completions`` (or read ``/v1/models``) and give back the JSON
answer, retrying what is worth retrying. Transient failures (connection refused or reset,
HTTP 429/500/502/503/504) are retried with exponential backoff, the same policy for every operation; a
server that stays unreachable becomes one :class:`ServerUnavailableError` whose one-line message says
where and what to do. A server that accepts the request but does not answer within ``timeout_s`` is
not retried (a retry would only multiply the wait): one :class:`ServerUnavailableError` naming the
timeout. Any other HTTP error becomes a :class:`ServerRequestError` carrying the server's own message;
an answer that is not UTF-8 JSON (or not HTTP at all) a :class:`MalformedAnswerError`.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from ..errors import MarlinError

__all__ = [
    "SERVER_SCHEMES",
    "DEFAULT_TIMEOUT_S",
    "MalformedAnswerError",
    "RetryPolicy",
    "ServerEndpoint",
    "ServerRequestError",
    "ServerUnavailableError",
    "is_server_model",
    "parse_server_model",
    "post_json",
    "get_json",
]

# ``openai://host:port/v1/<model>`` talks plain HTTP (a server on your network); ``openai+https://`` TLS.
SERVER_SCHEMES = {"openai": "http", "openai+http": "http", "openai+https": "https"}
# HTTP statuses a busy or restarting server answers with; anything else is the request's fault.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The read timeout of one answer. A 2-minute window's caption takes seconds on a GPU server; a server
# that says nothing for 2 minutes is stuck (raise it for long windows on a slow CPU server).
DEFAULT_TIMEOUT_S = 120.0


class ServerUnavailableError(MarlinError):
    """The server could not be reached (after retries): nothing was answered."""


class ServerRequestError(MarlinError):
    """The server answered with an error for this request (bad input, model error)."""


class MalformedAnswerError(ServerRequestError):
    """The server answered, but not what an OpenAI-compatible server answers (not JSON, wrong shape)."""


def malformed(url: str, detail: str) -> MalformedAnswerError:
    """The one-line error for an answer of the wrong shape from the server behind ``url``."""
    return MalformedAnswerError(f"Marlin server at {server_root(url)}: the server's answer was malformed ({detail})")


def server_root(url: str) -> str:
    """``http://host:port/v1`` of any endpoint URL under it."""
    return f"{url.rsplit('/v1', 1)[0]}/v1"


def _excerpt(raw: bytes) -> str:
    return repr(raw[:60].decode("utf-8", errors="replace")) + ("..." if len(raw) > 60 else "")


@dataclass(frozen=True)
class ServerEndpoint:
    """Where the model is served: ``base_url`` (ending in ``/v1``) and the served model name."""

    base_url: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.base_url} (model {self.model!r})"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried: ``attempts`` tries in all, waiting
    ``backoff_s``, then twice that, ... up to ``max_backoff_s`` between them."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delays_s(self):
        delay = self.backoff_s
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_backoff_s)


def is_server_model(model: str | None) -> bool:
    """True for ``openai://host:port/v1/<model>`` (or ``openai+https://...``) model strings."""
    return bool(model) and str(model).split("://", 1)[0] in SERVER_SCHEMES and "://" in str(model)


def parse_server_model(model: str) -> ServerEndpoint:
    """``openai://host:port/v1/<name>`` -> ``ServerEndpoint("http://host:port/v1", "<name>")``.

    The served name may itself hold slashes (``openai://gpu1:8000/v1/NemoStation/Marlin-2B``): everything
    after ``/v1/`` is the name.

    Raises:
        MarlinError: not of that form.
    """
    scheme, _, rest = str(model).partition("://")
    parsed = urlparse(f"{SERVER_SCHEMES.get(scheme, 'http')}://{rest}")
    prefix, marker, name = parsed.path.partition("/v1/")
    if scheme not in SERVER_SCHEMES or not parsed.hostname or not marker or not name.strip("/"):
        raise MarlinError(
            f"model {model!r} is not a server address: use openai://HOST:PORT/v1/MODEL_NAME "
            "(the name the server serves, see GET /v1/models), e.g. openai://127.0.0.1:8000/v1/marlin"
        )
    base_url = f"{parsed.scheme}://{parsed.netloc}{prefix}/v1"
    return ServerEndpoint(base_url=base_url, model=name.strip("/"))


def _request(url: str, body: dict | None, api_key: str | None, timeout_s: float) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        raw = response.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise malformed(url, f"not UTF-8 text: {error.reason} at byte {error.start}") from None
    except (ValueError, RecursionError):
        raise malformed(url, f"not JSON: {_excerpt(raw)}") from None


def _server_message(error: urllib.error.HTTPError) -> str:
    """The server's own error text (OpenAI shape ``{"error": {"message": ...}}`` or vLLM's ``{"message"}``)."""
    try:
        payload = json.loads(error.read().decode() or "{}")
    except (ValueError, OSError):
        return error.reason or f"HTTP {error.code}"
    detail = payload.get("error", payload) if isinstance(payload, dict) else payload
    message = detail.get("message") if isinstance(detail, dict) else detail
    return " ".join(str(message or error.reason).split())[:500]


def _unreachable_cause(error: BaseException) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return " ".join(str(reason).split()) or type(reason).__name__


def _timed_out(url: str, timeout_s: float) -> ServerUnavailableError:
    return ServerUnavailableError(
        f"Marlin server at {server_root(url)} gave no answer within {timeout_s:g} s (timeout_s; raise it for "
        "long windows on a slow server)")


def _attempt(url: str, body: dict | None, api_key: str | None, timeout_s: float) -> tuple[dict | None, str]:
    """One try: ``(answer, "")``, or ``(None, cause)`` for a failure worth retrying; raises the others."""
    try:
        return _request(url, body, api_key, timeout_s), ""
    except urllib.error.HTTPError as error:
        if error.code == 401:
            raise ServerRequestError(f"{url}: HTTP 401 unauthorized: set the plugin secret MARLIN_API_KEY "
                                     "to the server's --api-key") from None
        if error.code not in RETRY_STATUSES:
            raise ServerRequestError(f"{url}: HTTP {error.code}: {_server_message(error)}") from None
        return None, f"HTTP {error.code}: {_server_message(error)}"
    except (socket.timeout, TimeoutError):
        raise _timed_out(url, timeout_s) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, (socket.timeout, TimeoutError)):
            raise _timed_out(url, timeout_s) from None
        return None, _unreachable_cause(error)
    except ConnectionError as error:  # reset or closed mid-answer (RemoteDisconnected too)
        return None, _unreachable_cause(error)
    except http.client.HTTPException as error:  # a status line or body that is not HTTP
        raise malformed(url, f"not an HTTP answer: {type(error).__name__}") from None


def call(
    url: str,
    body: dict | None,
    *,
    api_key: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retry: RetryPolicy = RetryPolicy(),
) -> dict:
    """GET (``body`` None) or POST ``body`` as JSON to ``url``; the decoded JSON answer.

    Raises:
        ServerUnavailableError: unreachable, or still busy (429/5xx) after ``retry.attempts`` tries, or no
            answer within ``timeout_s``.
        MalformedAnswerError: the answer is not UTF-8 JSON (or not HTTP).
        ServerRequestError: any other HTTP error (the server's message is kept).
    """
    delays = retry.delays_s()
    while True:
        answer, cause = _attempt(url, body, api_key, timeout_s)
        if not cause:
            return answer
        delay = next(delays, None)
        if delay is None:
            raise ServerUnavailableError(
                f"Marlin server at {server_root(url)} unavailable after {retry.attempts} tries: {cause}")
        time.sleep(delay)


def post_json(url: str, body: dict, **kwargs) -> dict:
    """POST ``body``; see :func:`call`."""
    return call(url, body, **kwargs)


def get_json(url: str, **kwargs) -> dict:
    """GET ``url``; see :func:`call`."""
    return call(url, None, **kwargs)
