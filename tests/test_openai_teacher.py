"""OpenAITeacher and its ChatClient (the openai package underneath) against a local chat-completions server on
127.0.0.1 (no external calls): a normal answer, 429 (Retry-After honoured) and 5xx retried, other 4xx not,
timeouts, refused connections, malformed answers, the on-disk cache, the concurrency limit, and the API key
never appearing in reprs, errors, logs or cache files."""

import base64
import io
import json
import logging
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reasonact.cot.chat_client import ChatClient, ChatError
from reasonact.cot.teacher import OpenAITeacher, make_teacher

KEY = "sk-test-0123456789abcdefghijSECRETxyz"
CHAIN = (
    "<think>Frames 1-5: the person bends the knees. Frames 6-9: he drives up. Frames 10-16: he lands."
    "</think><answer>jump</answer>"
)


def completion(text=CHAIN):
    return {
        "id": "c1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130},
    }


class Server:
    """Answers POST /v1/chat/completions from a script of responses (the last one repeats)."""

    def __init__(self):
        self.script: list[dict] = [{"json": completion()}]
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": json.loads(body),
                            "time": time.perf_counter(),
                        }
                    )
                    step = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(step.get("sleep", 0))
                    payload = step.get("raw")
                    if payload is None:
                        payload = json.dumps(step.get("json", {})).encode()
                    self.send_response(step.get("status", 200))
                    for k, v in step.get("headers", {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def gaps(self) -> list[float]:
        """Seconds between consecutive requests (the client's waits, plus a little)."""
        times = [r["time"] for r in self.requests]
        return [b - a for a, b in zip(times, times[1:])]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # talk to 127.0.0.1 directly
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from reasonact.data.synthact import render_clip
    from reasonact.video import write_video

    d = tmp_path_factory.mktemp("clips")
    out = []
    for i, label in enumerate(("jump", "wave", "clap", "sit", "stand", "kick")):
        frames, rec = render_clip(label, seed=i, level="easy", size=64)
        rec.pop("pose")
        out.append(
            {**rec, "video": str(write_video(d / f"{label}.mp4", frames, rec["fps"])), "split": "train"}
        )
    return out


def teacher(server, tmp_path, key=KEY, **kw):
    client = ChatClient(
        server.url,
        "test-model",
        key,
        timeout_s=kw.pop("timeout_s", 5.0),
        max_retries=kw.pop("max_retries", 3),
    )
    return OpenAITeacher(client, cache_dir=kw.pop("cache_dir", tmp_path / "cache"), **kw)


def fast_retry(step):
    """A failing step that asks for a 10 ms wait (the openai client's own backoff starts at 0.5 s)."""
    return {**step, "headers": {"retry-after-ms": "10", **step.get("headers", {})}}


def test_normal_answer(server, clips, tmp_path):
    t = teacher(server, tmp_path, frames=8, frame_size=64)
    (chain,) = t.generate(clips[:1])
    assert chain.error is None and chain.text == CHAIN and chain.teacher == "openai:test-model"
    assert chain.meta["usage"]["total_tokens"] == 130 and chain.meta["cached"] is False
    assert chain.meta["attempts"] == 1
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "test-model" and body["temperature"] == 0.2 and body["max_tokens"] == 600
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    images = [p for p in user["content"] if p["type"] == "image_url"]
    labels = [p["text"] for p in user["content"] if p["type"] == "text" and p["text"].startswith("Frame ")]
    assert len(images) == 8
    assert labels == [f"Frame {k}:" for k in t.shown_frames()]
    assert t.shown_frames()[0] == 1 and t.shown_frames()[-1] == 16
    from PIL import Image

    head, b64 = images[0]["image_url"]["url"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(b64))).size == (64, 64)
    prompt = user["content"][-1]["text"]
    assert '"frames a-b"' in prompt and "The action is one of:" in prompt and "jump" in prompt


def test_429_and_5xx_are_retried_and_retry_after_is_honoured(server, clips, tmp_path):
    server.script = [
        {
            "status": 429,
            "json": {"error": {"message": "Rate limit reached"}},
            "headers": {"Retry-After": "0.1"},
        },
        fast_retry({"status": 503, "json": {"error": {"message": "overloaded"}}}),
        {"json": completion()},
    ]
    (chain,) = teacher(server, tmp_path).generate(clips[:1])
    assert chain.error is None and chain.text == CHAIN and chain.meta["attempts"] == 3
    assert len(server.requests) == 3
    # the server's Retry-After (0.1 s), not the client's own first backoff (0.375-0.5 s)
    assert 0.1 <= server.gaps()[0] < 0.35, server.gaps()
    assert server.gaps()[1] < 0.3  # retry-after-ms: 10


def test_client_errors_are_not_retried(server, clips, tmp_path):
    for status in (400, 401, 404, 422):
        server.requests.clear()
        server.script = [{"status": status, "json": {"error": {"message": "bad request: image too large"}}}]
        (chain,) = teacher(server, tmp_path).generate(clips[:1])
        assert f"HTTP {status}" in chain.error and "image too large" in chain.error, chain.error
        assert f"{server.url}/chat/completions" in chain.error  # names the endpoint
        assert (
            "attempts" not in chain.error and chain.meta["status"] == status and chain.meta["attempts"] == 1
        )
        assert len(server.requests) == 1


def test_gives_up_after_the_retries(server, clips, tmp_path):
    server.script = [fast_retry({"status": 500, "json": {"error": "boom"}})]
    (chain,) = teacher(server, tmp_path, max_retries=2).generate(clips[:1])
    assert chain.text == "" and "after 3 attempts" in chain.error and "HTTP 500" in chain.error
    assert "boom" in chain.error and chain.meta["attempts"] == 3 and len(server.requests) == 3
    # without a Retry-After the client backs off on its own (0.5 s, less up to 25% jitter)
    server.requests.clear()
    server.script = [{"status": 502, "json": {}}]
    (chain,) = teacher(server, tmp_path, max_retries=1).generate(clips[:1])
    assert "HTTP 502" in chain.error and len(server.requests) == 2 and server.gaps()[0] >= 0.35


def test_timeout(server, clips, tmp_path):
    server.script = [{"sleep": 3.0, "json": completion()}]
    t0 = time.perf_counter()
    (chain,) = teacher(server, tmp_path, timeout_s=0.2, max_retries=1).generate(clips[:1])
    assert "timed out after 0.2 s" in chain.error and "after 2 attempts" in chain.error
    assert time.perf_counter() - t0 < 2.5  # two 0.2 s waits and one backoff, not 3 s
    assert len(server.requests) == 2
    # a slow first answer, then a fast one: the retry succeeds
    server.script = [{"sleep": 3.0, "json": completion()}, {"json": completion()}]
    (chain,) = teacher(server, tmp_path, timeout_s=0.2, max_retries=1, cache_dir=tmp_path / "c2").generate(
        clips[:1]
    )
    assert chain.error is None and chain.text == CHAIN and chain.meta["attempts"] == 2


def test_connection_refused(clips, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(f"http://127.0.0.1:{port}/v1", "test-model", KEY, timeout_s=2, max_retries=0)
    (chain,) = OpenAITeacher(client, cache_dir=tmp_path).generate(clips[:1])
    assert "connection failed" in chain.error and f"127.0.0.1:{port}/v1/chat/completions" in chain.error


def test_malformed_answers_are_errors_and_not_cached(server, clips, tmp_path):
    for raw in (b"{not json", b"<html>gateway</html>", b'{"choices": []}', b'{"choices": [{"message": {}}]}'):
        server.script = [{"raw": raw}]
        (chain,) = teacher(server, tmp_path).generate(clips[:1])
        assert chain.text == "" and "malformed response" in chain.error, (raw, chain.error)
    assert len(server.requests) == 4  # not retried...
    server.script = [{"json": completion()}]
    (chain,) = teacher(server, tmp_path).generate(clips[:1])
    assert chain.error is None and chain.text == CHAIN and not chain.meta["cached"]  # ...nor cached


def test_cache_hit_on_the_second_run(server, clips, tmp_path, monkeypatch):
    first = teacher(server, tmp_path).generate(clips[:3])
    assert len(server.requests) == 3 and not any(c.meta["cached"] for c in first)
    # a new teacher with the same cache: no request, no video decoding
    import reasonact.cot.teacher as T

    monkeypatch.setattr(T, "read_video", lambda *a, **k: pytest.fail("a cache hit must not decode the video"))
    second = teacher(server, tmp_path).generate(clips[:3])
    assert len(server.requests) == 3
    assert [c.text for c in second] == [c.text for c in first] and all(c.meta["cached"] for c in second)
    assert second[0].meta["usage"] == first[0].meta["usage"]
    monkeypatch.undo()
    # another format (another prompt) or another model are not cache hits
    teacher(server, tmp_path, fmt="process").generate(clips[:1])
    assert len(server.requests) == 4
    client = ChatClient(server.url, "other-model", KEY, max_retries=0)
    OpenAITeacher(client, cache_dir=tmp_path / "cache").generate(clips[:1])
    assert len(server.requests) == 5
    # a failed answer is not cached: the next run asks again
    server.script = [{"status": 500, "json": {}}]
    teacher(server, tmp_path, max_retries=0, cache_dir=tmp_path / "c3").generate(clips[:1])
    server.script = [{"json": completion()}]
    (chain,) = teacher(server, tmp_path, cache_dir=tmp_path / "c3").generate(clips[:1])
    assert chain.error is None and not chain.meta["cached"] and len(server.requests) == 7
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 5 and not list((tmp_path / "cache").rglob("*.tmp"))
    for f in files:  # the cache holds the answer, never the key
        assert json.loads(f.read_text())["text"] == CHAIN and KEY[:8] not in f.read_text()


def test_concurrency_limit(server, clips, tmp_path):
    server.script = [{"sleep": 0.3, "json": completion()}]
    chains = teacher(server, tmp_path, concurrency=3).generate(clips)
    assert all(c.error is None for c in chains)
    assert [c.record["video"] for c in chains] == [c["video"] for c in clips]
    assert server.max_in_flight == 3


def test_key_never_shown(server, clips, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"Incorrect API key provided: {KEY[:12]}****{KEY[-4:]}. Your key: {KEY}"}}
    server.script = [fast_retry({"status": 429, "json": echo}), {"status": 401, "json": echo}]
    t = teacher(server, tmp_path, max_retries=2)
    (chain,) = t.generate(clips[:1])
    assert "HTTP 401" in chain.error and "Incorrect API key" in chain.error and len(server.requests) == 2
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in server.requests)  # it was sent
    client = t.client
    with pytest.raises(ChatError) as info:
        client.chat([{"role": "user", "content": "hi"}])
    assert info.value.status == 401 and info.value.__cause__ is None and info.value.__context__ is None
    texts = [
        chain.error,
        repr(t),
        repr(client),
        str(info.value),
        repr(info.value),
        "".join(traceback.format_exception(info.value)),
        caplog.text,
        repr(chain),
    ]
    assert "Retrying request" in caplog.text  # the 429 retry was logged...
    for text in texts:  # ...and nothing shows the key or any 8-character piece of it
        assert KEY not in text
        assert not any(KEY[i : i + 8] in text for i in range(len(KEY) - 7)), text


def test_environment_and_recipe(server, clips, monkeypatch, tmp_path):
    from reasonact.config import load_config, parse_overrides

    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("REASONACT_TEACHER_MODEL", "env-model")
    monkeypatch.setenv("MY_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one-0123456789")
    recipe = load_config(
        "tiny",
        parse_overrides(["teacher.api_key_env=MY_KEY", f"teacher.cache_dir={tmp_path}", "teacher.frames=4"]),
    )
    t = make_teacher("openai", recipe)
    assert t.client.model == "env-model" and t.client.base_url == server.url and t.frames == 4
    assert t.cache.dir == tmp_path and KEY not in repr(t) and "key=set" in repr(t)
    (chain,) = t.generate(clips[:1])
    assert chain.error is None
    assert server.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"  # MY_KEY, not OPENAI_API_KEY
    recipe.teacher.model = "recipe-model"  # the recipe wins over the environment
    assert make_teacher("openai", recipe).client.model == "recipe-model"
    monkeypatch.delenv("MY_KEY")  # a local server without a key: still a client, no OPENAI_API_KEY sent
    t = make_teacher("openai", recipe)
    assert "key=unset" in repr(t)
    t.generate([{**clips[1], "id": "other"}])
    assert "sk-not-this-one" not in server.requests[-1]["headers"].get("authorization", "")
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(ChatError, match="MY_KEY"):  # OpenAI itself without a key: a clear error, early
        make_teacher("openai", recipe)


def test_a_bad_clip_does_not_stop_the_batch(server, clips, tmp_path):
    missing = {**clips[0], "video": str(tmp_path / "missing.mp4")}
    chains = teacher(server, tmp_path).generate([missing, clips[1]])
    assert "video: file not found" in chains[0].error and chains[1].error is None
    assert len(server.requests) == 1  # nothing was sent for the clip that could not be read
