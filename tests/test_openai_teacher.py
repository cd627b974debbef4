"""OpenAITeacher and ChatClient against a local chat-completions server on 127.0.0.1 (no external calls):
a normal answer, 429 then success, timeouts, malformed JSON, the on-disk cache, the concurrency limit,
and the API key never appearing in reprs, errors or logs."""

import base64
import io
import json
import logging
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reasonact.cot.chat_client import ChatClient, ChatError, Secret
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
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
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


def teacher(server, tmp_path, key=KEY, sleeps=None, **kw):
    client = ChatClient(
        server.url,
        "test-model",
        key,
        timeout_s=kw.pop("timeout_s", 5.0),
        max_retries=kw.pop("max_retries", 3),
        backoff_s=0.01,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )
    return OpenAITeacher(client, cache_dir=kw.pop("cache_dir", tmp_path / "cache"), **kw)


def test_normal_answer(server, clips, tmp_path):
    t = teacher(server, tmp_path, frames=8, frame_size=64)
    (chain,) = t.generate(clips[:1])
    assert chain.error is None and chain.text == CHAIN and chain.teacher == "openai:test-model"
    assert chain.meta["usage"]["total_tokens"] == 130 and chain.meta["cached"] is False
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "test-model" and body["temperature"] == 0.2 and body["max_tokens"] == 600
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    images = [p for p in user["content"] if p["type"] == "image_url"]
    labels = [p["text"] for p in user["content"] if p["type"] == "text" and p["text"].startswith("Frame ")]
    assert len(images) == 8
    assert (
        labels == [f"Frame {k}:" for k in t.shown_frames()]
        and t.shown_frames()[0] == 1
        and t.shown_frames()[-1] == 16
    )
    from PIL import Image

    head, b64 = images[0]["image_url"]["url"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(b64))).size == (64, 64)
    prompt = user["content"][-1]["text"]
    assert '"frames a-b"' in prompt and "The action is one of:" in prompt and "jump" in prompt


def test_429_then_success(server, clips, tmp_path):
    server.script = [
        {
            "status": 429,
            "json": {"error": {"message": "Rate limit reached"}},
            "headers": {"Retry-After": "0"},
        },
        {"status": 503, "json": {"error": {"message": "overloaded"}}},
        {"json": completion()},
    ]
    sleeps = []
    (chain,) = teacher(server, tmp_path, sleeps=sleeps).generate(clips[:1])
    assert chain.error is None and chain.text == CHAIN and chain.meta["attempts"] == 3
    assert len(server.requests) == 3
    assert sleeps[0] == 0.0  # the server's Retry-After
    assert 0.02 <= sleeps[1] <= 0.025  # otherwise exponential backoff: 0.01 * 2**1 (+ <= 25% jitter)


def test_client_error_is_not_retried(server, clips, tmp_path):
    server.script = [{"status": 400, "json": {"error": {"message": "bad request: image too large"}}}]
    (chain,) = teacher(server, tmp_path).generate(clips[:1])
    assert "HTTP 400" in chain.error and "image too large" in chain.error and len(server.requests) == 1


def test_gives_up_after_the_retries(server, clips, tmp_path):
    server.script = [{"status": 500, "json": {"error": "boom"}}]
    sleeps = []
    (chain,) = teacher(server, tmp_path, sleeps=sleeps, max_retries=2).generate(clips[:1])
    assert chain.text == "" and "after 3 attempts" in chain.error and "HTTP 500" in chain.error
    assert len(server.requests) == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_timeout(server, clips, tmp_path):
    server.script = [{"sleep": 3.0, "json": completion()}]
    t0 = time.perf_counter()
    (chain,) = teacher(server, tmp_path, timeout_s=0.2, max_retries=1).generate(clips[:1])
    assert "timed out" in chain.error and time.perf_counter() - t0 < 2.5  # two 0.2 s waits, not 3 s
    assert len(server.requests) == 2
    # a slow first answer, then a fast one: the retry succeeds
    server.script = [{"sleep": 3.0, "json": completion()}, {"json": completion()}]
    (chain,) = teacher(server, tmp_path, timeout_s=0.2, max_retries=1, cache_dir=tmp_path / "c2").generate(
        clips[:1]
    )
    assert chain.error is None and chain.text == CHAIN


def test_malformed_json(server, clips, tmp_path):
    server.script = [{"raw": b"{not json"}, {"json": {"choices": []}}, {"json": completion()}]
    (chain,) = teacher(server, tmp_path, max_retries=2).generate(clips[:1])
    assert chain.error is None and chain.text == CHAIN and len(server.requests) == 3
    server.script = [{"raw": b"<html>gateway</html>"}]
    (chain,) = teacher(server, tmp_path, max_retries=1, cache_dir=tmp_path / "c2").generate(clips[:1])
    assert "malformed response" in chain.error


def test_cache_hit_on_the_second_run(server, clips, tmp_path, monkeypatch):
    first = teacher(server, tmp_path).generate(clips[:3])
    assert len(server.requests) == 3 and not any(c.meta["cached"] for c in first)
    # a new teacher with the same cache: no request, no video decoding
    import reasonact.cot.teacher as T

    monkeypatch.setattr(T, "read_video", lambda *a, **k: pytest.fail("a cache hit must not decode the video"))
    second = teacher(server, tmp_path).generate(clips[:3])
    assert len(server.requests) == 3
    assert [c.text for c in second] == [c.text for c in first] and all(c.meta["cached"] for c in second)
    monkeypatch.undo()
    # another model, another format or a failed answer are not cache hits
    teacher(server, tmp_path, fmt="process").generate(clips[:1])
    assert len(server.requests) == 4
    server.script = [{"status": 500, "json": {}}]
    teacher(server, tmp_path, max_retries=0, cache_dir=tmp_path / "c3").generate(clips[:1])
    server.script = [{"json": completion()}]
    (chain,) = teacher(server, tmp_path, cache_dir=tmp_path / "c3").generate(clips[:1])
    assert chain.error is None and not chain.meta["cached"]


def test_concurrency_limit(server, clips, tmp_path):
    server.script = [{"sleep": 0.3, "json": completion()}]
    chains = teacher(server, tmp_path, concurrency=3).generate(clips)
    assert all(c.error is None for c in chains) and [c.record["video"] for c in chains] == [
        c["video"] for c in clips
    ]
    assert server.max_in_flight == 3


def test_key_never_shown(server, clips, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"Incorrect API key provided: {KEY[:12]}****{KEY[-4:]}. Your key: {KEY}"}}
    server.script = [{"status": 429, "json": echo}, {"status": 401, "json": echo}]
    t = teacher(server, tmp_path, max_retries=2)
    (chain,) = t.generate(clips[:1])
    assert "HTTP 401" in chain.error
    client = t.client
    with pytest.raises(ChatError) as info:
        client.chat([{"role": "user", "content": "hi"}])
    texts = [
        chain.error,
        repr(t),
        repr(client),
        str(client._key),
        repr(client._key),
        str(info.value),
        repr(info.value),
        "".join(traceback.format_exception(info.value)),
        caplog.text,
        repr(chain),
    ]
    assert caplog.text  # the 429 retry was logged...
    for text in texts:  # ...and nothing shows the key or any 8-character piece of it
        assert KEY not in text
        assert not any(KEY[i : i + 8] in text for i in range(len(KEY) - 7)), text
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(KEY))


def test_environment_and_recipe(server, monkeypatch, tmp_path):
    from reasonact.config import load_config, parse_overrides

    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("REASONACT_TEACHER_MODEL", "env-model")
    monkeypatch.setenv("MY_KEY", KEY)
    recipe = load_config(
        "tiny",
        parse_overrides(["teacher.api_key_env=MY_KEY", f"teacher.cache_dir={tmp_path}", "teacher.frames=4"]),
    )
    t = make_teacher("openai", recipe)
    assert t.client.model == "env-model" and t.client.base_url == server.url and t.frames == 4
    assert KEY not in repr(t)
    recipe.teacher.model = "recipe-model"  # the recipe wins over the environment
    assert make_teacher("openai", recipe).client.model == "recipe-model"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(ChatError, match="MY_KEY"):  # OpenAI itself without a key: a clear error, early
        make_teacher("openai", recipe)


def test_a_bad_clip_does_not_stop_the_batch(server, clips, tmp_path):
    missing = {**clips[0], "video": str(tmp_path / "missing.mp4")}
    chains = teacher(server, tmp_path).generate([missing, clips[1]])
    assert "video: file not found" in chains[0].error and chains[1].error is None
    assert len(server.requests) == 1  # nothing was sent for the clip that could not be read
