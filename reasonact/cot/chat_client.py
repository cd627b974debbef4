"""The teacher's chat client: ``openai.OpenAI`` for OpenAI-compatible endpoints, redacted errors, a disk cache.

    client = ChatClient.from_env(model="gpt-4o")                 # OPENAI_BASE_URL, OPENAI_API_KEY
    reply = client.chat([{"role": "user", "content": "..."}])    # Reply(text, attempts, usage, model)

- **Retries** are the openai package's: 408, 409, 429, 5xx, timeouts and dropped connections, up to
  ``max_retries`` times, with exponential backoff or the server's ``Retry-After``. Other 4xx (bad request,
  bad key) fail at once. A malformed answer is not retried: the clip's chain carries the error and is not
  cached, so the next run asks again.
- **The key is never shown**: it is read from the environment variable and handed to the openai client,
  nowhere else; a failure becomes a ``ChatError`` that names the endpoint and what went wrong, passed
  through ``redact`` (servers echo keys: OpenAI's 401 quotes part of it) and raised without the openai
  exception (whose request carries the key) attached.
- **ChatCache**: one JSON file per key under a folder; writes are atomic (temp file + rename), so
  concurrent workers and interrupted runs never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "EMPTY"  # what a keyless server (vLLM without --api-key) is sent; the openai client needs some key


class ChatError(RuntimeError):
    """A request failed for good (after the retries, or a status not worth retrying). The message is redacted."""

    def __init__(self, message: str, status: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.status, self.attempts = status, attempts


@dataclass
class Reply:
    text: str
    attempts: int
    usage: dict | None = None
    model: str | None = None


class ChatClient:
    """``chat(messages, **params) -> Reply`` against ``{base_url}/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 5,
    ):
        import openai

        self.base_url, self.model = base_url.rstrip("/"), model
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        parts = urllib.parse.urlsplit(self.base_url)  # named in messages without any user:password@
        self.endpoint = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() + "/chat/completions"
        self._openai = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or NO_KEY,
            max_retries=self.max_retries,
            timeout=self.timeout_s,
        )

    @classmethod
    def from_env(
        cls, base_url: str | None = None, model: str | None = None, api_key_env: str = "OPENAI_API_KEY", **kw
    ) -> ChatClient:
        """Arguments win over the environment (``OPENAI_BASE_URL``, ``REASONACT_TEACHER_MODEL``, the key
        variable), which wins over the defaults (OpenAI's URL, gpt-4o)."""
        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = os.environ.get(api_key_env)
        if not key and urllib.parse.urlsplit(url).hostname == "api.openai.com":
            raise ChatError(f"the OpenAI API needs a key: set the environment variable {api_key_env}")
        return cls(url, model or os.environ.get("REASONACT_TEACHER_MODEL") or "gpt-4o", key, **kw)

    def __repr__(self) -> str:
        key = "unset" if self._openai.api_key == NO_KEY else "set"
        return f"ChatClient(endpoint={self.endpoint!r}, model={self.model!r}, key={key})"

    def redact(self, text: str) -> str:
        """``text`` without the key, any 8+ character slice of it ("sk-abc1...WXYZ"), or URL credentials."""
        text = str(text).replace(self.base_url, self.endpoint.removesuffix("/chat/completions"))
        key = self._openai.api_key
        if key != NO_KEY:
            for n in (len(key), 16, 8):
                for i in range(max(0, len(key) - n + 1)):
                    text = text.replace(key[i : i + n], "***")
        return text

    def chat(self, messages: list[dict], **params) -> Reply:
        """One completion: ``choices[0].message.content``. ``params`` go into the request (temperature,
        max_tokens, ...). Raises ChatError (redacted) when the openai client gives up."""
        import openai

        status, attempts = None, 1
        try:
            raw = self._openai.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, **params
            )
        except openai.APIError as e:
            # The openai client sends its retry count with every request: the last one tells how many it made.
            if e.request is not None:
                attempts = int(e.request.headers.get("x-stainless-retry-count", 0)) + 1
            if isinstance(e, openai.APIStatusError):
                status, body = e.status_code, e.response.text[:300].strip()
                what = f"HTTP {status}: {body}" if body else f"HTTP {status}"
            elif isinstance(e, openai.APITimeoutError):
                what = f"timed out after {self.timeout_s:g} s"
            else:  # APIConnectionError: refused, reset, DNS (the response is not validated strictly)
                cause = e.__cause__ or e
                what = f"connection failed ({type(cause).__name__}: {cause})"
        else:
            attempts = raw.retries_taken + 1
            try:
                data = raw.parse()
                text = data.choices[0].message.content
                if not isinstance(text, str):
                    raise TypeError(f"content is {type(text).__name__}")
                usage = data.usage.model_dump(exclude_none=True) if data.usage else None
                return Reply(text, attempts, usage, data.model)
            except (ValueError, LookupError, AttributeError, TypeError) as e:  # JSON, choices, content
                what = f"malformed response ({type(e).__name__}: {str(e)[:120]})"
        if attempts > 1:
            what += f" (after {attempts} attempts)"
        if status == 401 and self._openai.api_key == NO_KEY:
            what += " (no API key was set)"
        # Raised here, outside the except block: the openai exception (its request has the key) is not chained.
        raise ChatError(self.redact(f"{self.model} at {self.endpoint}: {what}"), status, attempts)


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
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
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
