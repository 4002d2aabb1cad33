"""`MODEL_CARD.md`: what a trained model is, what it was trained on, the LORO evidence of its exact config
and code, its calibration, and what it is for and not for. Written into the model folder (with
`reliability.png` when there is evidence) and logged with the model's MLflow run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .evidence import RESAMPLES, Evidence
from .saved import CARD, SYNTHETIC_NOTE

RELIABILITY_PNG = "reliability.png"


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def reliability_png(path: Path, ev: Evidence) -> Path:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) is left alone

    t = ev.reliability[ev.reliability["n"] > 0]
    fig = Figure(figsize=(3.6, 3.4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    ax.plot(t["mean_probability"], t["pain_rate"], "o-", label=ev.method)
    ax.set_xlabel("predicted probability of pain (LORO)")
    ax.set_ylabel("observed pain rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Brier {ev.brier:.4f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _evidence(ev: Evidence | None, why: str, meta: dict) -> list[str]:
    if ev is None:
        return ["## LORO evidence", "",
                f"**None.** {why}. This model's quality on held-out animals is unknown. Measure it with the same "
                f"config and code: `ratspain-bench train ... --evaluate`, or `ratspain-bench run --methods {meta['method']} "
                f"--profile {meta['profile']} --seed {meta['seed']}` (with the same `--data`, `--set`) and train again.", ""]
    p, iv = ev.score["pooled"], ev.interval
    out = ["## LORO evidence", "",
           f"Leave-one-rat-out run `{ev.run_id}` ({ev.method}) in `{ev.uri}`: the same dataset fingerprint, config hash, "
           "code hash and seed as this model. Pooled = one confusion matrix summed over the folds (the paper's LORO column); "
           f"95% intervals from a bootstrap over rats ({RESAMPLES} resamples of whole animals).", "",
           _table(["", "F1 (pain)", "accuracy"],
                  [["pooled", f"{p['f1']:.4f} [{iv['pooled_f1'].low:.4f}, {iv['pooled_f1'].high:.4f}]",
                    f"{_pct(p['accuracy'])} [{_pct(iv['pooled_accuracy'].low)}, {_pct(iv['pooled_accuracy'].high)}]"],
                   ["mean over rats", f"{ev.score['mean_over_subjects']['f1']:.4f}", _pct(ev.score["mean_over_subjects"]["accuracy"])]]),
           "", "Per held-out rat:", "",
           _table(["rat", "n", "F1", "accuracy", "tp", "fp", "fn", "tn"],
                  [[s, d["n"], f"{d['f1']:.4f}", _pct(d["accuracy"]), d["tp"], d["fp"], d["fn"], d["tn"]]
                   for s, d in ev.score["per_subject"].items()]), ""]
    units = ev.score.get("action_units")
    if units:  # the au task: the binary cells above are of the label derived from the predicted grades
        f = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
        out += ["Action units (the F1 and accuracy above are of the pain label derived from the predicted grades; "
                "κw: quadratic-weighted kappa against the raters' consensus, pooled):", "",
                _table(["AU", "n", "accuracy", "macro-F1", "κw"],
                       [[a, d["n"], f(d["accuracy"]), f(d["macro_f1"]), f(d["qwk"])] for a, d in units["au"].items()]), "",
                f"RGS score (mean of the four grades) against the consensus score: ICC(A,1) {f(units['rgs']['icc_a1'])}, "
                f"Pearson r {f(units['rgs']['pearson_r'])}, MAE {f(units['rgs']['mae'])} (n = {units['rgs']['n']}).", ""]
    if ev.pose:
        out += ["Per head-pose bin (pooled over folds):", "",
                _table(["pose", "n", "F1", "accuracy"],
                       [[b, int(d.get("n", 0)), f"{d.get('f1', np.nan):.4f}", _pct(d.get("accuracy", np.nan))] for b, d in ev.pose.items()]), ""]
    else:
        out += ["Per head-pose bin: not known (the dataset has no `pose_bin`).", ""]
    out += ["## Calibration (LORO probabilities)", ""]
    if ev.brier is None:
        out += ["The run's predictions carry no probabilities.", ""]
    else:
        note = (" The LBP-SVM probability is a logistic squashing of the SVM margin, not a calibrated probability."
                if meta["family"] == "lbp" else "")
        rows = [[f"{r.low:.1f}-{r.high:.1f}", r.n, f"{r.mean_probability:.3f}", f"{r.pain_rate:.3f}"]
                for r in ev.reliability.itertuples() if r.n > 0]
        out += [f"Brier score **{ev.brier:.4f}** (0 is perfect; always answering 0.5 scores 0.25).{note}", "",
                f"![reliability]({RELIABILITY_PNG})", "", _table(["p(pain)", "n", "mean p", "observed pain rate"], rows), ""]
    return out


def write_card(folder: Path, meta: dict, ev: Evidence | None, why: str) -> list[Path]:
    """MODEL_CARD.md (and reliability.png when there is evidence) in `folder`; the files written."""
    d = meta["dataset"]
    lines = [f"# Model card: {meta['method']}", ""]
    if d["synthetic"]:
        lines += [f"> **WARNING: synthetic.** This model was {SYNTHETIC_NOTE}.", ""]
    lines += ["## Method and configuration", "",
              f"`{meta['method']}` (family `{meta['family']}`, {meta['source']}), profile `{meta['profile']}`, seed {meta['seed']}, "
              f"config hash `{meta['config_hash']}`, code hash `{meta['code_hash']}`, git commit `{meta['git_commit']}`.",
              *([f"Cites: {meta['cite']}"] if meta.get("cite") else []), "",
              _table(["parameter", "value"], [[k, f"`{v}`"] for k, v in meta["params"].items()]), "",
              "Preprocessing of every image (training and `predict` alike):", "",
              *[f"- {k}: {v}" for k, v in meta["preprocessing"].items()], "",
              f"Decision: `pain` = 1 when the method's probability of pain exceeds {meta['threshold']} (its own decision rule).", "",
              "## Training data", "",
              f"`{d['name']}` ({d['source']}), fingerprint `{d['fingerprint']}`: {d['n']} images of {len(d['per_subject'])} "
              f"animals, every one used for training (no held-out animal).", "",
              _table(["class", "images"], [[k, v] for k, v in d["per_class"].items()]), "",
              _table(["animal", *d["columns"]], [[s, *[c.get(k, 0) for k in d["columns"]]] for s, c in d["per_subject"].items()]), ""]
    lines += _evidence(ev, why, meta)
    lines += ["## Intended use and limits", "",
              "- Intended use: research on automated pain assessment in laboratory rats from face images, as a second opinion "
              "beside trained observers scoring the Rat Grimace Scale; never as the only basis of a welfare decision.",
              "- The evidence above is leave-one-rat-out on this dataset's animals, camera and lighting; other strains, "
              "cameras, crops or head poses may score worse. Check it on your own labelled images first.",
              "- Inputs should be face crops like the training images; the model cannot tell a face from anything else "
              "and will score any image it is given.",
              f"- Trained on {len(d['per_subject'])} animals: few animals make a wide interval; read it before the point estimate."]
    if d["synthetic"]:
        lines += [f"- **Synthetic training data**: {SYNTHETIC_NOTE}."]
    lines += ["", "## Use", "", "```bash", "ratspain-bench predict MODEL_DIR faces/ --out scores.csv", "```", "",
              "```python", "import ratspain_bench as rb", "rb.load_model('MODEL_DIR').predict('faces/')", "```", ""]
    path = Path(folder) / CARD
    path.write_text("\n".join(lines), encoding="utf-8")
    written = [path]
    if ev is not None and ev.brier is not None:
        written.append(reliability_png(Path(folder) / RELIABILITY_PNG, ev))
    return written
