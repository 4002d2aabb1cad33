"""The score as a channel (issue 31), attacked through the real service: a submission that writes the training labels it
sees into its predictions, and a driver that submits it repeatedly and decodes what its team is shown.

The attacker is given more than a real one has: the pixels of every image (not their labels, not the public/private
split), so it can name the images whose labels it wants. The submission (EXFILTRATE) predicts "pain" on every test
image, except in the fold that holds out the rat `writer` (8 public images): there it predicts "no pain" on the first
`value` test images (in pixel-hash order), `value` = the three target labels it found in its training set as a
three-bit number (0 for a target it did not see). The driver knows only what its code does. It spends two submissions
first (the calibration: "pain" everywhere, then exactly one image "no pain"; without them it read halved or shifted
values on some splits), then decodes each team view by trying every number of public images N and of positives P and
every count of flipped positives a and negatives c, keeping what reproduces the view (under the Ladder: the released
score, rounded, only on an improvement): `ratspain_bench.server.leakage`, whose simulation of the views is checked
here against the real service's, view by view, and whose decoding is checked here on many splits.

Measured with the same submissions through two front ends of one service: one releasing full-precision scores (the
test-only `ladder = "none"`), one with the default Ladder. The figures are printed (pytest -s -n0) and stated in SECURITY.md.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from hosted import CONFIG, HARDCODE, TEMPLATE, cli, hosted

import ratspain_bench as rb
from ratspain_bench import server
from ratspain_bench.evaluation import sandbox
from ratspain_bench.server import leakage

unavailable = sandbox.unavailable("runsc")

VICTIM, WRITER, PER = "r1", "r2", 3  # whose labels are read, which fold writes them, targets per submission
ROUNDS = 2  # submissions per team after the calibration: the victim's 6 images, three at a time (public and private)
COUNTS = {"r1": {"no_pain": 3, "moderate": 3}, "r2": {"no_pain": 8, "moderate": 8}, "r3": {"no_pain": 5, "moderate": 5}}

EXFILTRATE = '''"""Writes three training labels into the number of test images it calls "no pain" in one fold."""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ratspain_bench.methods import Method, Predictions


def key(image):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


@dataclass(frozen=True)
class ExfilConfig:
    image_size: int = 32


class Exfiltrate(Method):
    Config = ExfilConfig
    family = "exfiltrate"

    def fit(self, train):
        plan = json.loads((Path(__file__).parent / "plan.json").read_text())
        seen = dict(zip(map(key, train.images), (int(v) for v in train.labels)))
        self.value = plan.get("value", sum(seen.get(t, 0) << i for i, t in enumerate(plan["targets"])))
        self.writes = plan["writer"] not in set(map(str, train.subjects))  # this fold holds the writer rat out

    def predict(self, test):
        labels = np.ones(len(test.images), dtype=int)
        if self.writes:
            order = sorted(range(len(test.images)), key=lambda i: key(test.images[i]))
            labels[order[: self.value]] = 0
        return Predictions(labels, labels.astype(float))
'''


def rounds(targets: list[str]) -> list[list[str]]:
    """The targets of each submission after the calibration, `PER` at a time."""
    return [targets[r * PER:(r + 1) * PER] for r in range(ROUNDS)]


def hypotheses(images: int) -> list[tuple[int, int]]:
    """Every (P, N) the driver tries: it knows neither the number of public images nor of positives among them."""
    return [(p, n) for n in range(2, images + 1) for p in range(1, n)]


def attack(service, url: str, team: str, targets: list[str], tmp: Path, out: dict) -> None:
    token = service.team(team)
    views = []
    plans = [{"writer": WRITER, "targets": [], "value": v} for v in leakage.CALIBRATION]
    plans += [{"writer": WRITER, "targets": batch} for batch in rounds(targets)]
    for r, plan in enumerate(plans):
        folder = tmp / f"{team}-{r}"
        shutil.copytree(TEMPLATE, folder)
        (folder / "exfil.py").write_text(EXFILTRATE)
        (folder / "plan.json").write_text(json.dumps(plan))
        (folder / "submission.toml").write_text(
            f'kind = "method"\nname = "{team}-{r}"\ndescription = "reads labels"\nauthors = ["Mallory"]\n'
            'contact = "m@example.org"\npaper = "unpublished"\nlicence = "MIT"\nentry_point = "exfil:Exfiltrate"\n')
        code, reply = service.upload(folder, token, url=url)
        assert code == 201, reply
        views.append(service.wait(reply["id"], token, timeout=300))
        assert views[-1]["status"] == "scored", service.host(reply["id"])
    out[team] = (token, views)


def test_the_calibration_makes_full_precision_decoding_exact_on_every_split():
    """On the test's replica (simulated views; the service's are checked against them below): with the calibration
    every public label is read on each of 60 splits; without it some splits read halved or shifted values."""
    from types import SimpleNamespace

    import pandas as pd

    from ratspain_bench.server.partition import draw

    rows = pd.DataFrame([(f"{rat}-{label}-{i}", rat, int(label == "moderate")) for rat, by in COUNTS.items()
                         for label, n in by.items() for i in range(n)], columns=["image", "subject", "label"])
    labels, subject = dict(zip(rows["image"], rows["label"])), dict(zip(rows["image"], rows["subject"]))
    targets = sorted(k for k in labels if subject[k] == VICTIM)
    batches, every = rounds(targets), hypotheses(len(labels))
    wrong = 0
    for seed in range(60):
        public = set(draw(SimpleNamespace(table=rows), 0.5, seed))
        for calibrate in (True, False):
            seen = leakage.views(labels, public, subject, batches, WRITER, "none", calibrate=calibrate)
            got = leakage.recovery(leakage.decode(seen, "none", 0.02, every, PER, calibrate), targets, labels, public)
            if calibrate:
                assert got["public"] == 1.0, seed
            else:
                wrong += got["public"] < 1.0
    assert wrong > 0, "no split read wrong without the calibration: the test no longer shows why it is needed"


@pytest.mark.skipif(bool(unavailable), reason=f"the service's workers run under gVisor: {unavailable}")
def test_the_score_channel_reads_public_labels_without_the_ladder_and_never_private_ones(tmp_path_factory, tmp_path):
    from ratspain_bench.data.cache import load_images

    # CONFIG's 5 submissions a day: the calibration's 2, ROUNDS, a final one
    with hosted(tmp_path_factory.mktemp("exfil"), CONFIG, COUNTS) as service:
        ds = rb.load_dataset(service.data)
        keys = [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in load_images(ds, 32)[0]]
        labels = dict(zip(keys, ds.table["label"].astype(int)))
        subject = dict(zip(keys, ds.table["subject"].astype(str)))
        public = {k for k, image in zip(keys, ds.table["image"]) if image in set(service.split["ids"])}
        targets = sorted(k for k in keys if subject[k] == VICTIM)
        batches = rounds(targets)

        full = service.front(CONFIG + 'ladder = "none"\n')
        views: dict = {}
        runs = [threading.Thread(target=attack, args=(service, u, team, targets, tmp_path, views))
                for u, team in ((full, "full-precision"), (service.url, "laddered"))]
        for t in runs:
            t.start()
        for t in runs:
            t.join()
        assert set(views) == {"full-precision", "laddered"}, "an attack did not finish (see the assertion above)"

        figures, every = {}, hypotheses(len(keys))
        for team, ladder in (("full-precision", "none"), ("laddered", "step")):
            seen = [{k: v[k] for k in ("released", "f1", "accuracy") if k in v} for v in views[team][1]]
            # the simulation is the service, view by view; and what a team is shown never depends on a private label
            simulated = leakage.views(labels, public, subject, batches, WRITER, ladder, calibrate=True)
            assert [sorted(v) for v in seen] == [sorted(v) for v in simulated]
            assert all(v[k] == pytest.approx(w[k], abs=1e-9) for v, w in zip(seen, simulated) for k in v), (seen, simulated)
            flipped = {k: (1 - y if k not in public else y) for k, y in labels.items()}
            assert leakage.views(flipped, public, subject, batches, WRITER, ladder, calibrate=True) == simulated
            guess = leakage.decode(seen, ladder, 0.02, every, PER, calibrated=True)
            figures[team] = leakage.recovery(guess, targets, labels, public)
        print("label recovery (public, private): " + ", ".join(f"{t} {f['public']:.2f}, {f['private']:.2f}" for t, f in figures.items()))

        # full precision: every public label read exactly; a private label was never in a worker's inputs, so the code
        # wrote 0 for it and the driver reads "no pain": the constant guess, chance
        assert figures["full-precision"]["public"] == 1.0
        private = [k for k in targets if k not in public]
        assert figures["full-precision"]["private"] == pytest.approx(np.mean([labels[k] == 0 for k in private]))

        # hard-coding what the attack recovered: the final run scores it on the private images, where it knows nothing
        token = views["full-precision"][0]
        cheat = tmp_path / "final"
        shutil.copytree(TEMPLATE, cheat)
        (cheat / "hard.py").write_text(HARDCODE)
        (cheat / "answers.json").write_text(json.dumps({k: labels[k] for k in targets if k in public}))
        (cheat / "submission.toml").write_text(
            'kind = "method"\nname = "mined-answers"\ndescription = "the recovered labels"\nauthors = ["Mallory"]\n'
            'contact = "m@example.org"\npaper = "unpublished"\nlicence = "MIT"\nentry_point = "hard:HardCoded"\n')
        code, reply = service.upload(cheat, token, url=full)
        assert code == 201, reply
        assert service.wait(reply["id"], token)["status"] == "scored"
        assert subprocess.run(cli("submit", "select", str(reply["id"]), "--server", full, "--token", token), capture_output=True,
                              env=service.env, timeout=60).returncode == 0
        server.revoke_team("laddered", db=service.db)
        out = subprocess.run(cli("server", "finalize", "--data", str(service.data), "--db", service.db, "--runs-dir", str(service.runs)),
                             capture_output=True, text=True, env=service.env, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        code, board = service.call("GET", "/api/final")
        row = next(r for r in board["leaderboards"][0]["rows"] if r["method"] == "mined-answers")
        truth = [labels[k] for k in keys if k not in public]
        assert row["pooled"]["f1"] == 0.0  # it calls every private image "no pain": the constant guess
        assert row["pooled"]["accuracy"] == pytest.approx(float(np.mean([y == 0 for y in truth])), abs=1e-6)
