"""User study: a blind sequence of real-world faces, two restorations side by side (method
names hidden, sides dealt by the server); every vote is committed at once. Results sit behind an
admin token.

Every event checks its caller: the participant lives in the server-side session state (set by
Start, from an id the server issued; Start again in the same tab keeps it until its sequence is
done, and one network address gets at most NEW_IDS_PER_ADDRESS new ids a minute), a vote names
the trial the page shows, no later one than the server showed this tab, and is stored only if the
server dealt that trial to this participant and it is their next one (app.study_store), and the
results need the token on every call. Raw queue calls get no further than the page does."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace

import gradio as gr
from sqlalchemy.exc import SQLAlchemyError

from . import study_stats
from .admin import Refused
from .context import AppContext
from .study import NotReady
from .study_gate import REFUSED
from .study_store import REFUSALS, StoreUnavailable, Vote

INTRO = """Each screen shows **two restorations of the same photo**. Click the one that looks
better to you: sharper, more natural, more like a real face. There are no right answers, the
methods are not named, and the sides are random. Your votes are stored anonymously under a
random participant id as soon as you click; you can stop at any time."""
DB_DOWN = "The study database cannot be reached right now: {what}. Please try again in a minute."
SAVED_KEY = "smfd-study-participant"  # this browser's participant id, in its localStorage
# Only an id as the server issues them is sent: a value an earlier version kept under the key (an
# encrypted one) is no forged id, and starts a new participant without being counted as one. A
# browser that refuses storage (some private windows) throws: its tab starts as a new participant.
READ_SAVED_JS = f"""(saved, state) => {{
  try {{
    const id = localStorage.getItem('{SAVED_KEY}');
    return [/^[0-9a-f]{{32}}$/.test(id || '') ? id : null, state];
  }} catch (e) {{ return [null, state]; }}
}}"""
# "Someone else used this browser": their id goes at once, so that a Start after a failed one
# (a busy server) cannot continue their sequence.
NO_SAVED_JS = f"""(saved, state) => {{
  try {{ localStorage.removeItem('{SAVED_KEY}'); }} catch (e) {{}}
  return [null, state];
}}"""
KEEP_SAVED_JS = f"""(saved) => {{
  try {{ if (saved) localStorage.setItem('{SAVED_KEY}', saved); }} catch (e) {{}}
  return [];
}}"""
DOWNLOAD_JS = """(text) => {
  if (!text) return;
  const url = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  const a = document.createElement("a");
  a.href = url; a.download = "study_votes.csv";
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}"""


def _session(request: gr.Request | None) -> str:
    """A short digest of the browser session (stored with a vote; the hash itself is not)."""
    raw = (getattr(request, "session_hash", None) or "").encode()
    return hashlib.sha256(raw).hexdigest()[:16] if raw else ""


def _database(action, what: str):
    """Run a storage action; an unreachable or failing database becomes a clear message."""
    try:
        return action()
    except (StoreUnavailable, SQLAlchemyError):
        raise gr.Error(DB_DOWN.format(what=what), title="Study database") from None


def _screen(ctx: AppContext, participant: str, index: int | None):
    """Outputs for the participant's trial ``index`` (None: the sequence is done)."""
    study = ctx.study
    buttons = [gr.Button(interactive=index is not None)] * 2
    if index is None:
        done = f"**Thank you!** You have answered all {len(study)} photos."
        # the last trial stays this tab's: a second click on it (a lost answer, a double submit)
        # is a duplicate, not a vote for a trial never shown
        return ({"participant": participant, "trial": len(study) - 1}, None, None, done, "", *buttons)
    trial = _database(lambda: study.store.trial(participant, index), "the next photo cannot be shown "
                      "(your votes so far are saved; press Start to continue)")
    # The database holds trials of this study's photos and methods only (VoteStore.bind), so a
    # missing picture is one still being prepared.
    try:
        left, right = study.served(trial.image, trial.left), study.served(trial.image, trial.right)
    except NotReady:
        raise gr.Error("This photo is not available right now; please try again in a minute.") from None
    # Served copies have random names: nothing in the page (file names, URLs, captions) tells
    # which method made which side.
    state = {"participant": participant, "trial": index, "served_at": time.time()}
    where = f"Photo {index + 1} of {len(study)} &middot; participant `{participant[:8]}`"
    return (state, str(left), str(right), where, str(index), *buttons)


def _client(request: gr.Request | None) -> str:
    return getattr(getattr(request, "client", None), "host", None) or "unknown"


def start(ctx: AppContext, saved_id, request: gr.Request = None, state: dict | None = None):
    study = ctx.study
    if study is None:
        raise gr.Error("No study photos: start the app with --study-images DIR.")
    if study.failure is not None:  # the details are in the server's log, not for participants
        raise gr.Error("The study cannot open: preparing its restorations failed. Please tell the organiser.",
                       title="Study unavailable")
    if not study.ready.is_set():
        raise gr.Error(f"The study is still being prepared ({study.prepared} of {study.total} "
                       "restorations ready). Please try again in a minute.", title="Not ready yet",
                       print_exception=False)

    def who() -> tuple[str | None, int | None]:
        """(participant, their next trial); (None, None) when no new id may be issued."""
        returning = study.store.known(saved_id)
        if saved_id is not None and not returning:
            study.store.refuse("unknown-id")
        # This tab's participant (server-side: it has started before), else this browser's, continues
        # an unfinished sequence; a finished one is the last person's at a computer a class shares:
        # Start then begins a new participant, not "Thank you!" again.
        for known in ((state or {}).get("participant"), saved_id if returning else None):
            if known is not None and (index := study.store.next_index(known)) is not None:
                return known, index
        if not study.newcomers.admit(_client(request)):
            study.store.refuse("too-many-ids")
            return None, None
        new = study.new_participant()
        return new, study.store.next_index(new)

    participant, index = _database(who, "the study cannot start")
    if participant is None:
        raise gr.Error("Too many new participants from your network address right now: please try again "
                       "in a minute.", title="Busy", print_exception=False)
    study.gate.started(getattr(request, "session_hash", None))
    return (participant, *_screen(ctx, participant, index))


# Refusals a participant (or a flood of forged calls) meets are expected answers, not server
# faults: print_exception=False keeps their tracebacks out of the server's log.
def _not_this_photo() -> gr.Error:
    return gr.Error("This vote does not belong to the photo shown to you, and was not counted. "
                    "Press Start to continue.", title="Vote refused", print_exception=False)


def vote(ctx: AppContext, side: str, state: dict | None, shown, request: gr.Request = None):
    store = ctx.study.store if ctx.study is not None else None
    participant = (state or {}).get("participant")
    if store is None or participant is None:
        if store is not None:
            store.refuse("forged")
        raise gr.Error(REFUSED, print_exception=False)
    try:
        index = int(shown)
    except (TypeError, ValueError):
        index = -1
    if index > state.get("trial", -1):  # a later trial than this tab shows: it was never shown
        store.refuse("out-of-order")
        raise _not_this_photo()
    started = state.get("served_at") if state.get("trial") == index else None
    ms = round((time.time() - started) * 1000) if started else 0
    outcome = _database(lambda: store.vote(participant, index, side, ms, _session(request)),
                        "your vote was not saved (your earlier ones are); click again")
    if outcome.status in ("forged", "out-of-order"):
        raise _not_this_photo()
    if outcome.status in ("duplicate", "replayed"):
        gr.Warning("This photo was already answered (in another tab?)"
                   + ("." if outcome.next_index is None else "; here is your next one."))
    return _screen(ctx, participant, outcome.next_index)


def results(ctx: AppContext, token, request: gr.Request = None):
    client = _client(request)
    store = ctx.study.store if ctx.study is not None else None
    try:
        ctx.admin.check(token, client)
    except Refused as exc:
        if store is not None:
            store.refuse(exc.kind)
        raise gr.Error(str(exc), title="Admin", print_exception=False) from None
    if store is None:
        raise gr.Error("No study here: start the app with --study-images DIR.")
    rows = _database(store.rows, "the results cannot be read")
    refused = _database(store.refusals, "the results cannot be read")
    votes = [Vote.from_row(r) for r in rows]
    scores = study_stats.bradley_terry(votes)
    participants = len({v.participant for v in votes})
    summary = (f"**{len(votes)} votes** from **{participants} participants** on "
               f"{len({v.image for v in votes})} photos; **{sum(refused.values())} refused** calls.")
    wins = [[s.method, s.comparisons, s.wins, round(s.win_rate * 100, 1)] for s in scores]
    wins += [[m, 0, 0, ""] for m in ctx.study.methods if m not in {s.method for s in scores}]  # not voted on yet
    bt = [[s.method, round(s.score, 3), round(s.low, 3), round(s.high, 3)] for s in scores]
    refusals = [[kind, refused[kind], REFUSALS[kind]] for kind in REFUSALS]
    figure = study_stats.plot(scores) if scores else None
    return summary, wins, bt, refusals, figure, study_stats.csv_text(rows)


def build(ctx: AppContext) -> SimpleNamespace:
    gr.Markdown(INTRO)
    if ctx.study is None:
        gr.Markdown("**No study photos here:** start the app with `--study-images DIR`.")
    # The id the server issued, kept in this browser's localStorage (it survives a restart of the
    # app and works on every replica); the server checks it against its records. Start reads it
    # from localStorage when clicked: a gr.BrowserState reads it only once its component's script
    # has arrived, and a Start clicked before that (a slow network, a busy server) sent no id and
    # began a new participant.
    saved_id = gr.Textbox(visible="hidden", elem_id="study-saved")
    state = gr.State(None)  # server-side: the participant of this session and the trial shown
    with gr.Row():
        start_btn = gr.Button("Start / continue", variant="primary", elem_id="study-start")
        # A computer shared by a class: whoever sat here before may not have finished
        newcomer = gr.Button("Start as a new participant (someone else used this browser)", size="sm",
                             elem_id="study-new")
    where = gr.Markdown(elem_id="study-where")
    shown = gr.Textbox(visible="hidden", elem_id="study-trial")  # the trial a vote answers
    with gr.Row(equal_height=True):
        left = gr.Image(label="A", type="filepath", format="png", interactive=False,
                        elem_id="study-left", buttons=["fullscreen"])
        right = gr.Image(label="B", type="filepath", format="png", interactive=False,
                         elem_id="study-right", buttons=["fullscreen"])
    with gr.Row():
        pick_left = gr.Button("A looks better", interactive=False, elem_id="study-pick-left")
        pick_right = gr.Button("B looks better", interactive=False, elem_id="study-pick-right")
    screen = [state, left, right, where, shown, pick_left, pick_right]
    # A queue of its own: a vote is a small database write that never waits behind image work.
    events = dict(api_visibility="private", concurrency_limit=8, concurrency_id="study")

    # Closures rather than partials: Gradio hands gr.Request only to a parameter it can see.
    # No progress tracking: these events are quick, and every progress message costs.
    def on_start(saved, state_, request: gr.Request):
        return start(ctx, saved, request, state_)

    def on_left(state_, trial, request: gr.Request):
        return vote(ctx, "left", state_, trial, request)

    def on_right(state_, trial, request: gr.Request):
        return vote(ctx, "right", state_, trial, request)

    def on_show(text, request: gr.Request):
        return results(ctx, text, request)

    start_btn.click(on_start, [saved_id, state], [saved_id, *screen], js=READ_SAVED_JS, **events).success(
        None, saved_id, None, js=KEEP_SAVED_JS)
    newcomer.click(lambda: None, None, state, api_visibility="private", queue=False).then(
        on_start, [saved_id, state], [saved_id, *screen], js=NO_SAVED_JS, **events).success(
        None, saved_id, None, js=KEEP_SAVED_JS)
    votes = [pick_left.click(on_left, [state, shown], screen, **events),
             pick_right.click(on_right, [state, shown], screen, **events)]
    if ctx.study is not None:
        ctx.study.gate.vote_fns = {vote["id"] for vote in votes}

    with gr.Accordion("Results (admin)", open=False, elem_id="study-admin"):
        token = gr.Textbox(label="Admin token", type="password", elem_id="study-token")
        show = gr.Button("Show results", elem_id="study-show")
        summary = gr.Markdown(elem_id="study-summary")
        with gr.Row():
            wins = gr.Dataframe(headers=["method", "comparisons", "wins", "win rate (%)"],
                                label="Win rates", interactive=False, elem_id="study-wins")
            bt = gr.Dataframe(headers=["method", "score", "95 % CI low", "95 % CI high"],
                              label="Bradley-Terry log-strengths", interactive=False, elem_id="study-bt")
        plot = gr.Plot(label="Bradley-Terry scores", elem_id="study-plot")
        refusals = gr.Dataframe(headers=["refused", "count", "what"], label="Refused calls",
                                interactive=False, elem_id="study-refusals")
        # The CSV travels only in the answer to this token-checked event and is saved by the
        # browser itself: no file on the server, no URL to fetch it by.
        csv = gr.Code(label="All votes (CSV)", language=None, max_lines=12, interactive=False,
                      elem_id="study-csv")
        download = gr.Button("Download the CSV", size="sm", elem_id="study-download")
    show.click(on_show, token, [summary, wins, bt, refusals, plot, csv],
               **events)
    download.click(None, csv, None, js=DOWNLOAD_JS)
    return SimpleNamespace()
