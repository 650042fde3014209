"""The SMFD lab web app: ``smfd demo`` calls :func:`launch`.

Offline by construction: telemetry off (see app/__init__.py), no share link, system fonts only,
bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from baselines import registry
from smfd.batch import check_folder
from smfd.errors import InputError
from smfd.paths import cache_root, shared_data
from smfd.photos import restore_photo
from smfd.restorer import Restorer

from . import api, blur_tab, compare_tab, learn_tab, restore_tab, study_tab
from .admin import AdminGate
from .context import AppContext, weights_tag
from .examples import find_examples
from .face import Face
from .study import NEW_IDS_PER_ADDRESS, Study, setup_of, study_photos, with_control
from .study_gate import GateMiddleware
from .study_store import VoteStore, default_url
from .uploads import MAX_UPLOAD

THEME = gr.themes.Default(primary_hue="orange", secondary_hue="sky",
                          font=["system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                          font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"])
CSS = """
.smfd-legend { display: flex; gap: 1.2em; flex-wrap: wrap; }
.smfd-swatch { display: inline-flex; align-items: center; gap: 0.4em; }
.smfd-swatch i { width: 1.1em; height: 1.1em; border-radius: 3px; border: 1px solid #8888; }
"""
HEADER = """# SMFD lab
Deblur face photos with **SMFD-UNet**: a mask generator predicts a 5-group face mask from the
blurry face, and a UNet fuses that mask with the image at every encoder stage. Everything runs
on this machine; nothing is sent anywhere."""


def default_study_images() -> Path | None:
    folder = shared_data() / "realworld" / "cropped"
    return folder if folder.is_dir() else None


def study_methods(ctx: AppContext) -> list[str]:
    """SMFD and every baseline whose weights are here (Study adds the input as a control if
    that makes fewer than two)."""
    methods, left_out = ["smfd"], []
    for info in ctx.external_methods():
        if info.needs_mask:  # real-world photos have no ground-truth mask
            continue
        try:
            ctx.baseline(info.name)
            methods.append(info.name)
        except Exception as exc:  # missing weights or a broken install: leave it out, say so
            left_out.append(f"{info.name} ({type(exc).__name__})")
    print(f"user study: comparing {', '.join(methods)}"
          + (f"; left out: {', '.join(left_out)}" if left_out else ""), flush=True)
    return methods


def create_context(weights=None, examples=None, study_db=None, admin_token="",
                   study_images=None, study_new_ids: int | None = None) -> AppContext:
    """Checks the examples folder, the weights, the study's photos, its cache and its database URL
    before the models load, so that a wrong folder or URL (or a missing driver) is reported at once,
    the database (which the check makes when new) last; whether the database belongs to this study
    (its weights, photos and methods) is known once the methods have loaded."""
    for option, value in (("--study-images", study_images), ("--study-db", study_db), ("--examples", examples)):
        if value is not None and not str(value).strip():  # not "left out": the default would be taken
            raise InputError(f"{option} is empty (an unset shell variable?): give one, or leave the option out")
    found_examples = find_examples(examples)
    Restorer.check_options(weights)
    folder = study_images if study_images is not None else default_study_images()
    store = photos = None
    if folder is not None:
        try:
            photos = study_photos(folder)
        except InputError as exc:
            if study_images is not None:
                raise
            raise InputError(f"the user study's default photos ({folder}): {exc}; "
                             "give --study-images DIR") from None
        check_folder(cache_root() / "study", "the user study's cache ($SMFD_CACHE)")
        store = VoteStore(study_db) if study_db is not None else None  # the default file depends on the setup
    else:  # an option of the study without one would be ignored
        given = [name for name, value in (("--study-db", study_db), ("--study-new-ids", study_new_ids is not None))
                 if value]
        if given:
            raise InputError(f"{given[0]}: there is no user study here (no --study-images folder, and no "
                             "realworld/cropped in the shared data)")
    restorer = Restorer.from_pretrained(weights)
    work_dir = Path(tempfile.mkdtemp(prefix="smfd-app-"))  # mode 0700: private to this user
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    ctx = AppContext(restorer=restorer, examples=found_examples,
                     work_dir=work_dir, weights_tag=weights_tag(weights),
                     baselines=registry, whole_photo=restore_photo, admin=AdminGate(admin_token))
    if photos is not None:
        methods = with_control(study_methods(ctx))
        fingerprint, description = setup_of(photos, methods, ctx.weights_tag)
        store = store or VoteStore(default_url(fingerprint))
        store.bind(fingerprint, description)  # never pools votes on other restorations
        print(f"user study: {description}; votes in {store.url.render_as_string()}", flush=True)
        ctx.study = Study(photos, methods, store, cache_root() / "study" / ctx.weights_tag,
                          ctx.run_method, work_dir / "study", study_new_ids or NEW_IDS_PER_ADDRESS)
    return ctx


def clear_errors(fn):
    """``fn`` with any exception that is not already a message for the user turned into one:
    Gradio shows a bare "Error" for those. The traceback goes to the server's log."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            traceback.print_exc()
            raise gr.Error(f"Something went wrong on the server ({type(exc).__name__}); the details "
                           "are in its log. Please try again.", title="Internal error") from None

    return run


def send_to_restore(ctx: AppContext, face: Face | None):
    """The lab's face in the Restore tab as a loaded example is: its references in their boxes
    (an example's mask too, which came along unseen before)."""
    if face is None:
        raise gr.Error("Blur a face first.")
    return face, *restore_tab.loaded(ctx, face), gr.Tabs(selected="restore")


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="SMFD lab", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(HEADER)
        face = gr.State(None)  # the face the Restore, Compare and Learn tabs work on
        with gr.Tabs() as tabs:
            with gr.Tab("Blur lab", id="blur", elem_id="tab-blur"):
                blur = blur_tab.build(ctx)
            with gr.Tab("Restore", id="restore", elem_id="tab-restore"):
                restore = restore_tab.build(ctx, face)
            with gr.Tab("Compare", id="compare", elem_id="tab-compare") as compare:
                compare_tab.build(ctx, face, compare)
            with gr.Tab("User study", id="study", elem_id="tab-study"):
                study_tab.build(ctx)
            with gr.Tab("Learn", id="learn", elem_id="tab-learn"):
                learn_tab.build(ctx, face)
        blur.send.click(functools.partial(send_to_restore, ctx), blur.lab_face,
                        [face, restore.input, *restore.outputs[1:], *restore.references, restore.kind, tabs],
                        api_visibility="private", concurrency_id="face", concurrency_limit=1)
        api.register(ctx)
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is not None and not (inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn)
                                   or inspect.isasyncgenfunction(fn)):
            block_fn.fn = clear_errors(fn)
    if ctx.study is not None:  # Gradio's /call/NAME runs these too: the study's gate refuses it
        ctx.study.gate.private_names = {f.api_name for f in demo.fns.values() if f.api_visibility == "private"}
    return demo


def check_can_listen(host: str, port: int) -> None:
    """Refuse, before the models load, a --host that is not an address of this machine or a --port
    that another server holds (Gradio would say so only after loading, and name the wrong fix)."""
    name = host.strip("[]") or "127.0.0.1"  # as Gradio reads it: "[::1]" is ::1, "" is 127.0.0.1
    family = socket.AF_INET6 if ":" in name else socket.AF_INET  # as uvicorn binds a name: IPv4
    try:
        family, kind, proto, _, address = socket.getaddrinfo(name, port, family, socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: not a host name or address ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT is no hold
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
                             "another server may hold the port: choose another --port") from None


def _stop(*_) -> None:
    """The first SIGTERM ends the server; another one while it shuts down (an impatient service
    manager, a second Ctrl+C-like kill) must not break off the clean-up in the middle."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


def launch(host: str = "127.0.0.1", port: int = 7860, weights=None, examples=None, study_db=None,
           admin_token: tuple[str, bool] = ("", False), study_images=None,
           study_new_ids: int | None = None, block: bool = True) -> gr.Blocks:
    """Serve the app; ``block=False`` returns at once (``.close()`` the result to stop it).
    ``admin_token``: (token, whether it was given) as app.admin.admin_token returns it."""
    os.umask(0o077)  # votes, downloads, caches: files of this server are readable by its user only
    token, given = admin_token
    check_can_listen(host, port)
    ctx = create_context(weights, examples, study_db, token, study_images, study_new_ids)
    demo = build_app(ctx)
    if block:  # stopped by SIGTERM (`kill`, a service manager, the tests): exit as from Ctrl+C, so
        # that the atexit handlers run and the work folder goes with this run
        signal.signal(signal.SIGTERM, _stop)
    ctx.keep_removing_old_requests()
    if ctx.study is not None:
        # Compute every restoration before the study opens (Start says so until then), so a
        # participant only ever waits for a database write.
        threading.Thread(target=ctx.study.precompute, daemon=True, name="study-cache").start()
    if ctx.study is not None and not given:  # the token opens the study's results: none, no token
        print(f"user-study results token (this run only): {token}", flush=True)
    # api_open=False: /run/... would run any queued event outside the queue, its limits and the
    # study's gate (the page's own queue=False events still use it)
    demo.queue(default_concurrency_limit=1, api_open=False).launch(
        server_name=host, server_port=port, share=False, max_file_size=MAX_UPLOAD, theme=THEME,
        css=CSS, ssr_mode=False, mcp_server=False, footer_links=["api"], show_error=False,
        allowed_paths=[str(ctx.work_dir)],  # the API hands out files from the requests' folders
        prevent_thread_lock=not block,
        # votes of sessions that never pressed Start are answered before the queue (app.study_gate)
        app_kwargs={"middleware": [Middleware(GateMiddleware, gate=ctx.study.gate)]} if ctx.study else None)
    return demo
