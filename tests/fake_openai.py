"""A small OpenAI-compatible server for tests: streams a fixed reply word by word over SSE, and can
fail its first requests with a status code to exercise retries, or be slow to its first token."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


class FakeOpenAIServer:
    def __init__(self, reply: str = "Standard delivery takes 3–5 business days.", fail_first: int = 0, fail_status: int = 503,
                 first_token_s: float = 0.0):
        self.reply, self.fail_first, self.fail_status = reply, fail_first, fail_status
        self.first_token_s = first_token_s  # seconds before the first token, as a server busy with others' answers
        self.requests: list[dict] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request):
            body = await request.json()
            self.requests.append(body | {"authorization": request.headers.get("authorization")})
            if len(self.requests) <= self.fail_first:
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=self.fail_status)
            words = self.reply.split(" ")[: body.get("max_tokens") or None]

            async def events():
                await asyncio.sleep(self.first_token_s)
                for i, word in enumerate(words):
                    delta = {"content": word if i == 0 else " " + word}
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))

    def __enter__(self) -> FakeOpenAIServer:
        threading.Thread(target=self._server.run, daemon=True).start()
        while not self._server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
