"""The MLflow UI as a person sees it, in a real browser: headless Chromium (Debian's
`chromium`) driven by Playwright, on the store of the default pipeline and the README's two
`dvc exp run`s, opened at the address `bvae ui` prints.

Checked by the page's text and elements: the "Model training" view of the runs (not the GenAI
views), the three parent runs by name with their dataset, source and model; Compare of two
parents showing each one's GEN-2 grid as an image; a parent's page with its dataset, source
command, logged and registered model. Screenshots go to $BVAE_SCREENSHOTS (else the test's
temporary folder). About 6 minutes: `bash scripts/test.sh -m slow tests/test_ui_browser.py`
($BVAE_UI_PROJECT=<project> checks a project that has run the scenario already, in seconds).
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, make_project, run, tool_env

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EXPERIMENTS = {  # the README's scenario: name -> the params it sets
    "b01": ("train.balance.strategy=fixed", "train.balance.beta=0.1"),
    "b1": ("train.balance.strategy=fixed", "train.balance.beta=1.0"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, dict]:
    """A project after `dvc repro` and the two experiments (or, with $BVAE_UI_PROJECT, a
    project that has run them already); its parent runs' ids by name."""
    from mlflow import MlflowClient

    if os.environ.get("BVAE_UI_PROJECT"):
        project = Path(os.environ["BVAE_UI_PROJECT"])
    else:
        project = make_project(tmp_path_factory.mktemp("ui") / "p", {})
        run(["dvc", "repro", "--force"], project)  # --force: a new store gets every stage (scripts/repro.sh)
        for name, sets in EXPERIMENTS.items():
            run(["dvc", "exp", "run", "-n", name, *[a for s in sets for a in ("-S", s)]], project)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("balanced-vae").experiment_id
    parents = client.search_runs([exp], "tags.`bvae.role` = 'pipeline'")
    return project, {r.info.run_name: r.info.run_id for r in parents}


@pytest.fixture(scope="module")
def ui(store):
    """`bvae ui` on the store: the address it prints, once the server answers."""
    project, _ = store
    port = free_port()
    proc = subprocess.Popen(
        ["bvae", "ui", "--port", str(port)],
        cwd=project,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the UI's own workers too are stopped with the group below
    )
    try:
        line = proc.stderr.readline()  # the event: the address line, printed before the server starts
        assert "open http" in line, line
        address = line.split("open ", 1)[1].split()[0]
        deadline = time.time() + 180
        while True:  # the event: /health answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def page(ui):
    if CHROMIUM is None:
        pytest.skip("no chromium: apt-get install chromium (Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})  # a fresh profile: nothing remembered
        page.set_default_timeout(60_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BVAE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def parent_names(parents: dict) -> dict:
    """{"b01": "b01 · fixed beta=0.1", "b1": ..., "repro": "running_gamma k=1.0 · <hash>"}."""
    names = {n.split(" · ")[0]: n for n in parents if n.split(" · ")[0] in EXPERIMENTS}
    names["repro"] = next(n for n in parents if n.startswith("running_gamma k=1.0 · "))
    return names


def test_the_printed_address_opens_the_model_training_runs_with_dataset_source_and_model(store, ui, page, shots):
    _, parents = store
    assert ui.endswith("/runs?workflowType=machine_learning")
    page.goto(ui)
    names = parent_names(parents)
    for name in names.values():
        page.get_by_text(name, exact=True).wait_for()  # each parent by its name
    body = page.inner_text("body")
    assert "Model training" in body and "Judges" not in body and "Prompts" not in body  # not the GenAI views
    for column in ("Dataset", "Source", "Models"):
        assert column in body
    assert body.count("digits (") >= 3  # the dataset column of each parent
    assert "dvc repro" in body and "dvc exp run -n b01" in body and "dvc exp run -n b1" in body
    page.wait_for_function("document.body.innerText.split('generator').length > 3")  # each parent's model
    page.screenshot(path=shots / "runs.png")


def test_compare_shows_each_parents_gen2_grid(store, ui, page, shots):
    _, parents = store
    names = parent_names(parents)
    ids = [parents[names["b01"]], parents[names["b1"]]]
    base = ui.split("/#/")[0]
    experiment = ui.split("/experiments/")[1].split("/")[0]
    page.goto(
        f"{base}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([experiment])}"
        "&workflowType=machine_learning"
    )
    page.get_by_text("Artifacts", exact=True).wait_for()
    for grid in ("samples_gen2.png", "samples_gen1.png", "samples_rec.png", "samples_real.png"):
        page.get_by_text(grid, exact=True).wait_for()  # common files at the parents' artifact root
    page.get_by_text("samples_gen2.png", exact=True).dispatch_event("click")
    images = page.locator('img[src^="blob:"]')
    page.wait_for_function(  # the event: two different images (one grid per parent), loaded, 256 px or wider
        "(() => { const shown = [...document.querySelectorAll('img[src^=\"blob:\"]')];"
        " return new Set(shown.map(i => i.src)).size === 2 && shown.every(i => i.complete && i.naturalWidth >= 256); })()"
    )
    # the parallel-coordinates plot opens on the headline metric (the parents' first)
    assert "fid_domain_gen2" in page.locator("text=Metrics:").locator("..").inner_text()
    images.first.scroll_into_view_if_needed()
    page.screenshot(path=shots / "compare.png")


def test_a_parent_page_links_its_dataset_source_and_models(store, ui, page, shots):
    _, parents = store
    names = parent_names(parents)
    page.goto(ui.replace("/runs?", f"/runs/{parents[names['b01']]}?"))
    page.get_by_text(names["b01"], exact=True).first.wait_for()
    page.get_by_role("heading", name="Registered models").wait_for()
    page.wait_for_function("document.body.innerText.includes('balanced-vae-generator')")
    body = page.inner_text("body")
    assert "dvc exp run -n b01" in body  # Source
    datasets = body.rsplit("Datasets", 1)[1]
    assert datasets.lstrip().startswith("digits (")  # Datasets: the data it used
    registered = body.rsplit("Registered models", 1)[1]  # the page's section (the runs list may linger before it)
    assert registered.lstrip().startswith("balanced-vae-generator")  # its registered version
    assert "data_dim" in body  # a param now, beside the configuration's params
    page.screenshot(path=shots / "parent.png")
