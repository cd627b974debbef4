"""A small client for OpenAI-compatible chat endpoints (OpenAI, vLLM, ...), with an on-disk cache.

    client = ChatClient.from_env(model="gpt-4o")                 # OPENAI_BASE_URL, OPENAI_API_KEY
    text = client.chat([{"role": "user", "content": "..."}])     # POST {base_url}/chat/completions

Plain ``urllib`` (no extra dependency). What it guarantees:

- **Retries** on 429, 5xx, timeouts, dropped connections and malformed responses, with exponential
  backoff (``backoff_s * 2**attempt`` plus up to 25% jitter, or the server's ``Retry-After`` when
  it sends one, capped at ``max_backoff_s``). Other 4xx (bad request, bad key) are not retried:
  asking again cannot fix them.
- **The key is never shown**: it lives in a ``Secret`` whose repr is ``'***'``; it only ever goes into
  the ``Authorization`` header; every error message and log line is passed through ``redact``
  (servers do echo keys: OpenAI's 401 quotes part of it), and the URL's user:password part is
  dropped from messages.
- **ChatCache**: one JSON file per key under a folder; writes are atomic (temp file + rename), so
  concurrent workers and interrupted runs never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = (408, 409, 429)  # plus every 5xx: timeouts, conflicts, rate limits are transient


class ChatError(RuntimeError):
    """A request failed for good (after retries, or a non-retryable status). The message is redacted."""

    def __init__(self, message: str, status: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.status, self.attempts = status, attempts


class Secret:
    """Holds a credential; ``repr``/``str`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value or None

    def reveal(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "'***'" if self._value else "None"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a worker's arguments or a cache
        raise TypeError("Secret cannot be pickled")


def _strip_userinfo(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


@dataclass
class Reply:
    text: str
    attempts: int
    usage: dict | None = None
    model: str | None = None


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        extra_headers: dict | None = None,
        sleep=time.sleep,
        seed: int | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._key = Secret(api_key)
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.extra_headers = dict(extra_headers or {})
        self._sleep = sleep  # injectable: tests do not wait
        self._rng = random.Random(seed)

    @classmethod
    def from_env(
        cls,
        base_url: str | None = None,
        model: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        **kwargs,
    ) -> ChatClient:
        """Arguments win over the environment (``OPENAI_BASE_URL``, ``REASONACT_TEACHER_MODEL``, the key
        variable), which wins over the defaults (OpenAI's URL, gpt-4o)."""
        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = os.environ.get(api_key_env)
        if not key and urllib.parse.urlsplit(url).hostname == "api.openai.com":
            raise ChatError(f"the OpenAI API needs a key: set the environment variable {api_key_env}")
        return cls(url, model or os.environ.get("REASONACT_TEACHER_MODEL") or "gpt-4o", key, **kwargs)

    def __repr__(self) -> str:
        return (
            f"ChatClient(base_url={_strip_userinfo(self.base_url)!r}, model={self.model!r}, "
            f"key={'set' if self._key else 'unset'})"
        )

    def redact(self, text: str) -> str:
        """``text`` without the key (nor any long piece of it) and without URL credentials."""
        text = str(text)
        key = self._key.reveal()
        if key:
            text = text.replace(key, "***")
            # Servers quote keys partially ("sk-abc1...WXYZ"): hide any 8+ character slice too.
            for n in (16, 8):
                for i in range(0, max(0, len(key) - n + 1)):
                    if key[i : i + n] in text:
                        text = text.replace(key[i : i + n], "***")
        return text.replace(self.base_url, _strip_userinfo(self.base_url))

    def _post(self, body: bytes) -> tuple[int, dict, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.extra_headers}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:  # non-2xx: keep the status and body, drop the exception
            try:
                payload = e.read()
            except OSError:
                payload = b""
            return e.code, dict(e.headers or {}), payload

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff_s * (2**attempt) * (1 + 0.25 * self._rng.random())
        try:
            if retry_after is not None:
                delay = max(0.0, float(retry_after))
        except ValueError:
            pass  # an HTTP-date Retry-After: fall back to our own backoff
        return min(delay, self.max_backoff_s)

    def chat(self, messages: list[dict], **params) -> Reply:
        """One completion: ``choices[0].message.content`` as text. ``params`` go into the request body
        (temperature, max_tokens, ...). Raises ChatError (redacted) when it gives up."""
        body = json.dumps({"model": self.model, "messages": messages, **params}).encode()
        last, status = "", None
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                status, headers, payload = self._post(body)
            except TimeoutError as e:  # socket.timeout is TimeoutError
                last, status = f"timed out after {self.timeout_s:g} s ({type(e).__name__})", None
            except (urllib.error.URLError, OSError) as e:  # refused, reset, DNS: the server may come back
                reason = getattr(e, "reason", e)
                kind = "timed out" if isinstance(reason, TimeoutError) else "connection failed"
                last, status = f"{kind} ({type(reason).__name__}: {reason})", None
            else:
                if status == 200:
                    try:
                        data = json.loads(payload)
                        content = data["choices"][0]["message"]["content"]
                        if isinstance(content, list):  # some servers return content parts
                            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                        if not isinstance(content, str):
                            raise TypeError(f"content is {type(content).__name__}")
                        return Reply(content, attempt + 1, data.get("usage"), data.get("model"))
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        last = f"malformed response ({type(e).__name__}: {str(e)[:120]})"
                else:
                    snippet = payload[:300].decode("utf-8", "replace").strip()
                    last = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
                    if not (status in RETRY_STATUS or status >= 500):
                        raise ChatError(
                            self.redact(f"{self.model} request failed: {last}"), status, attempt + 1
                        )
                    retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after")
            if attempt < self.max_retries:
                delay = self._wait(attempt, retry_after)
                log.warning(
                    "chat request attempt %d failed (%s); retrying in %.1f s",
                    attempt + 1,
                    self.redact(last)[:200],
                    delay,
                )
                self._sleep(delay)
        raise ChatError(
            self.redact(f"{self.model} request failed after {self.max_retries + 1} attempts: {last}"),
            status,
            self.max_retries + 1,
        )


class ChatCache:
    """Responses on disk, one ``<sha256>.json`` per key (a dict that names the clip, prompt and model)."""

    def __init__(self, directory: str | Path | None):
        self.dir = Path(directory) if directory else None

    @staticmethod
    def key(parts: dict) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.dir is None:
            return None
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent, or damaged by hand: ask again
            return None

    def put(self, key: str, value: dict) -> None:
        if self.dir is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{random.getrandbits(32):08x}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
