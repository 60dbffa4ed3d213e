"""`bvae answer` end to end on a generated folder: the plan and its estimate printed before
the runs, an interrupt that a rerun continues from, the page written, other settings refused."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, make_project, tool_env

pytestmark = pytest.mark.heavy  # end-to-end runs of the real DVC pipeline (`pytest -m heavy`; CI runs them)

FAST = [  # every run in seconds: the plan is what is tested, not the models
    "train.epochs=1",
    "stage2.epochs=2",
    "stage2.width=32",
    "reference.classifier.epochs=1",
    "evaluate.num_samples=20",
    "evaluate.nll_samples=2",
    "evaluate.samplers=[gen1,gen2]",
    "evaluate.rescale=false",
]


def _answer(project, folder, out, *extra):
    args = ["--data", str(folder), "--size", "8", "--seeds", "1", "--out", str(out)]
    return [sys.executable, "-m", "bvae.cli", "answer", *args, *[a for kv in FAST for a in ("-S", kv)], *extra]


def test_answer_plans_survives_an_interrupt_and_writes_the_page(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from make_folder import make

    folder = tmp_path / "styles"
    make(folder, per_class=12, size=16, seed=0)  # 48 images in 4 classes, resized to 8 px
    project = make_project(tmp_path / "project", {})
    out = tmp_path / "answer"

    proc = subprocess.Popen(
        _answer(project, folder, out),
        cwd=project,
        env=tool_env(),
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C's default action
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines, second = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[2/"):  # the event: the second run started
                second.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert second.wait(600), "".join(lines[-40:]) + proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
    proc.wait(timeout=300)
    reader.join(10)
    err = proc.stderr.read()
    text = "".join(lines)
    assert proc.returncode == 130, text[-3000:] + err
    # before the first run: the data, the model, the rates measured and the plan with its estimate;
    # 3x8x8 images: latent 16 by the size rule, so the reference k (2 * 8 / 16)^2 = 1 is k = 1: 7 runs
    assert "test images of 3x8x8, 4 classes" in text
    assert "latent_dim 16 (auto" in text and "ms per stage-1 step" in text
    assert "7 runs (0 done before), about " in text and "estimate for the 7 to run: " in text
    assert text.index("estimate for the 7 to run") < text.index("[1/7] fixed-beta1-s0")
    # bvae answer owns Ctrl-C: its children run in their own session and stop silently on its SIGTERM,
    # so the one line is its own, whatever the moment (here: as the second run's DVC starts)
    assert "Traceback" not in err
    stops = [line for line in err.splitlines() if line.startswith(("interrupted", "terminated"))]
    assert stops == ["interrupted: 1 of 7 runs done; the same command continues from fixed-beta0.1-s0"], err[-3000:]
    assert list(json.loads((out / "answer.json").read_text())["done"]) == ["fixed-beta1-s0"]

    again = subprocess.run(_answer(project, folder, out), cwd=project, env=tool_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "7 runs (1 done before)" in again.stdout and "[1/7]" not in again.stdout
    done = json.loads((out / "answer.json").read_text())["done"]
    assert len(done) == 7 and all(seconds > 0 for seconds in done.values())
    page = (out / "results.md").read_text()
    assert "# Is scaling the KL sound? Every balancing strategy on `folder`, 1 seed(s) each" in page
    assert "Its floor here, the FID of real training images against the test images, is" in page
    assert (out / "figures" / "compare.png").is_file()

    refused = subprocess.run(  # the last --seeds counts (click): 2, not the first run's 1
        _answer(project, folder, out, "--seeds", "2"), cwd=project, env=tool_env(), capture_output=True, text=True
    )
    assert refused.returncode == 2 and "holds an answer for other settings (--data" in refused.stderr
