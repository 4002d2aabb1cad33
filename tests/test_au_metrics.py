"""AU metrics against independent implementations (scikit-learn, pingouin, scipy, krippendorff) and edge cases."""
import ast
import json
import warnings
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from ratspain_bench import metrics_au as m
from ratspain_bench.tasks import AUS


def sk_qwk(t, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(t, p, weights="quadratic")
    return None if np.isnan(k) else k


def pg_icc(x, y):
    n = len(x)
    long = pd.DataFrame({"target": np.tile(np.arange(n), 2), "rater": np.repeat(["a", "b"], n),
                         "rating": np.concatenate([x, y]).astype(float)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pingouin.intraclass_corr(long, targets="target", raters="rater", ratings="rating").set_index("Type")
    return out.loc["ICC(A,1)" if "ICC(A,1)" in out.index else "ICC2", "ICC"]


def approx(a, b):
    return a is None and b is None or a is not None and b is not None and a == pytest.approx(b, abs=1e-9)


def test_module_imports_no_test_only_package():
    tree = ast.parse(Path(m.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert names <= {"__future__", "re", "numpy", "pandas", "scipy", "sklearn"}


# --- per AU ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t,p,kappa", [
    ([0, 1, 2, 0], [0, 1, 2, 0], 1.0),
    ([1, 1, 1], [1, 1, 1], None),  # both sides one grade: 0/0
    ([1, 1, 1], [2, 2, 2], 0.0),  # one grade each, different: observed = chance (as scikit-learn)
    ([1, 1, 1, 1], [0, 1, 2, 1], 0.0),  # constant truth, varied predictions
    ([0, 1, 2, 0], [1, 1, 2, 0], 0.8),  # hand-computed: 1 - 1/5
])
def test_qwk_fixed_cases(t, p, kappa):
    assert approx(m.qwk(t, p), kappa)
    assert approx(m.qwk(t, p), sk_qwk(t, p))


def test_empty_is_none():
    assert m.accuracy([], []) is None and m.macro_f1([], []) is None and m.qwk([], []) is None
    assert m.au_block([np.nan, None], [1, 2]) == {"accuracy": None, "macro_f1": None, "qwk": None, "n": 0}


def test_per_au_metrics_match_sklearn_random():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n = int(rng.integers(1, 30))
        grades = rng.choice([[0, 1, 2], [0, 1], [1, 2], [0, 2], [1]][int(rng.integers(5))], size=2 * n)
        t, p = grades[:n], np.where(rng.random(n) < 0.5, grades[:n], grades[n:])
        assert m.accuracy(t, p) == pytest.approx(accuracy_score(t, p))
        assert m.macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
        assert approx(m.qwk(t, p), sk_qwk(t, p))


# --- RGS score -----------------------------------------------------------------------------------------------

def test_icc_and_pearson_match_pingouin_and_scipy_random():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(3, 40))
        x = rng.integers(0, 9, n) / 4  # RGS-like scores in steps of 0.25: many ties
        y = np.clip(x + rng.choice([-0.5, -0.25, 0, 0, 0.25, 0.5], n), 0, 2)
        assert m.icc_a1(np.column_stack([x, y])) == pytest.approx(pg_icc(x, y), abs=1e-9)
        if np.ptp(x) and np.ptp(y):
            assert m.pearson_r(x, y) == pytest.approx(pearsonr(x, y)[0], abs=1e-9)


def test_icc_three_raters_matches_pingouin():
    data = pingouin.read_dataset("icc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pingouin.intraclass_corr(data, targets="Wine", raters="Judge", ratings="Scores").set_index("Type")
    wide = data.pivot_table(index="Wine", columns="Judge", values="Scores").to_numpy()
    assert m.icc_a1(wide) == pytest.approx(ref.loc["ICC(A,1)", "ICC"], abs=1e-9)


def test_rgs_undefined_and_ties():
    assert m.icc_a1([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]) is None  # no variance at all
    assert m.icc_a1([[1.0, 0.5]]) is None  # one image
    assert m.pearson_r([1, 1, 1], [0, 1, 2]) is None
    assert m.rgs_block([0.5, 0.5], [0.5, 0.5]) == {"icc_a1": None, "pearson_r": None, "mae": 0.0, "n": 2}
    assert m.rgs_block([], []) == {"icc_a1": None, "pearson_r": None, "mae": None, "n": 0}
    x, y = np.array([0.25, 0.5, 0.75, 1.0]), np.array([0.5, 0.5, 0.5, 0.5])  # constant consensus: ICC defined
    assert m.icc_a1(np.column_stack([x, y])) == pytest.approx(pg_icc(x, y), abs=1e-9)
    assert m.icc_a1(np.column_stack([y + 0.25, y + 0.25 * np.array([1, 1, 1, 0])])) is not None


# --- Krippendorff's alpha ----------------------------------------------------------------------------------

def test_alpha_krippendorff_reference_example():
    d = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
                  [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
                  [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
                  [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan]])
    assert m.krippendorff_alpha(d, "nominal") == pytest.approx(0.743, abs=5e-4)  # Krippendorff (2011)
    assert m.krippendorff_alpha(d, "interval") == pytest.approx(0.849, abs=5e-4)
    assert m.krippendorff_alpha(d, "ordinal") == pytest.approx(krippendorff.alpha(d, level_of_measurement="ordinal"))


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_matches_krippendorff_package_random(level):
    rng = np.random.default_rng(2)
    for _ in range(120):
        raters, units = int(rng.integers(2, 9)), int(rng.integers(2, 40))
        truth = rng.integers(0, 3, units)
        d = np.where(rng.random((raters, units)) < 0.7, truth, rng.integers(0, 3, (raters, units))).astype(float)
        d[rng.random((raters, units)) < 0.3] = np.nan
        pairable = d[:, np.sum(~np.isnan(d), axis=0) >= 2]
        if len(np.unique(pairable[~np.isnan(pairable)])) < 2:
            assert m.krippendorff_alpha(d, level) is None
            continue
        assert m.krippendorff_alpha(d, level) == pytest.approx(krippendorff.alpha(d, level_of_measurement=level), abs=1e-9)


def test_alpha_edge_cases():
    assert m.krippendorff_alpha([[0, 1, 2], [0, 1, 2]]) == pytest.approx(1.0)
    assert m.krippendorff_alpha([[1, 1], [1, 1]]) is None  # one value only: expected disagreement 0
    assert m.krippendorff_alpha([[0, np.nan], [np.nan, 2]]) is None  # no unit with two values
    assert m.krippendorff_alpha([[0, 1, 2, 9], [0, 1, 2, np.nan]]) == pytest.approx(1.0)  # lone value dropped
    with pytest.raises(ValueError):
        m.krippendorff_alpha([[0, 1], [0, 1]], "ratio")


# --- score_au ----------------------------------------------------------------------------------------------

def random_frame(rng, subjects=("1", "2", "3", "10"), blank=0.15):
    rows = []
    for s in subjects:
        for i in range(int(rng.integers(4, 15))):
            row = {"image": f"{s}_{i}", "subject": s, "y_true": 0, "y_pred": 0}
            for a in AUS:
                t = int(rng.integers(0, 3))
                row[f"y_true_au_{a}"] = None if rng.random() < blank else t
                row[f"y_pred_au_{a}"] = t if rng.random() < 0.6 else int(rng.integers(0, 3))
            rows.append(row)
    frame = pd.DataFrame(rows)
    for a in AUS:
        frame[f"y_true_au_{a}"] = frame[f"y_true_au_{a}"].astype("Int64")
    return frame


def reference_block(f):
    """The same numbers from scikit-learn, pingouin, scipy and a pandas mean."""
    out = {"au": {}}
    for a in AUS:
        ok = f[f"y_true_au_{a}"].notna().to_numpy()
        t, p = f[f"y_true_au_{a}"][ok].astype(int).to_numpy(), f[f"y_pred_au_{a}"][ok].to_numpy()
        out["au"][a] = {"n": int(ok.sum())}
        if ok.any():
            out["au"][a].update(accuracy=accuracy_score(t, p), macro_f1=f1_score(t, p, average="macro", zero_division=0),
                                qwk=sk_qwk(t, p))
    truth = f[[f"y_true_au_{a}" for a in AUS]].astype(float).mean(axis=1, skipna=True).to_numpy()
    pred = f[[f"y_pred_au_{a}" for a in AUS]].astype(float).mean(axis=1).to_numpy()
    ok = ~np.isnan(truth)
    out["rgs"] = {"n": int(ok.sum()), "mae": float(np.mean(np.abs(pred[ok] - truth[ok]))),
                  "x": pred[ok], "y": truth[ok]}
    return out


def check_block(got, ref):
    for a in AUS:
        assert got["au"][a]["n"] == ref["au"][a]["n"]
        for k in ("accuracy", "macro_f1", "qwk"):
            assert approx(got["au"][a][k], ref["au"][a].get(k)), (a, k)
    r = ref["rgs"]
    assert got["rgs"]["n"] == r["n"] and got["rgs"]["mae"] == pytest.approx(r["mae"])
    if r["n"] >= 2 and np.ptp(np.concatenate([r["x"], r["y"]])):
        assert got["rgs"]["icc_a1"] == pytest.approx(pg_icc(r["x"], r["y"]), abs=1e-9)
    if r["n"] >= 2 and np.ptp(r["x"]) and np.ptp(r["y"]):
        assert got["rgs"]["pearson_r"] == pytest.approx(pearsonr(r["x"], r["y"])[0], abs=1e-9)
    else:
        assert got["rgs"]["pearson_r"] is None


def test_score_au_matches_references_pooled_and_per_subject():
    rng = np.random.default_rng(3)
    for _ in range(4):
        f = random_frame(rng)
        s = m.score_au(f)
        assert set(s) == {"n", "icc_form", "au", "rgs", "per_subject", "mean_over_subjects"}
        assert list(s["per_subject"]) == ["1", "2", "3", "10"]
        check_block(s, reference_block(f))
        for subj, block in s["per_subject"].items():
            check_block(block, reference_block(f[f["subject"] == subj]))
        json.dumps(s, allow_nan=False)


def test_per_subject_consistent_with_pooled():
    s = m.score_au(random_frame(np.random.default_rng(4)))
    per = s["per_subject"].values()
    for a in AUS:
        n = [p["au"][a]["n"] for p in per]
        assert sum(n) == s["au"][a]["n"]
        acc = sum(p["au"][a]["accuracy"] * k for p, k in zip(per, n) if k) / sum(n)
        assert acc == pytest.approx(s["au"][a]["accuracy"])
        qwks = [p["au"][a]["qwk"] for p in per if p["au"][a]["qwk"] is not None]
        assert s["mean_over_subjects"]["qwk"][a] == pytest.approx(np.mean(qwks))
        assert s["mean_over_subjects"]["n_defined"]["qwk"][a] == len(qwks)
    n = [p["rgs"]["n"] for p in per]
    assert sum(n) == s["rgs"]["n"] == s["n"]
    assert sum(p["rgs"]["mae"] * k for p, k in zip(per, n)) / sum(n) == pytest.approx(s["rgs"]["mae"])
    assert s["mean_over_subjects"]["icc_a1"] == pytest.approx(np.mean([p["rgs"]["icc_a1"] for p in per]))


def fixed_frame():
    f = pd.DataFrame({"image": list("abcdef"), "subject": ["1"] * 3 + ["2"] * 3, "y_true": 0, "y_pred": 0})
    f["y_true_au_orbital"] = pd.array([0, 1, 2, 1, 1, 1], dtype="Int64")  # rat 2: one grade only
    f["y_pred_au_orbital"] = [0, 1, 2, 1, 1, 1]  # ... predicted exactly: kappa 0/0
    f["y_true_au_nose"] = pd.array([0, None, 2, 1, 1, 1], dtype="Int64")  # one blank
    f["y_pred_au_nose"] = [0, 2, 2, 0, 1, 2]  # rat 2: varied predictions of a constant truth: kappa 0
    f["y_true_au_ears"] = pd.array([0, 1, 2, 0, 1, 2], dtype="Int64")
    f["y_pred_au_ears"] = [0, 1, 1, 0, 1, 2]
    f["y_true_au_whiskers"] = pd.array([None] * 6, dtype="Int64")  # entirely blank
    f["y_pred_au_whiskers"] = [0, 1, 2, 1, 1, 1]
    return f


def test_score_au_edge_cases():
    s = m.score_au(fixed_frame())
    rat2 = s["per_subject"]["2"]["au"]
    assert rat2["orbital"] == {"accuracy": 1.0, "macro_f1": 1.0, "qwk": None, "n": 3}
    assert rat2["nose"]["qwk"] == 0.0 and rat2["nose"]["accuracy"] == pytest.approx(1 / 3)
    assert rat2["nose"]["macro_f1"] == pytest.approx(f1_score([1, 1, 1], [0, 1, 2], average="macro", zero_division=0))
    assert s["au"]["orbital"]["qwk"] == 1.0  # pooled over both rats it is defined
    assert s["au"]["nose"]["n"] == 5 and s["per_subject"]["1"]["au"]["nose"]["n"] == 2  # the blank left out
    assert s["au"]["whiskers"] == {"accuracy": None, "macro_f1": None, "qwk": None, "n": 0}
    assert s["mean_over_subjects"]["qwk"]["whiskers"] is None
    assert s["mean_over_subjects"]["n_defined"]["qwk"] == {"orbital": 1, "nose": 2, "ears": 2, "whiskers": 0}
    assert s["mean_over_subjects"]["qwk"]["orbital"] == 1.0  # rat 2's undefined kappa skipped, not counted as 0
    # consensus score of image b: mean of orbital 1 and ears 1 (nose blank, whiskers blank) = 1
    assert s["rgs"]["n"] == 6
    truth = np.array([0, 1, 2, 2 / 3, 1, 4 / 3])
    pred = np.array([0, 5 / 4, 7 / 4, 2 / 4, 1, 6 / 4])
    assert s["rgs"]["mae"] == pytest.approx(np.mean(np.abs(pred - truth)))
    assert s["rgs"]["icc_a1"] == pytest.approx(pg_icc(pred, truth), abs=1e-9)
    json.dumps(s, allow_nan=False)


def test_score_au_rejects_bad_frames():
    f = fixed_frame()
    with pytest.raises(ValueError, match="lacks"):
        m.score_au(f.drop(columns="y_pred_au_ears"))
    g = f.copy()
    g["y_pred_au_ears"] = [0, 1, None, 0, 1, 2]
    with pytest.raises(ValueError):
        m.score_au(g)
    g = f.copy()
    g["y_pred_au_ears"] = [0, 1, 3, 0, 1, 2]
    with pytest.raises(ValueError):
        m.score_au(g)
    g = f.copy()
    g["y_true_au_ears"] = ["0", "1", "x", "0", "1", "2"]  # junk is an error, not a blank
    with pytest.raises(ValueError):
        m.score_au(g)
    g["y_true_au_ears"] = ["0", "1", "-1", "0", "1", "2"]  # strings and BLANK (-1) are read as grades / blank
    assert m.score_au(g)["au"]["ears"]["n"] == 5


# --- human ceiling -------------------------------------------------------------------------------------------

def rater_table(orbital, subject="1", consensus_orbital=None):
    """Raters 1-5 grade every AU; nose/ears/whiskers: everyone gives the consensus."""
    base = [0, 1, 2, 0]
    t = pd.DataFrame({"image": [f"{subject}{i}" for i in range(4)], "subject": subject})
    for a in AUS:
        t[f"au_{a}"] = pd.array(consensus_orbital if a == "orbital" and consensus_orbital else base, dtype="Int64")
        for r in range(1, 6):
            t[f"rater_{r}_au_{a}"] = pd.array(orbital[r - 1] if a == "orbital" else base, dtype="Int64")
    return t


def test_human_ceiling_none_without_raters():
    assert m.human_ceiling(rater_table([[0, 1, 2, 0]] * 5).filter(regex="^(?!rater_)")) is None


def test_human_ceiling_all_agree():
    t = pd.concat([rater_table([[0, 1, 2, 0]] * 5, "1"), rater_table([[0, 1, 2, 0]] * 5, "2")], ignore_index=True)
    h = m.human_ceiling(t)
    assert h["raters"] == h["stage_one"] == ["1", "2", "3", "4", "5"]
    assert list(h["per_subject"]) == ["1", "2"]
    for block in [h, *h["per_subject"].values()]:
        for a in AUS:
            assert block["au"][a] == {"alpha": 1.0, "qwk": 1.0, "accuracy": 1.0, "n": block["rgs"]["n"]}
        assert block["rgs"]["icc_a1"] == pytest.approx(1.0) and block["rgs"]["pearson_r"] == pytest.approx(1.0)
        assert block["rgs"]["mae"] == 0.0
    assert h["mean_over_subjects"]["icc_a1"] == pytest.approx(1.0)
    json.dumps(h, allow_nan=False)


def test_human_ceiling_hand_computed():
    # orbital, images A B C D: raters 1-4 give 0 1 2 0, rater 5 gives 1 1 2 0; consensus 0 1 2 0
    t = rater_table([[0, 1, 2, 0]] * 4 + [[1, 1, 2, 0]])
    t["rater_6_au_orbital"] = pd.array([1, None, None, None], dtype="Int64")  # stage two: only some grades
    t["rater_7_au_nose"] = pd.array([None] * 4, dtype="Int64")
    h = m.human_ceiling(t)
    assert h["raters"] == ["1", "2", "3", "4", "5", "6", "7"] and h["stage_one"] == ["1", "2", "3", "4", "5"]
    orb = h["au"]["orbital"]
    # coincidences o = [[7.4, 1.6, 0], [1.6, 5.4, 0], [0, 0, 5]], n_c = 9 7 5: ordinal alpha = 1 - 64/441
    assert orb["alpha"] == pytest.approx(377 / 441)
    ratings = np.array([t[f"rater_{r}_au_orbital"].astype(float) for r in range(1, 7)] + [[np.nan] * 4])
    assert orb["alpha"] == pytest.approx(krippendorff.alpha(ratings, level_of_measurement="ordinal"))
    assert orb["accuracy"] == pytest.approx((4 + 0.75) / 5)
    assert orb["qwk"] == pytest.approx((4 + 0.8) / 5)  # rater 5's kappa: 1 - 1/5
    assert h["au"]["nose"] == {"alpha": 1.0, "qwk": 1.0, "accuracy": 1.0, "n": 4}
    score5, consensus = np.array([0.25, 1, 2, 0]), np.array([0, 1, 2, 0])
    assert h["rgs"]["mae"] == pytest.approx(0.25 / 4 / 5)
    assert h["rgs"]["icc_a1"] == pytest.approx((4 + pg_icc(score5, consensus)) / 5)
    assert h["rgs"]["pearson_r"] == pytest.approx((4 + pearsonr(score5, consensus)[0]) / 5)
    assert h["per_subject"]["1"]["au"] == h["au"] and h["per_subject"]["1"]["rgs"] == h["rgs"]


def test_human_ceiling_rater_score_uses_only_graded_aus():
    t = rater_table([[0, 1, 2, 0]] * 5)
    t["rater_5_au_whiskers"] = pd.array([None, None, None, 2], dtype="Int64")  # rater 5 grades whiskers of D only
    h = m.human_ceiling(t)
    assert h["rgs"]["mae"] == pytest.approx((2 / 4) / 4 / 5)  # rater 5's score of D is 2/4 vs consensus 0
    assert h["au"]["whiskers"]["accuracy"] == pytest.approx((4 + 0) / 5)  # rater 5 graded only D, wrongly
