"""The web app end to end: `smfd demo` in a subprocess, driven through every tab by headless
Chromium (Playwright, Debian's chromium: `make browser`), and through its API by gradio_client.

One app serves the whole module (the shipped networks: random ones give every face the same mask); the study
test kills it with SIGKILL in the middle of several participants' sessions and starts it again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.demo_process import STUDY_READY, DemoProcess
from smfd import degrade
from smfd.cli import main
from smfd.images import read_image, read_labels

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN = "let-me-see"
SAVED_ID = "localStorage.getItem('smfd-study-participant')"  # the participant id this browser keeps
METHOD_NAMES = ("smfd", "deconv", "blurry", "gfpgan", "codeformer", "restoreformer")
TIMEOUT = 90_000  # ms: model steps, and images that load after their step, on two busy cores


@pytest.fixture(scope="module")
def server(tmp_path_factory, celeba, shared_data):
    work = tmp_path_factory.mktemp("app")
    photos = work / "study_photos"  # a few real-world faces, copied into the test's temp folder
    photos.mkdir()
    for src in sorted((shared_data / "realworld" / "cropped").iterdir())[:3]:
        shutil.copy(src, photos / src.name)
    db = work / "study.sqlite"
    token = work / "admin-token"
    token.write_text(ADMIN + "\n")  # a file: the token stays out of the process list
    token.chmod(0o600)  # and out of other users' reach
    (work / "tmp").mkdir()
    env = {**os.environ, "SMFD_CACHE": str(work / "cache"), "GRADIO_TEMP_DIR": str(work / "gradio"),
           "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(work / "tmp")}
    # the shipped networks: random ones give the same mask for any face, which no check could tell apart
    app = DemoProcess(["--examples", str(celeba),
                      "--study-db", f"sqlite:///{db}", "--admin-token-file", str(token),
                      "--study-images", str(photos)], env, work / "app.log")
    app.db, app.photos, app.work = db, photos, work
    app.start(ready=STUDY_READY)
    yield app
    served = len(app.output())  # (Gradio logs the tracebacks of refused calls while it serves)
    app.stop(again_after=0.3)  # a second SIGTERM while it shuts down must not break off its clean-up
    assert app.proc.returncode == 0  # stopped by SIGTERM, not killed when it did not stop in time
    assert "Traceback" not in app.output()[served:]
    # Stopped (SIGTERM), the app removes its work folder; killed (SIGKILL, a crash test), it cannot
    assert len(list((work / "tmp").glob("smfd-app-*"))) == app.crashes


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("headless Chromium is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Visitor:
    """One browser context (its own storage, like one person) that records every request."""

    def __init__(self, browser, server, width: int = 1400):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.hosts: set[str] = set()
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.hosts.add(r.url.split("/")[2]))
        self.server = server

    def open(self, tab: str | None = None):
        self.page.goto(self.server.url)
        self.page.wait_for_selector("#blur-run", timeout=TIMEOUT)
        if tab:
            self.page.get_by_role("tab", name=tab).click()
        return self.page

    def fetch(self, url: str) -> bytes:
        if url.startswith("/"):
            url = self.server.url.rstrip("/") + url
        return self.page.request.get(url).body()

    def close(self):
        self.context.close()
        # the app never reaches beyond this machine: no fonts, no CDN, no telemetry
        assert self.hosts <= {f"127.0.0.1:{self.server.port}"}, self.hosts


@pytest.fixture
def visitor(browser, server):
    v = Visitor(browser, server)
    yield v
    v.close()


def decoded(png: bytes) -> np.ndarray:
    """PNG bytes as an array (a palette PNG gives its indices, i.e. the group labels)."""
    return np.asarray(Image.open(io.BytesIO(png)))


def image_at(v: Visitor, selector: str) -> np.ndarray:
    return decoded(v.fetch(v.page.locator(selector).first.get_attribute("src")))


def file_link(v: Visitor, selector: str, suffix: str, not_href: str | None = None) -> bytes:
    """The file a download link points to; ``not_href``: wait until the link has changed."""
    from playwright.sync_api import expect

    link = v.page.locator(f'{selector} a[href$="{suffix}"]').first
    if not_href is not None:
        expect(link).not_to_have_attribute("href", not_href, timeout=TIMEOUT)
    v.last_href = link.get_attribute("href")
    return v.fetch(v.last_href)


def load_example(page, name: str) -> None:
    box = page.locator("#restore-example input")
    box.fill(name)
    page.get_by_role("option", name=name).click()
    page.click("#restore-load")
    from playwright.sync_api import expect

    expect(page.locator("#restore-input img")).to_be_visible(timeout=TIMEOUT)


# ---------------------------------------------------------------- tabs

def test_blur_lab_with_chosen_parameters_then_send_to_restore(visitor, tmp_path, celeba):
    from playwright.sync_api import expect

    page = visitor.open()
    page.locator("#noise-on input").uncheck()
    for group, keep in (("#blur-layers", "1"), ("#blur-sequences", "M"), ("#blur-directions", "vertical")):
        for box in page.locator(f"{group} label").all():
            if box.inner_text().strip() != keep:
                box.locator("input").uncheck()
    expect(page.locator("#blur-count")).to_contain_text("126 scenarios")  # 6 sizes x 21 scales
    page.locator("#blur-seed input").fill("5")
    page.click("#blur-run")
    expect(page.locator("#blur-kernels img")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#blur-send")).to_be_enabled(timeout=TIMEOUT)

    recipe = json.loads(file_link(visitor, "#blur-recipe-file", ".json"))
    assert recipe["seed"] == 5 and recipe["noise_sigma"] is None and len(recipe["layers"]) == 1
    assert recipe["layers"][0][0]["kind"] == "motion" and recipe["layers"][0][0]["direction"] == "vertical"
    from app.examples import astronaut_face

    shown = image_at(visitor, "#blur-result img")
    assert (shown == degrade.apply(astronaut_face(), degrade.Recipe.from_dict(recipe))).all()

    page.click("#blur-send")
    expect(page.get_by_role("tab", name="Restore")).to_have_attribute("aria-selected", "true")
    assert (image_at(visitor, "#restore-input img") == shown).all()
    page.click("#restore-run")
    expect(page.locator("#restore-report")).to_contain_text("restored", timeout=TIMEOUT)
    expect(page.locator("#restore-report")).to_contain_text("PSNR")  # the sharp face came along
    page.get_by_text("Optional references").click()  # ... and its box shows it
    expect(page.locator("#restore-sharp img")).to_be_visible(timeout=TIMEOUT)
    assert (image_at(visitor, "#restore-sharp img") == astronaut_face()).all()
    # Another face uploaded to the lab: the result of the one before is not left to be sent
    page.get_by_role("tab", name="Blur lab").click()
    Image.fromarray(astronaut_face()[::-1]).save(tmp_path / "upside_down.png")
    page.locator("#blur-source input[type=file]").set_input_files(str(tmp_path / "upside_down.png"))
    expect(page.locator("#blur-send")).to_be_disabled(timeout=TIMEOUT)
    expect(page.locator("#blur-result img")).to_have_count(0)
    # An example chosen loads; an upload after it empties the box, which named the face before
    name = sorted(p.stem for p in (celeba / "images").glob("*.jpg"))[0]
    uploaded = page.locator("#blur-source img").first.get_attribute("src")
    page.locator("#blur-example input").fill(name)
    page.get_by_role("option", name=name).click()
    expect(page.locator("#blur-source img").first).not_to_have_attribute("src", uploaded, timeout=TIMEOUT)
    example = read_image(celeba / "images" / f"{name}.jpg").astype(int)
    assert np.abs(image_at(visitor, "#blur-source img") - example).mean() < 1
    page.locator("#blur-source input[type=file]").set_input_files(str(tmp_path / "upside_down.png"))
    expect(page.locator("#blur-example input")).to_have_value("", timeout=TIMEOUT)


def test_restore_edit_the_mask_restore_again_and_swap_in_the_truth(browser, server, celeba):
    from playwright.sync_api import expect

    # A narrow window: the editor's WebGL canvas is drawn in software here, and a smaller canvas
    # keeps the brush strokes quick.
    visitor = Visitor(browser, server, width=1000)
    page = visitor.open("Restore")
    name = sorted(p.stem for p in (celeba / "images").glob("*.jpg"))[0]
    load_example(page, name)
    page.get_by_text("Optional references").click()
    expect(page.locator("#restore-truth-file")).to_contain_text(f"{name}_true_mask", timeout=TIMEOUT)  # what it holds
    page.click("#restore-run")
    report = page.locator("#restore-report")
    expect(report).to_contain_text("generated mask", timeout=TIMEOUT)
    expect(report).to_contain_text("Generated mask vs ground truth")
    expect(page.locator("#restore-slider img")).to_have_count(2, timeout=TIMEOUT)
    # the slider's own download would save "image.png": the named files below it are the downloads
    expect(page.locator("#restore-slider [data-testid=download-link]")).to_have_count(0)
    before = decoded(file_link(visitor, "#restore-files", "_mask.png"))

    # paint a horizontal stroke in the brush's default colour (face skin) across the face
    editor = page.locator("#restore-editor")
    editor.scroll_into_view_if_needed()
    editor.get_by_label("Brush", exact=True).click()
    box = editor.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 80, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy, steps=3)
    page.mouse.up()
    page.click("#restore-edited")
    expect(report).to_contain_text("edited mask", timeout=TIMEOUT)
    after = decoded(file_link(visitor, "#restore-files", "_mask.png", not_href=visitor.last_href))
    changed = after != before
    rows = np.flatnonzero(changed.any(1))
    assert changed.sum() > 500 and (after[changed] == 1).all()  # painted pixels became face skin
    assert rows.max() - rows.min() < 0.1 * after.shape[0]  # ... in one horizontal band

    page.click("#restore-truth")
    expect(report).to_contain_text("ground truth mask", timeout=TIMEOUT)
    # the truth is not scored against itself: the generator's mask is
    expect(report).to_contain_text("Generated mask vs ground truth")
    expect(report).not_to_contain_text("100.0 %")
    truth = decoded(file_link(visitor, "#restore-files", "_mask.png", not_href=visitor.last_href))
    from smfd import labels

    assert (truth == labels.to_groups(read_labels(celeba / "masks" / f"{name}.png"))).all()
    restored = decoded(file_link(visitor, "#restore-files", "_restored.png"))
    assert restored.shape == (512, 512, 3)
    visitor.close()


def test_a_bad_upload_gets_a_clear_message(visitor, tmp_path, celeba):
    from playwright.sync_api import expect

    page = visitor.open("Restore")
    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image")
    page.locator("#restore-input input[type=file]").set_input_files(str(notes))
    expect(page.get_by_text("notes.png: not an image file (unrecognised format)")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    # A new upload after an example does not keep showing the example's sharp face as its reference.
    page.get_by_text("Optional references").click()
    load_example(page, sorted(p.stem for p in (celeba / "images").glob("*.jpg"))[0])
    expect(page.locator("#restore-sharp img")).to_be_visible(timeout=TIMEOUT)
    face = tmp_path / "face.png"
    Image.fromarray(read_image(sorted((celeba / "images").glob("*.jpg"))[0])).resize((256, 256)).save(face)
    page.locator("#restore-input input[type=file]").set_input_files(str(face))
    expect(page.locator("#restore-sharp img")).to_have_count(0, timeout=TIMEOUT)

    # A sharp reference uploaded after the restoration: a refused one leaves its box, the right one
    # shows its figures at once, and removed it leaves the face.
    page.click("#restore-run")
    report = page.locator("#restore-report")
    expect(report).to_contain_text("No sharp reference", timeout=TIMEOUT)
    expect(report).to_contain_text("face.png, restored with the generated mask")  # named as the user's file
    wide = tmp_path / "wide.png"
    Image.new("RGB", (300, 100), "gray").save(wide)
    page.locator("#restore-sharp input[type=file]").set_input_files(str(wide))
    expect(page.get_by_text("does not match the blurry image (256x256)")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#restore-sharp img")).to_have_count(0, timeout=TIMEOUT)
    page.locator("#restore-sharp input[type=file]").set_input_files(str(face))
    expect(report).to_contain_text("Measured at 256x256 against the sharp face", timeout=TIMEOUT)
    page.locator("#restore-sharp").get_by_label("Remove Image").click()
    expect(report).to_contain_text("No sharp reference", timeout=TIMEOUT)
    # A refused upload after a restoration leaves no face: the result before it goes, and Restore
    # says so rather than restoring the earlier face again beside the refused picture
    page.locator("#restore-input input[type=file]").set_input_files(str(notes))
    expect(report).not_to_contain_text("restored", timeout=TIMEOUT)
    page.click("#restore-run")
    expect(page.get_by_text("Upload a blurry face or load an example first.")).to_be_visible(timeout=TIMEOUT)
    expect(report).not_to_contain_text("restored")


def test_compare_every_method(visitor, celeba):
    from playwright.sync_api import expect

    page = visitor.open("Restore")
    load_example(page, sorted(p.stem for p in (celeba / "images").glob("*.jpg"))[1])
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-current")).to_contain_text("ground-truth mask known")
    page.click("#compare-run")
    table = page.locator("#compare-table")
    expect(table).to_contain_text("SMFD (given: ground-truth mask)", timeout=TIMEOUT)
    for title in ("blurry input", "SMFD (generated mask)"):
        expect(table).to_contain_text(title)
    expect(page.locator("#compare-gallery img").first).to_be_visible(timeout=TIMEOUT)
    shown, missing = table.inner_text(), page.locator("#compare-missing").inner_text()
    from baselines import methods

    for info in methods():  # every baseline is either side by side or explained (e.g. how to get its weights)
        if info.name not in ("blurry", "smfd", "smfd-gt-mask"):
            assert info.title in shown or info.title in missing, info.title


def test_learn_shows_both_networks_layer_by_layer(visitor):
    from playwright.sync_api import expect

    page = visitor.open("Learn")
    expect(page.locator("#learn-count")).to_contain_text("1,743,335,166,888")
    page.click("#learn-run")
    expect(page.locator("#learn-smfd-maps")).to_contain_text("network output: 3 ch, 256x256", timeout=TIMEOUT)
    expect(page.locator("#learn-mask-maps")).to_contain_text("network output: 5 ch, 256x256, argmax of 5")
    expect(page.locator("#learn-ablations")).to_contain_text("attention-pixelshuffle")


def test_study_votes_from_concurrent_participants_survive_a_crash(browser, server):
    from playwright.sync_api import expect
    from sqlalchemy import text

    from app.study_store import FLUSH_SECONDS, VoteStore

    people = [Visitor(browser, server) for _ in range(3)]
    pages = [p.open("User study") for p in people]
    for page in pages:
        page.click("#study-start")
    for page in pages:
        expect(page.locator("#study-where")).to_contain_text("Photo 1 of 3", timeout=TIMEOUT)
        for side in ("left", "right"):  # blind: no method name in what the participant sees
            html = page.locator(f"#study-{side}").inner_html().lower()
            assert not any(m in html for m in METHOD_NAMES), html
    for round_ in range(2):
        for k, page in enumerate(pages):  # click on all pages before waiting: concurrent votes
            page.click(f"#study-pick-{'left' if (k + round_) % 2 else 'right'}")
        for page in pages:
            expect(page.locator("#study-where")).to_contain_text(f"Photo {round_ + 2} of 3", timeout=TIMEOUT)

    # each browser keeps the id it was given (a page that lost it would start anew after a reload)
    saved = [page.evaluate(SAVED_ID) for page in pages]
    assert all(saved) and len(set(saved)) == 3
    server.crash()  # mid-session: every participant is looking at photo 3
    store = VoteStore(f"sqlite:///{server.db}")
    rows = store.rows()
    assert len(rows) == 6 and len({r["participant"] for r in rows}) == 3
    with store.engine.connect() as conn:  # one id per Start: none issued that no page is using
        assert conn.execute(text("SELECT count(*) FROM study_participants")).scalar() == 3
    assert sorted(r["trial"] for r in rows) == [0, 0, 0, 1, 1, 1]
    for r in rows:  # what was stored is what the server dealt, whatever the page showed
        dealt = store.trial(r["participant"], r["trial"])
        assert r["response_ms"] > 0 and (r["left"], r["right"]) == (dealt.left, dealt.right)
        assert r["chosen"] == r[r["side"]]
    # votes, caches and downloads are readable by the server's user only
    assert stat.S_IMODE(server.db.stat().st_mode) == 0o600
    cached = [p for p in (server.work / "gradio").rglob("*") if p.is_file()]
    assert cached and [p for p in cached if p.stat().st_mode & 0o077] == []
    server.start(ready=STUDY_READY)

    pages[0].reload()  # a returning participant continues where they stopped
    pages[0].get_by_role("tab", name="User study").click()
    pages[0].click("#study-start")
    expect(pages[0].locator("#study-where")).to_contain_text("Photo 3 of 3", timeout=TIMEOUT)

    admin = Visitor(browser, server)
    page = admin.open("User study")
    page.get_by_text("Results (admin)").click()
    page.locator("#study-token input").fill("wrong")
    page.click("#study-show")
    expect(page.get_by_text("Wrong admin token.")).to_be_visible(timeout=TIMEOUT)
    page.locator("#study-token input").fill("tôken-ünïcode")  # non-ASCII: a message, not "Error"
    page.click("#study-show")
    expect(page.get_by_text("Wrong admin token.").nth(1)).to_be_visible(timeout=TIMEOUT)
    page.locator("#study-token input").fill(ADMIN)
    page.click("#study-show")
    expect(page.locator("#study-summary")).to_contain_text("6 votes from 3 participants", timeout=TIMEOUT)
    expect(page.locator("#study-plot img")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#study-bt")).to_contain_text("smfd")
    expect(page.locator("#study-refusals")).to_contain_text("admin-token")
    with page.expect_download() as download:  # saved by the browser from the answer itself
        page.click("#study-download")
    csv = Path(download.value.path()).read_text().splitlines()
    assert len(csv) == 7 and csv[0].startswith("id,participant,trial")
    assert not [p for p in (server.work / "gradio").rglob("*.csv")]  # no CSV file on the server

    # A computer shared by a class: Start after a finished sequence begins a new participant, and
    # whoever finds someone else's unfinished sequence can start as a new participant.
    where = pages[0].locator("#study-where")
    pages[0].click("#study-pick-left")
    expect(where).to_contain_text("Thank you!", timeout=TIMEOUT)
    pages[0].click("#study-start")
    expect(where).to_contain_text("Photo 1 of 3", timeout=TIMEOUT)
    # A slow network or a busy server: Start is clicked before the scripts of components that keep
    # something in the browser have come (held here until Start has answered).
    held = []

    def hold_browser_storage(route):
        response = route.fetch()
        if b"localStorage" in response.body():
            held.append((route, response))
        else:
            route.fulfill(response=response)

    pages[1].route("**/assets/Index-*.js", hold_browser_storage)
    pages[1].reload()
    pages[1].get_by_role("tab", name="User study").click()
    assert pages[1].evaluate(SAVED_ID) == saved[1]
    pages[1].click("#study-start")
    where = pages[1].locator("#study-where")
    expect(where).to_contain_text("Photo 3 of 3", timeout=TIMEOUT)
    for route, response in held:
        route.fulfill(response=response)
    pages[1].unroute("**/assets/Index-*.js")
    before = where.inner_text()
    pages[1].click("#study-new")
    expect(where).to_contain_text("Photo 1 of 3", timeout=TIMEOUT)
    assert where.inner_text().split("participant")[1] != before.split("participant")[1]
    assert pages[1].evaluate(SAVED_ID) not in (None, saved[1])  # the newcomer's id is the one kept
    # a value an earlier version kept under the key (encrypted) starts a new participant, not
    # counted among the ids the server never issued
    unknown = store.refusals()["unknown-id"]
    pages[2].evaluate("localStorage.setItem('smfd-study-participant', 'c2FsdA==:U2FsdGVkX1+b2xkIHZhbHVl')")
    pages[2].reload()
    pages[2].get_by_role("tab", name="User study").click()
    pages[2].click("#study-start")
    expect(pages[2].locator("#study-where")).to_contain_text("Photo 1 of 3", timeout=TIMEOUT)
    time.sleep(2 * FLUSH_SECONDS)  # refusals are written to the database this long after they happen
    assert store.refusals()["unknown-id"] == unknown
    for v in [*people, admin]:
        v.close()


def test_raw_calls_cannot_forge_or_replay_votes(server):
    """An attacker who skips the page: raw queue calls by fn_index, own session hashes, invented
    participant ids and replayed requests."""
    import asyncio

    from app.study_client import API, CallFailed, StudyClient
    from app.study_store import VoteStore

    store = VoteStore(f"sqlite:///{server.db}")
    before, refused_before = len(store.rows()), store.refusals()
    logged = len(server.output())

    async def attack():
        async with StudyClient(server.url) as c:
            with pytest.raises(CallFailed, match="No study session in this tab: press Start first"):
                await c.vote("left", "0")  # no Start in this session
            # Gradio's direct route would run the vote outside the queue, its limits and the gate
            direct = await c.http.post(f"{c.url}{API}/run/predict", json={
                "fn_index": c.fns["study-pick-left"][0], "session_hash": "direct", "data": [None, "0"]})
            assert direct.status_code == 404 and "join the queue" in direct.text
            for route in ("call", "call/v2"):  # Gradio's REST route by name would join past the gate
                named = await c.http.post(f"{c.url}{API}/{route}/on_left", json={"data": [None, "0"]})
                assert named.status_code == 404 and "No API endpoint named /on_left" in named.text
            with pytest.raises(CallFailed, match="press Start first"):  # a client-made state is ignored
                await c.call("study-pick-left", [{"participant": "a" * 32, "trial": 0}, "0"])
            with pytest.raises(CallFailed, match="Wrong admin token"):
                await c.results("guess")
            invented = await c.start("f" * 32)
            assert invented.participant != "f" * 32  # the server issues ids
            huge = await c.start("x" * 1_000_000)
            assert huge.participant == invented.participant  # Start again in this tab: the same participant
        # The original attack: one bot always picks the left side under many participants.
        async def bot():
            async with StudyClient(server.url) as c:
                screen = await c.start()
                while screen.trial:
                    screen = await c.vote("left", screen.trial)
                return screen.where

        assert all("Thank you" in w for w in await asyncio.gather(*[bot() for _ in range(10)]))
        # Replays: a second session of the same participant re-sends an answered trial, one
        # that comes later, and one that was never dealt.
        async with StudyClient(server.url) as first, StudyClient(server.url) as second:
            screen = await first.start()
            await first.vote("right", screen.trial)
            again = await second.start(screen.participant)
            assert again.trial == "1"  # continues, same participant
            stale = await second.vote("left", "0")
            assert "already answered" in " ".join(stale.warnings) and stale.trial == "1"
            for bad in ("2", "99", "zero", "1" * 10_000):
                with pytest.raises(CallFailed, match="does not belong to the photo shown"):
                    await second.vote("left", bad)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's loop owns this thread
        pool.submit(asyncio.run, attack()).result()
    rows = store.rows()[before:]
    assert len(rows) == 10 * 3 + 1  # the bots' votes and the one real vote, nothing else
    picked = collections.Counter(r["chosen"] for r in rows[:30])
    assert max(picked.values()) <= 26  # sides are dealt at random: "always left" is no method
    assert all(len(r["participant"]) == 32 for r in rows)
    expected = {"forged": 4, "out-of-order": 2, "duplicate": 0, "replayed": 1, "unknown-id": 2,
                "admin-token": 1, "rate-limited": 0, "too-many-ids": 0}
    deadline = time.monotonic() + 10  # the app writes the refusals it counted within a second
    while (refused := {k: store.refusals()[k] - refused_before[k] for k in refused_before}) != expected \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert refused == expected
    assert "Traceback" not in server.output()[logged:]  # refusals are answers, not faults in the log


def test_a_flood_of_votes_without_start_is_answered_before_the_queue(server):
    """Raw votes from sessions that never pressed Start: past the first few per address within
    10 s, the app answers them itself (429 and the reason, which the page shows) instead of
    queueing them before the participants' votes; a participant on the same address votes on."""
    import asyncio

    from app.study_client import API, StudyClient
    from app.study_gate import NOT_STARTED_PER_ADDRESS, REFUSED
    from app.study_store import VoteStore

    store = VoteStore(f"sqlite:///{server.db}")
    forged_before = store.refusals()["forged"]

    async def flood():
        async with StudyClient(server.url) as participant:
            screen = await participant.start()
            fn_index, trigger = participant.fns["study-pick-left"]
            answers = [await participant.http.post(f"{participant.url}{API}/queue/join", json={
                "data": [None, "0"], "fn_index": fn_index, "trigger_id": trigger, "event_data": None,
                "session_hash": f"flood{i}"}) for i in range(NOT_STARTED_PER_ADDRESS + 10)]
            # past the few: a vote is refused however Gradio would read it, its function named as a
            # string, or its body sent in chunks and padded beyond what a vote needs
            call = {"data": [None, "0"], "fn_index": str(fn_index), "trigger_id": trigger, "session_hash": "odd"}

            async def padded():
                yield json.dumps({**call, "fn_index": fn_index}).encode()
                yield b" " * 100_000

            text = json.dumps(call)
            odd = [await participant.http.post(f"{participant.url}{API}/queue/join", json=call),
                   await participant.http.post(f"{participant.url}{API}/queue/join", content=padded(),
                                               headers={"content-type": "application/json"})]
            for body in ("\ufeff" + text).encode(), text.encode("utf-16"):  # as JSON reads them: a vote
                odd.append(await participant.http.post(f"{participant.url}{API}/queue/join", content=body,
                                                       headers={"content-type": "application/json"}))
            after = await participant.vote("left", screen.trial)
            return answers, odd, after

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's loop owns this thread
        answers, odd, after = pool.submit(asyncio.run, flood()).result()
    assert [a.status_code for a in odd] == [429] * 4
    refused = [a for a in answers + odd if a.status_code == 429]
    assert len(refused) >= 12 and all(a.status_code in (200, 429) for a in answers)
    assert all(a.json() == {"detail": REFUSED} for a in refused)
    assert after.trial == "1" and "Photo 2" in after.where  # the participant's vote was stored
    deadline = time.monotonic() + 10  # the app writes the refusals it counted within a second
    while store.refusals()["forged"] - forged_before < len(refused) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.refusals()["forged"] - forged_before >= len(refused)


# ---------------------------------------------------------------- the API

@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("client")))


@pytest.fixture(scope="module")
def local():
    """The same networks as the app's, run here, to check what the API returns."""
    from smfd.restorer import Restorer

    return Restorer.from_pretrained(None, "cpu")


def test_api_lists_exactly_the_named_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/restore", "/mask", "/blur"}
    assert not api["unnamed_endpoints"]


def test_api_blur_mask_and_restore(client, celeba, local):
    from gradio_client import handle_file

    src = sorted((celeba / "images").glob("*.jpg"))[2]
    blurred, text = client.predict(handle_file(str(src)), seed=11, sequences=["G>M"], noise_stage=False,
                                   jpeg_stage=True, jpeg_range=[40, 60], jpeg_share=0.5, api_name="/blur")
    recipe = json.loads(text)
    assert recipe["seed"] == 11 and recipe["source"] == src.name and recipe["noise_sigma"] is None
    assert recipe["options"]["jpeg_range"] == [40, 60] and recipe["options"]["jpeg_share"] == 0.5
    blurry = read_image(blurred)
    assert (blurry == degrade.apply(read_image(src), degrade.Recipe.from_dict(recipe))).all()
    out = Path(blurred).parent / "cli"  # the same draw as `smfd blur --seed` on that file
    assert main(["blur", str(src), str(out), "--seed", "11", "--sequences", "G>M", "--no-noise",
                 "--jpeg", "40", "60", "--jpeg-share", "0.5"]) == 0
    assert (read_image(out / f"{src.stem}.png") == blurry).all()

    mask_file = client.predict(handle_file(blurred), api_name="/mask")
    mask = read_labels(mask_file)
    assert Image.open(mask_file).mode == "P" and mask.max() <= 4
    assert (mask == local.mask(blurry)).mean() > 0.99

    edited = mask.copy()
    edited[200:300] = 2
    Image.fromarray(edited).save(Path(mask_file).with_name("edited.png"))
    out = read_image(client.predict(handle_file(blurred), handle_file(str(Path(mask_file).with_name("edited.png"))),
                                    api_name="/restore"))
    expected = local.restore(blurry, edited)
    assert out.shape == blurry.shape
    assert np.abs(out.astype(int) - expected).mean() < 0.5
    assert np.abs(out.astype(int) - local.restore(blurry)).mean() > 0.5  # the edit reached the network


def test_api_reads_only_files_uploaded_to_it(client, celeba):
    """A record without Gradio's file marker skips Gradio's upload check: it named any image on the
    server (and told whether a path exists). Refused alike for every path, before it is opened."""
    from gradio_client.exceptions import AppError

    src = sorted((celeba / "images").glob("*.jpg"))[2]
    for path, endpoint in ((src, "/blur"), (src, "/mask"), ("/etc/passwd", "/mask"), ("/no/such.png", "/restore")):
        with pytest.raises(AppError, match="^image: not a file uploaded to this server"):
            client.predict({"path": str(path), "orig_name": "face.png"}, api_name=endpoint)


def test_api_blur_names_a_malformed_option(client, celeba):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    src = handle_file(str(sorted((celeba / "images").glob("*.jpg"))[2]))
    for option, value in (("layers", 3), ("sequences", [{"a": 1}]), ("noise_range", [True, 2])):
        with pytest.raises(AppError, match=f"^{option}: a list of numbers or names, got "):
            client.predict(src, api_name="/blur", **{option: value})
    with pytest.raises(AppError, match="^every stage is switched off"):
        client.predict(src, api_name="/blur", blur_stage=False, rescale_stage=False, noise_stage=False)
    with pytest.raises(AppError, match="^jpeg_range and jpeg_share set the JPEG stage: give jpeg_stage=True"):
        client.predict(src, api_name="/blur", jpeg_range=[30, 60])  # not silently left uncompressed


def test_api_requests_each_get_their_own_files(client, celeba, local):
    from gradio_client import handle_file

    sources = sorted((celeba / "images").glob("*.jpg"))[3:5]
    results = {}

    def call(src):
        results[src] = client.predict(handle_file(str(src)), api_name="/restore")

    threads = [threading.Thread(target=call, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results.values())) == len(sources)
    for src, path in results.items():
        expected = local.restore(read_image(src))
        assert np.abs(read_image(path).astype(int) - expected).mean() < 0.5, src.name


def test_api_refuses_bad_uploads_with_a_message(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG but then nothing useful")
    with pytest.raises(Exception, match="bad.png: not an image file"):
        client.predict(handle_file(str(bad)), api_name="/restore")
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(26 * 1024 * 1024))  # over the 25 MB upload limit
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict(handle_file(str(big)), api_name="/mask")
    tiny = tmp_path / "tiny.png"
    Image.new("1", (5000, 5000)).save(tiny, optimize=True)  # ~3 KB declaring 25 megapixels
    with pytest.raises(Exception, match=r"tiny.png: image is too large for blurring at full size .*"
                                        r"the limit is 4.2 megapixels"):
        client.predict(handle_file(str(tiny)), api_name="/blur")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
    with pytest.raises(Exception, match="layers must be positive"):
        client.predict(handle_file(str(good)), layers=[0], api_name="/blur")
    with pytest.raises(Exception, match="blur must be true or false, got 'false'"):
        client.predict(handle_file(str(good)), blur_stage="false", api_name="/blur")
    with pytest.raises(Exception, match="seed must be a whole number from 0, got 2.7"):
        client.predict(handle_file(str(good)), seed=2.7, api_name="/blur")
    wide = tmp_path / "wide.png"  # a mask of another picture: refused, as the Restore tab does
    Image.fromarray(np.zeros((64, 128), np.uint8)).save(wide)
    with pytest.raises(Exception, match=r"wide.png: the mask \(128x64\) does not match the blurry image \(64x64\)"):
        client.predict(handle_file(str(good)), handle_file(str(wide)), api_name="/restore")
    huge_mask = tmp_path / "huge_mask.png"
    Image.new("L", (6000, 5000)).save(huge_mask, optimize=True)  # small file, 30 megapixels
    with pytest.raises(Exception, match=r"huge_mask.png: image is too large for a mask"):
        client.predict(handle_file(str(good)), handle_file(str(huge_mask)), api_name="/restore")
