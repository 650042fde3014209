"""A participant (or an attacker) talking to the study the way the page does: raw queue calls by
fn_index over HTTP, as Gradio's front end makes them. Used by the load script
(scripts/load_study.py) and by the tests that try to forge votes; the app never imports it.

    async with StudyClient("http://127.0.0.1:7860/") as c:
        screen = await c.start()            # a new participant, or saved_id to continue
        screen = await c.vote("left", screen.trial)
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

import httpx

API = "gradio_api"


class CallFailed(Exception):
    """The app answered an event with an error (a gr.Error): ``message`` is what the page shows."""

    def __init__(self, message: str, title: str | None = None):
        super().__init__(message)
        self.message, self.title = message, title


@dataclass
class Screen:
    """What the page shows after Start or a vote."""
    participant: str | None
    trial: str  # the hidden field a vote sends back ("" after the last photo)
    where: str
    left: dict | None
    right: dict | None
    warnings: list[str] = field(default_factory=list)


class StudyClient:
    """One browser tab: its own session hash, the events found by their elements' ids."""

    def __init__(self, url: str, session: str | None = None, timeout: float = 120):
        self.url = url.rstrip("/") + "/"
        self.session = session or secrets.token_hex(6)
        self.http = httpx.AsyncClient(timeout=timeout)
        self.fns: dict[str, tuple[int, int]] = {}  # elem_id of the button -> (fn_index, trigger id)

    async def __aenter__(self):
        await self.connect()
        return self

    async def __aexit__(self, *exc):
        await self.http.aclose()

    async def connect(self, config: dict | None = None) -> dict:
        if config is None:
            config = (await self.http.get(self.url + "config")).raise_for_status().json()
        by_id = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
        for dep in config["dependencies"]:
            for target, event in dep.get("targets", []):
                if event == "click" and by_id.get(target):
                    self.fns.setdefault(by_id[target], (dep["id"], target))
        return config

    async def call(self, button: str, data: list) -> list:
        """Click ``button`` (its elem_id) with these input values; the outputs, or CallFailed."""
        fn_index, trigger = self.fns[button]
        return await self.call_fn(fn_index, data, trigger)

    async def call_fn(self, fn_index: int, data: list, trigger: int | None = None) -> list:
        body = {"data": data, "fn_index": fn_index, "session_hash": self.session,
                "trigger_id": trigger, "event_data": None}
        joined = await self.http.post(f"{self.url}{API}/queue/join", json=body)
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        self.warnings = []
        async with self.http.stream("GET", f"{self.url}{API}/queue/data",
                                    params={"session_hash": self.session}) as stream:
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                if msg.get("msg") == "log" and msg.get("level") == "warning":
                    self.warnings.append(msg.get("log") or msg.get("message") or "")
                if msg.get("msg") == "process_completed":
                    output = msg.get("output") or {}
                    if not msg.get("success"):
                        raise CallFailed(output.get("error") or "Error", output.get("title"))
                    return output["data"]
        raise CallFailed("the event stream ended without a result")

    def _screen(self, outputs: list, participant: str | None) -> Screen:
        _state, left, right, where, trial, *_ = outputs
        return Screen(participant, trial or "", where or "", left, right, list(self.warnings))

    async def start(self, saved_id: str | None = None) -> Screen:
        outputs = await self.call("study-start", [saved_id, None])  # the session state: the server keeps its own
        return self._screen(outputs[1:], outputs[0])

    async def vote(self, side: str, trial: str) -> Screen:
        outputs = await self.call(f"study-pick-{side}", [None, trial])
        return self._screen(outputs, None)

    async def results(self, token: str) -> list:
        return await self.call("study-show", [token])
