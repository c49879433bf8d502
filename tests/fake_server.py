"""A chat-completions server on 127.0.0.1 for tests and benchmarks.

It speaks the protocol the real openai client expects: JSON replies, SSE
streams (chunked transfer encoding, with or without the usage chunk), error
bodies {"error": {"message", "type", "param", "code"}} with real status codes
and Retry-After, and faults (connection dropped mid-stream, malformed chunk,
an error event inside a stream, a server that never answers, a stream that
stops without finish_reason). Tests queue `Reply` objects; every request is
recorded so tests can assert exactly what was sent.

Run it by hand with `python -m tests.fake_server [PORT]`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTEXT_TOO_LONG = {
    "message": "This model's maximum context length is 4096 tokens. However, your "
    "messages resulted in 5000 tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class Reply:
    """What the server does with one request.

    fault: None, "drop" (close the connection mid-stream), "malformed" (send a
    chunk that is not JSON), "error_event" (an error object inside the stream),
    "hang" (never answer), "stall" (send part of the reply, then nothing),
    "no_finish" (end the stream without finish_reason), "slow_headers" (the
    status line, then one header line every `delay` seconds, a thousand of them).
    """

    text: str = "Hello! How can I help?"
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str | None = "stop"
    usage: bool = True  # report usage (in the JSON, and in a stream when asked)
    chunk_chars: int = 4
    delay: float = 0.0  # seconds between stream chunks
    fault: str | None = None
    prompt_tokens: int = 11
    completion_tokens: int | None = None
    raw: bytes | None = None  # sent as the whole response body, as it is, then the connection closes
    pieces: list[str] | None = None  # the reply's text in exactly these chunks (instead of chunk_chars)
    # The whole body, produced piece by piece (sent as it comes, until the client leaves),
    # with this content type, for servers that misbehave in ways the options above cannot say.
    body: Callable[[], Iterable[bytes]] | None = None
    content_type: str = "text/event-stream"
    # The model's thinking, sent before the text the way a server of this dialect sends it:
    # "reasoning_content" (DeepSeek, Qwen, vLLM, llama.cpp), "reasoning" (OpenRouter, Groq)
    # or "think" (<think>...</think> opening the content: Ollama, distilled R1 models).
    reasoning: str = ""
    dialect: str = "reasoning_content"
    # Tool calls the reply makes, each {"id", "name", "arguments"} (arguments as JSON text, or
    # an object for the "object_arguments" shape), streamed in one of the shapes real servers
    # send (CALL_SHAPES), after the text.
    tool_calls: list[dict[str, Any]] | None = None
    call_shape: str = "openai"


# How servers stream tool calls, as recorded from them (see call_deltas):
# openai: id, type and name in the first piece, the arguments in fragments after it;
# whole: each call whole in one piece (vLLM, Ollama); one_chunk: every call in one chunk
# (Ollama); no_index: no index at all, the id on each call's first piece (Gemini's
# compatible API); index_zero: index 0 for every call, each with its own id (some
# proxies); from_one: indexes that start at 1; name_pieces: the name split in two;
# repeated: id and name sent again with every fragment (LiteLLM); no_id: no id ever;
# object_arguments: the arguments as a JSON object, not text.
CALL_SHAPES = ("openai", "whole", "one_chunk", "no_index", "index_zero", "from_one", "name_pieces",
               "repeated", "no_id", "object_arguments")


def call_deltas(calls: list[dict[str, Any]], shape: str) -> list[list[dict[str, Any]]]:
    """The `tool_calls` list of each streamed chunk for `calls`, in `shape`."""
    chunks: list[list[dict[str, Any]]] = []
    if shape == "one_chunk":
        return [[{"index": n, "id": c["id"], "type": "function",
                  "function": {"name": c["name"], "arguments": c["arguments"]}} for n, c in enumerate(calls)]]
    for n, call in enumerate(calls):
        args = call["arguments"]
        if shape in ("whole", "object_arguments"):
            value = json.loads(args or "{}") if shape == "object_arguments" else args
            chunks.append([{"index": n, "id": call["id"], "type": "function",
                            "function": {"name": call["name"], "arguments": value}}])
            continue
        pieces = [args[i:i + 5] for i in range(0, len(args), 5)]
        index: dict[str, Any] = {} if shape == "no_index" else {"index": 0 if shape == "index_zero" else
                                                                n + (shape == "from_one")}
        ident = {} if shape == "no_id" else {"id": call["id"]}
        if shape == "name_pieces":
            half = len(call["name"]) // 2
            chunks.append([{**index, **ident, "type": "function", "function": {"name": call["name"][:half]}}])
            chunks.append([{**index, "function": {"name": call["name"][half:], "arguments": ""}}])
        else:
            chunks.append([{**index, **ident, "type": "function",
                            "function": {"name": call["name"], "arguments": ""}}])
        for piece in pieces:
            extra = {**ident, "type": "function"} if shape == "repeated" else {}
            function = {"name": call["name"], "arguments": piece} if shape == "repeated" else \
                {"arguments": piece}
            chunks.append([{**index, **extra, "function": function}])
    return chunks


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up mid-request (Ctrl-C, timeouts) are normal here


class FakeServer:
    """Start with `with FakeServer() as server:`; `server.base_url` ends in /v1."""

    def __init__(self, port: int = 0, *, tls: ssl.SSLContext | None = None) -> None:
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[Recorded] = []
        self.models = ["gpt-4o-mini", "test-model", "deepseek-chat"]
        self.model_fields: dict[str, dict] = {}  # more fields of a listed model (vLLM's max_model_len)
        self.props: dict | None = None  # llama.cpp's GET /props, when this server plays one
        self.rejects_stream_options = False  # like servers that predate include_usage
        # Parameters refused as OpenAI's reasoning models refuse them: "max_tokens" (use
        # max_completion_tokens) and "temperature" (only the default, 1, is supported); roles
        # refused as o1-mini refuses them: "system", and "developer" too.
        self.rejects: set[str] = set()
        self.any_model = False  # like llama.cpp: one model, whatever name is asked for
        # A model that reads no images: a request with an image_url part gets a 400 in these
        # words (as DeepSeek, llama.cpp without a projector, or OpenAI's text models answer).
        self.refuses_images: str | None = None
        self.refuses_tools: str | None = None  # a request with `tools` gets a 400 in these words
        self.responder: Callable[[dict[str, Any]], Reply] | None = None  # picks a reply by request
        self.stopping = threading.Event()
        self.abandoned = 0  # bodies the client stopped reading before their end
        self._httpd = _QuietServer(("127.0.0.1", port), _Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}/v1"

    def queue(self, *replies: Reply) -> FakeServer:
        self.replies.extend(replies)
        return self

    def next_reply(self, body: dict[str, Any]) -> Reply:
        if self.replies:
            return self.replies.popleft()
        return self.responder(body) if self.responder else self.default

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path.endswith("/chat/completions") and r.body]

    @property
    def parts(self) -> list[list[dict[str, Any]]]:
        """The content parts of each request's last message, as received (a string content
        as the one text part it stands for)."""
        found = []
        for body in self.chat_requests:
            content = body["messages"][-1]["content"]
            found.append([{"type": "text", "text": content}] if isinstance(content, str) else content)
        return found

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as the servers this stands in for set it (uvicorn under vLLM, Go's net/http
    # under Ollama): with Nagle's algorithm on, a small body written after its headers waits
    # for their ACK, which Linux delays by 40 ms, so every short response took 40 ms more.
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    @property
    def fake(self) -> FakeServer:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test",
                     **self.fake.model_fields.get(m, {})} for m in self.fake.models]
            self._json(200, {"object": "list", "data": data})
        elif self.path == "/props" and self.fake.props is not None:
            self._json(200, self.fake.props)
        else:
            self._json(404, error_body(f"no route {self.path}", "invalid_request_error"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self._json(400, error_body("body is not JSON", "invalid_request_error"))
            return
        self._record(body)
        if self.path.split("?")[0] != "/v1/chat/completions":
            self._json(404, error_body(f"Invalid URL (POST {self.path})", "invalid_request_error"))
            return
        if self.fake.rejects_stream_options and "stream_options" in body:
            self._json(400, error_body("Unrecognized request argument supplied: stream_options",
                                       "invalid_request_error", param="stream_options"))
            return
        if "max_tokens" in self.fake.rejects and "max_tokens" in body:
            self._json(400, error_body("Unsupported parameter: 'max_tokens' is not supported with this "
                                       "model. Use 'max_completion_tokens' instead.",
                                       "invalid_request_error", "unsupported_parameter", "max_tokens"))
            return
        if "temperature" in self.fake.rejects and body.get("temperature", 1) != 1:
            self._json(400, error_body(f"Unsupported value: 'temperature' does not support "
                                       f"{body['temperature']} with this model. Only the default (1) "
                                       "value is supported.", "invalid_request_error", "unsupported_value",
                                       "temperature"))
            return
        for role in ("system", "developer"):
            if role in self.fake.rejects and any(m.get("role") == role for m in body.get("messages", [])):
                index = next(n for n, m in enumerate(body["messages"]) if m.get("role") == role)
                self._json(400, error_body(f"Unsupported value: 'messages[{index}].role' does not support "
                                           f"'{role}' with this model.", "invalid_request_error",
                                           "unsupported_value", f"messages[{index}].role"))
                return
        if self.fake.refuses_images and any(
                isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
                for m in body.get("messages", [])):
            self._json(400, error_body(self.fake.refuses_images, "invalid_request_error"))
            return
        if self.fake.refuses_tools and body.get("tools"):
            self._json(400, error_body(self.fake.refuses_tools, "invalid_request_error"))
            return
        reply = self.fake.next_reply(body)
        if reply.fault == "slow_headers":
            self._slow_headers(reply)
            return
        if reply.fault == "hang":
            self.fake.stopping.wait(60)
            self.close_connection = True
            return
        if reply.status != 200 or reply.error is not None:
            self._json(reply.status, reply.error or error_body("failed", "server_error"),
                       reply.headers)
            return
        if body.get("model") not in self.fake.models and not self.fake.any_model:
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            self._json(404, error_body(message, "invalid_request_error", "model_not_found"))
            return
        if reply.raw is not None:
            self._raw(reply.raw)
        elif reply.body is not None:
            self._produce(reply)
        elif body.get("stream"):
            self._stream(body, reply)
        else:
            self._json(200, completion(body, reply), reply.headers)

    def _record(self, body: dict[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake.requests.append(Recorded(self.command, self.path, headers, body))

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _raw(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def _slow_headers(self, reply: Reply) -> None:
        """Headers that trickle: each line well within a read timeout, the whole never done."""
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self.wfile.flush()
            for n in range(1000):
                if self.fake.stopping.wait(reply.delay):
                    return
                self.wfile.write(f"X-Slow-{n}: waiting\r\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.fake.abandoned += 1  # the client gave up, as it should have

    def _produce(self, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.close_connection = True
        try:
            for piece in reply.body():
                if self.fake.stopping.is_set():
                    return
                if piece:  # an empty chunk would end the body
                    self._chunk(piece)
            self._end()
        except (BrokenPipeError, ConnectionResetError):
            self.fake.abandoned += 1  # the client stopped reading, as it should have

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self._chunk(f"data: {text}\n\n".encode())

    def _stream(self, body: dict[str, Any], reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                "created": 1700000000, "model": body["model"]}
        pieces = reply.pieces or [reply.text[i:i + reply.chunk_chars]
                                  for i in range(0, len(reply.text), reply.chunk_chars)] or [""]
        thoughts = [reply.reasoning[i:i + reply.chunk_chars]
                    for i in range(0, len(reply.reasoning), reply.chunk_chars)]
        if reply.dialect == "think" and reply.reasoning:
            whole = f"<think>\n{reply.reasoning}\n</think>\n\n" + "".join(pieces)
            pieces, thoughts = [whole[i:i + reply.chunk_chars]
                                for i in range(0, len(whole), reply.chunk_chars)], []
        try:
            self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "finish_reason": None}]})
            for thought in thoughts:
                if reply.delay:
                    time.sleep(reply.delay)
                self._event({**base, "choices": [{"index": 0, "delta": {reply.dialect: thought},
                                                   "finish_reason": None}]})
            for n, piece in enumerate(pieces):
                if reply.delay:
                    time.sleep(reply.delay)
                if self.fake.stopping.is_set():
                    return
                if n == len(pieces) // 2 and self._fault_midway(reply):
                    return
                self._event({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                                   "finish_reason": None}]})
            for calls in call_deltas(reply.tool_calls or [], reply.call_shape):
                if reply.delay:
                    time.sleep(reply.delay)
                self._event({**base, "choices": [{"index": 0, "delta": {"tool_calls": calls},
                                                   "finish_reason": None}]})
            if reply.fault == "no_finish":
                self._end()
                return
            self._event({**base, "choices": [{"index": 0, "delta": {},
                                               "finish_reason": reply.finish_reason}]})
            if reply.usage and (body.get("stream_options") or {}).get("include_usage"):
                self._event({**base, "choices": [], "usage": usage(reply)})
            self._event("[DONE]")
            self._end()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (Ctrl-C): nothing to clean up

    def _fault_midway(self, reply: Reply) -> bool:
        """Apply a mid-stream fault; True when the stream must stop here."""
        if reply.fault == "drop":
            self.wfile.write(b"ff\r\ndata: {\"trunc")  # a chunk that never completes
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return True
        if reply.fault == "malformed":
            self._event("{this is not json")
        elif reply.fault == "error_event":
            self._event(error_body("The server had an error while processing your request.",
                                   "server_error"))
        elif reply.fault == "stall":
            self.fake.stopping.wait(60)
            self.close_connection = True
            return True
        return False

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def usage(reply: Reply) -> dict[str, Any]:
    completion_tokens = reply.completion_tokens
    if completion_tokens is None:
        completion_tokens = max(1, len(reply.text) // 4)
    figures: dict[str, Any] = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion_tokens,
                               "total_tokens": reply.prompt_tokens + completion_tokens}
    if reply.reasoning:
        thought = max(1, len(reply.reasoning) // 4)
        figures.update(completion_tokens=completion_tokens + thought,
                       total_tokens=reply.prompt_tokens + completion_tokens + thought,
                       completion_tokens_details={"reasoning_tokens": thought})
    return figures


def completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    text = "".join(reply.pieces) if reply.pieces else reply.text
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reply.reasoning and reply.dialect == "think":
        message["content"] = f"<think>\n{reply.reasoning}\n</think>\n\n{text}"
    elif reply.reasoning:
        message[reply.dialect] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for c in reply.tool_calls]
        message["content"] = text or None
    payload: dict[str, Any] = {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
    }
    if reply.usage:
        payload["usage"] = usage(reply)
    return payload


if __name__ == "__main__":
    import sys

    with FakeServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0) as server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
