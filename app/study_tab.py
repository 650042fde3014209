"""User study: a blind sequence of real-world faces, two restorations side by side (method
names hidden, sides random); every vote is committed at once. Results sit behind an admin token."""

from __future__ import annotations

import hmac
import time
import uuid
from functools import partial
from types import SimpleNamespace

import gradio as gr

from . import study_stats
from .context import AppContext
from .study_store import Vote

INTRO = """Each screen shows **two restorations of the same photo**. Click the one that looks
better to you: sharper, more natural, more like a real face. There are no right answers, the
methods are not named, and the sides are random. Your votes are stored anonymously under a
random participant id as soon as you click; you can stop at any time."""


def _screen(ctx: AppContext, participant: str, index: int):
    """Outputs for the participant's index-th trial (or the end of the sequence)."""
    study = ctx.study
    trial = study.trial(participant, index)
    if trial is None:
        done = f"**Thank you!** You have seen all {len(study)} photos."
        return (None, None, done, gr.Button(interactive=False), gr.Button(interactive=False))
    left = study.restoration(trial.image, trial.left)
    right = study.restoration(trial.image, trial.right)
    # The images go out as pixels: Gradio names the files by content hash, so nothing in the page
    # (file names, URLs, captions) tells which method made which side.
    state = {"participant": participant, "trial": index, "image": trial.image.name,
             "left": trial.left, "right": trial.right, "served_at": time.time()}
    where = f"Photo {index + 1} of {len(study)} &middot; participant `{participant[:8]}`"
    return (state, (left, right), where, gr.Button(interactive=True), gr.Button(interactive=True))


def _outputs(screen):
    state, pair, where, a, b = screen
    left, right = pair if pair else (None, None)
    return state, left, right, where, a, b


def start(ctx: AppContext, saved_id: str | None, progress=gr.Progress()):
    if ctx.study is None:
        raise gr.Error("No study photos: start the app with --study-images DIR.")
    participant = saved_id or uuid.uuid4().hex
    progress(0.3, desc="Preparing the restorations")
    index = ctx.study.store.next_trial(participant)  # a returning participant continues
    return (participant, *_outputs(_screen(ctx, participant, index)))


def vote(ctx: AppContext, side: str, state: dict | None, progress=gr.Progress()):
    if not state:
        raise gr.Error("Press Start first.")
    ms = round((time.time() - state["served_at"]) * 1000)
    record = Vote(state["participant"], state["trial"], state["image"], state["left"], state["right"],
                  side, ms)
    try:
        ctx.study.store.add(record)
    except Exception as exc:  # the database is unreachable even after retries: keep the trial
        raise gr.Error(f"Your vote could not be saved ({type(exc).__name__}); please click again.") from None
    progress(0.5, desc="Next photo")
    return _outputs(_screen(ctx, state["participant"], state["trial"] + 1))


def results(ctx: AppContext, token: str):
    if not ctx.admin_token or not hmac.compare_digest(token or "", ctx.admin_token):
        raise gr.Error("Wrong admin token.")
    rows = ctx.study.store.rows() if ctx.study is not None else []
    votes = ctx.study.store.votes() if ctx.study is not None else []
    scores = study_stats.bradley_terry(votes)
    participants = len({v.participant for v in votes})
    summary = (f"**{len(votes)} votes** from **{participants} participants** on "
               f"{len({v.image for v in votes})} photos.")
    wins = [[s.method, s.comparisons, s.wins, round(s.win_rate * 100, 1)] for s in scores]
    bt = [[s.method, round(s.score, 3), round(s.low, 3), round(s.high, 3)] for s in scores]
    path = study_stats.write_csv(rows, ctx.output_dir() / "study_votes.csv")
    figure = study_stats.plot(scores) if scores else None
    return summary, wins, bt, figure, str(path)


def build(ctx: AppContext) -> SimpleNamespace:
    gr.Markdown(INTRO)
    if ctx.study is None:
        gr.Markdown("**No study photos here:** start the app with `--study-images DIR`.")
    saved_id = gr.BrowserState(None, storage_key="smfd-study-participant", secret="smfd-study")
    state = gr.State(None)
    start_btn = gr.Button("Start / continue", variant="primary", elem_id="study-start")
    where = gr.Markdown(elem_id="study-where")
    with gr.Row(equal_height=True):
        left = gr.Image(label="A", format="png", interactive=False, elem_id="study-left",
                        buttons=["fullscreen"])
        right = gr.Image(label="B", format="png", interactive=False, elem_id="study-right",
                         buttons=["fullscreen"])
    with gr.Row():
        pick_left = gr.Button("A looks better", interactive=False, elem_id="study-pick-left")
        pick_right = gr.Button("B looks better", interactive=False, elem_id="study-pick-right")
    screen = [state, left, right, where, pick_left, pick_right]
    events = dict(api_visibility="private", concurrency_limit=8, concurrency_id="study")
    start_btn.click(partial(start, ctx), saved_id, [saved_id, *screen], **events)
    pick_left.click(partial(vote, ctx, "left"), state, screen, **events)
    pick_right.click(partial(vote, ctx, "right"), state, screen, **events)

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
        csv = gr.File(label="All votes as CSV", elem_id="study-csv")
    show.click(partial(results, ctx), token, [summary, wins, bt, plot, csv], api_visibility="private")
    return SimpleNamespace()
