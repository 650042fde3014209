"""Votes from browser sessions that never pressed Start, refused before they join Gradio's queue.

Every study event shares one queue (study_tab), so a flood of raw vote calls held up the votes of
the participants behind it, although each was refused in a moment: with 800 sent at once, the
participants' votes in the 20 s after took seconds (README, *Fast*). A vote can only count for a
session that pressed Start (its participant lives in that session's server-side state), so the
gate lets the first few such calls per address through, where the page reads why ("press Start
first": the honest case, a tab open across a restart of the app), and answers the rest itself,
in the HTTP request, without queueing them. Votes of sessions that pressed Start always pass,
whatever address they share (a class behind one router)."""

from __future__ import annotations

import collections
import json
import re
import threading
from collections.abc import Callable

from gradio.data_classes import PredictBody

from .rate_limit import SlidingWindow

NOT_STARTED_PER_ADDRESS = 20  # votes of sessions without Start that reach the queue, per address and window
WINDOW = 10.0  # seconds
SESSIONS_KEPT = 100_000  # sessions that pressed Start remembered (oldest forgotten first): a few MB
REFUSED = "No study session in this tab: press Start first."
# Gradio's REST route: it runs an event named in the path, whatever its api_visibility
CALL = re.compile(r"/call/(?:v2/)?([^/]+)/?$")


class StudyGate:
    """Which calls to let into the queue. ``vote_fns``: the queue's ids of the vote events
    (study_tab.build sets them); ``private_names``: the names of the events only the page calls
    (main.build_app sets them); ``refuse(kind)``: counts a refusal (VoteStore.refuse)."""

    def __init__(self, refuse: Callable[[str], None]):
        self.vote_fns: set[int] = set()
        self.private_names: set[str] = set()
        self.refuse = refuse
        self._started: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._not_started = SlidingWindow(NOT_STARTED_PER_ADDRESS, WINDOW)

    def started(self, session: str | None) -> None:
        """Record a session that pressed Start."""
        if not session:
            return
        with self._lock:
            self._started[session] = None
            self._started.move_to_end(session)
            while len(self._started) > SESSIONS_KEPT:
                self._started.popitem(last=False)

    def admits(self, body: bytes, client: str) -> bool:
        """Whether a queue call (its JSON body) may join the queue. The body is read as Gradio reads
        it (json.loads, which takes a UTF-8 BOM or UTF-16, then its PredictBody): "45" or 45.0 is
        function 45 there, so it is here."""
        try:
            call = PredictBody.model_validate(json.loads(body))
        # malformed (JSON's or pydantic's ValidationError; nested past Python's recursion limit):
        # Gradio answers it itself
        except (ValueError, RecursionError):
            return True
        if call.fn_index not in self.vote_fns or not call.session_hash:  # not a vote; no session: Gradio's 400
            return True
        with self._lock:
            if call.session_hash in self._started:
                return True
        if self._not_started.admit(client):
            return True
        self.refuse("forged")
        return False


class GateMiddleware:
    """ASGI middleware that asks a :class:`StudyGate` about every call joining the queue; a refused
    one is answered 429 with the reason, which Gradio's page shows. A call of a private event by
    name (Gradio's /call/NAME, which would join the queue past this gate) is answered 404."""

    def __init__(self, app, gate: StudyGate):
        self.app, self.gate = app, gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        called = CALL.search(scope["path"])
        if called and called[1] in self.gate.private_names:
            return await _answer(send, 404, f"No API endpoint named /{called[1]}.")
        if not scope["path"].endswith("/queue/join"):
            return await self.app(scope, receive, send)
        # The whole body (Gradio reads all of it too): a vote padded past any bound read here
        # would otherwise pass unseen. Joined once, not by repeated concatenation.
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        client = (scope.get("client") or ("unknown",))[0]
        if not self.gate.admits(body, client):
            return await _answer(send, 429, REFUSED)
        replayed = False

        async def replay():  # the body read above, then whatever the connection says next
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _answer(send, status: int, detail: str) -> None:
    """Answer a request here, as FastAPI words an HTTPException."""
    answer = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})
