"""Screenshots of every tab of the web app, for the README.

    .venv/bin/python scripts/screenshots.py [--weights DIR] [--out DIR]

Starts the app on a free localhost port and drives it with headless Chromium (`make browser`):
blurs, restores and compares the public-domain astronaut portrait, casts a few study votes on
blurred copies of it (so no dataset face ends up in the pictures), opens the study results and
shows the Learn tab. Writes blur.jpg, restore.jpg, compare.jpg, study.jpg and learn.jpg into
--out (default: docs/screenshots of the project, whatever the current directory).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from smfd.batch import check_folder
from smfd.cli import run_reported, script_parser
from smfd.images import write_png

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT = 120_000
ROOT = Path(__file__).resolve().parents[1]


def snap(page, path: Path) -> None:
    page.screenshot(path=path, full_page=True, type="jpeg", quality=85)  # a tenth of a PNG's size


def run_and_snap(page, button: str, result: str, text: str, settle: float, path: Path) -> None:
    """Click ``button``, wait until ``result`` shows ``text``, let the page settle, take the picture."""
    from playwright.sync_api import expect

    page.click(button)
    expect(page.locator(result)).to_contain_text(text, timeout=TIMEOUT)
    time.sleep(settle)  # e.g. the mask editor draws its canvas
    snap(page, path)


def shoot(url: str, out: Path, token: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector("#blur-run", timeout=TIMEOUT)

        page.click("#blur-run")
        expect(page.locator("#blur-send")).to_be_enabled(timeout=TIMEOUT)
        snap(page, out / "blur.jpg")

        page.click("#blur-send")
        run_and_snap(page, "#restore-run", "#restore-report", "restored", 2, out / "restore.jpg")

        page.get_by_role("tab", name="Compare").click()
        run_and_snap(page, "#compare-run", "#compare-table", "SMFD (generated mask)", 1, out / "compare.jpg")

        for k in range(4):  # a few participants, so that the results view has something to show
            voter = browser.new_context().new_page()
            voter.goto(url)
            voter.get_by_role("tab", name="User study").click()
            voter.click("#study-start")
            for side in ("left", "right", "left")[: 1 + k % 3]:
                expect(voter.locator("#study-pick-left")).to_be_enabled(timeout=TIMEOUT)
                voter.click(f"#study-pick-{side}")
                time.sleep(1)
            voter.context.close()
        page.get_by_role("tab", name="User study").click()
        page.click("#study-start")
        expect(page.locator("#study-left img")).to_be_visible(timeout=TIMEOUT)
        page.get_by_text("Results (admin)").click()
        page.locator("#study-token input").fill(token)
        page.click("#study-show")
        expect(page.locator("#study-plot img")).to_be_visible(timeout=TIMEOUT)
        snap(page, out / "study.jpg")

        page.get_by_role("tab", name="Learn").click()
        run_and_snap(page, "#learn-run", "#learn-smfd-maps", "network output", 2, out / "learn.jpg")
        browser.close()


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    out = check_folder(args.out, "--out")
    import app  # noqa: F401  (telemetry off before gradio loads; after the options: --help stays quick)
    from app.demo_process import free_port
    from app.examples import astronaut_face, blurred
    from app.main import launch

    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        for seed in range(3):  # as `smfd blur --seed` blurs a file of that name
            name = f"astronaut-{seed}.png"
            write_png(photos / name, blurred(astronaut_face(), seed, name)[0])
        port, token = free_port(), "screenshots"
        demo = launch(port=port, weights=args.weights, study_db=f"sqlite:///{tmp}/study.sqlite",
                      admin_token=(token, True), study_images=photos, block=False)
        try:
            out.mkdir(parents=True, exist_ok=True)  # once the app runs: a failed start leaves no folder
            shoot(f"http://127.0.0.1:{port}/", out, token)
        finally:
            demo.close()
    for name in ("blur", "restore", "compare", "study", "learn"):
        print(f"wrote {out / name}.jpg")


if __name__ == "__main__":
    sys.exit(run_reported(main))
