"""Group comparisons with the animal as the unit: frames of one rat are not independent observations.

From the per-session rows of `summary.summarise(..., by=("subject", "session"))`:

- with `pre` and `post` sessions (paired): each animal's change post - pre; the headline is the difference of
  the groups' mean changes (other group minus reference), by an exact permutation test over animals (every
  relabelling of the animals into groups of the same sizes, or `n_perm` random ones when there are more than
  `MAX_EXACT`), with Hedges' g and percentile bootstrap intervals over animals (resampled within each group);
  within each group, the mean change by an exact sign-flip permutation test (every sign pattern of the
  changes). A linear mixed model (statsmodels MixedLM, REML) `value ~ treated * post` with a random intercept
  per animal, on the per-session rows, gives the interaction (the difference in change) and each group's change,
  tested on Student's t with "between-within" degrees of freedom (rows - animals - 2 for these within-animal
  terms; in a balanced design this is the two-sample t test of the changes, where statsmodels' Wald z test,
  also reported, is too liberal with a handful of animals).
- otherwise: each animal's mean over its rows, compared the same way; the mixed model `value ~ treated` (t with
  animals - 2 degrees of freedom) needs more than one row for some animal.

With 3 vs 3 animals there are 20 relabellings: the smallest exact p is 1/20 = 0.05 one-sided (the other group
higher) and 2/20 = 0.1 two-sided; with 3 animals the smallest sign-flip p is 1/8 one-sided, 1/4 two-sided.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..plots import fixed_margins

MAX_EXACT = 200_000  # relabellings (or sign patterns) enumerated exactly up to this many
EPS = 1e-12  # ties of a permuted statistic with the observed one count as "at least as extreme"
# What statsmodels' warnings mean here, in plain words.
EXPLAINED = {
    "on the boundary": "the variance between animals is estimated at or near zero: the animals differ no more than "
                       "their rows do, so the random intercept adds nothing and the fixed effects read as an ordinary "
                       "regression's; common with a few animals",
    "Hessian matrix": "the fit's curvature could not be inverted: standard errors and p values are unreliable",
    "failed to converge": "the optimiser stopped before converging: read the estimates with care",
}


def permutation_test(a, b, n_perm: int = 20000, seed: int = 0) -> dict:
    """Difference of means mean(b) - mean(a) and its permutation p-values over relabellings of the pooled values
    into groups of the same sizes: every relabelling when there are at most `MAX_EXACT` (p = share at least as
    extreme, the observed one included), else `n_perm` random ones (p = (1 + hits) / (1 + n_perm)).
    Returns {diff, p_two_sided, p_greater (b higher), p_less, relabellings, exact}."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled, n, k = np.concatenate([a, b]), len(a) + len(b), len(b)
    total = math.comb(n, k)
    obs = b.mean() - a.mean()
    if total <= MAX_EXACT:
        picks = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(total, k)
    else:
        rng = np.random.default_rng(seed)
        picks = np.argsort(rng.random((n_perm, n)), axis=1)[:, :k]
    in_b = np.zeros((len(picks), n), bool)
    np.put_along_axis(in_b, picks, True, axis=1)
    sum_b = (in_b * pooled).sum(axis=1)
    stats = sum_b / k - (pooled.sum() - sum_b) / (n - k)
    counts = np.array([(np.abs(stats) >= abs(obs) - EPS).sum(), (stats >= obs - EPS).sum(), (stats <= obs + EPS).sum()])
    exact = total <= MAX_EXACT
    p = counts / total if exact else (1 + counts) / (1 + n_perm)
    return {"diff": float(obs), "p_two_sided": float(p[0]), "p_greater": float(p[1]), "p_less": float(p[2]),
            "relabellings": int(total if exact else n_perm), "exact": exact}


def sign_flip_test(d, n_perm: int = 20000, seed: int = 0) -> dict:
    """Mean of paired differences `d` and its sign-flip permutation p-values (every sign pattern when there are at
    most `MAX_EXACT`, else `n_perm` random ones). Returns {mean, p_two_sided, p_greater, p_less, patterns, exact}."""
    d = np.asarray(d, float)
    n = len(d)
    obs = d.mean() if n else np.nan
    exact = 2 ** n <= MAX_EXACT
    if exact:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], size=(n_perm, n))
    stats = (signs * d).mean(axis=1) if n else np.array([np.nan])
    counts = np.array([(np.abs(stats) >= abs(obs) - EPS).sum(), (stats >= obs - EPS).sum(), (stats <= obs + EPS).sum()])
    p = counts / len(signs) if exact else (1 + counts) / (1 + n_perm)
    return {"mean": float(obs), "p_two_sided": float(p[0]), "p_greater": float(p[1]), "p_less": float(p[2]),
            "patterns": int(len(signs)), "exact": exact}


def hedges_g(a, b) -> float:
    """Standardised difference (mean(b) - mean(a)) / pooled SD, times the small-sample correction
    1 - 3 / (4 (na + nb) - 9); NaN when the pooled SD is 0 or a group has fewer than two values."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    sd = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if sd == 0:
        return float("nan")
    return float((b.mean() - a.mean()) / sd * (1 - 3 / (4 * (na + nb) - 9)))


def bootstrap_animals(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile intervals of mean(b) - mean(a) and of Hedges' g, animals resampled with replacement within each
    group; resamples where g is undefined (no spread) are left out of g's interval and counted."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, len(a), (n_boot, len(a)))]
    rb = b[rng.integers(0, len(b), (n_boot, len(b)))]
    diff = rb.mean(1) - ra.mean(1)
    na, nb = len(a), len(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(((na - 1) * ra.var(1, ddof=1) + (nb - 1) * rb.var(1, ddof=1)) / (na + nb - 2))
        g = np.where(sd > 1e-12, diff / sd, np.nan) * (1 - 3 / (4 * (na + nb) - 9))
    tail = (1 - level) / 2 * 100
    finite = g[np.isfinite(g)]
    g_ci = tuple(np.percentile(finite, [tail, 100 - tail])) if len(finite) else (np.nan, np.nan)
    return {"diff_ci": tuple(float(v) for v in np.percentile(diff, [tail, 100 - tail])),
            "g_ci": tuple(float(v) for v in g_ci), "g_undefined": int(n_boot - len(finite))}


def mixed_model(rows: pd.DataFrame, formula: str, animal: str = "animal") -> dict:
    """REML fit of statsmodels MixedLM `formula` with a random intercept per `animal`: {params, se, p, ci (95% Wald),
    group_var, n_rows, n_animals, converged, warnings, result}."""
    import statsmodels.formula.api as smf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = smf.mixedlm(formula, rows, groups=rows[animal]).fit(reml=True)
    fe = list(result.fe_params.index)
    ci = result.conf_int().loc[fe]
    return {"params": result.fe_params.to_dict(), "se": result.bse_fe.to_dict(), "p": result.pvalues[fe].to_dict(),
            "ci": {k: (float(ci.loc[k, 0]), float(ci.loc[k, 1])) for k in fe},
            "group_var": float(result.cov_re.iloc[0, 0]), "n_rows": int(len(rows)), "n_animals": int(rows[animal].nunique()),
            "converged": bool(result.converged), "warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
            "result": result}


def contrast(fit: dict, weights: dict, df: int | None = None) -> dict:
    """A linear combination of the mixed model's fixed effects: {estimate, se, ci, p, p_z, df}. `p_z` is the Wald
    test on the normal distribution (what statsmodels reports); `p` and the 95% `ci` use Student's t with `df`
    degrees of freedom when given (the normal otherwise)."""
    from scipy.stats import norm, t

    result = fit["result"]
    names = list(result.fe_params.index)
    c = np.array([weights.get(k, 0.0) for k in names])
    cov = result.cov_params().loc[names, names].to_numpy()
    est, se = float(c @ result.fe_params.to_numpy()), float(np.sqrt(c @ cov @ c))
    z = est / se if se > 0 else np.nan
    dist = t(df) if df else norm
    q = float(dist.ppf(0.975))
    return {"estimate": est, "se": se, "ci": (est - q * se, est + q * se), "p": float(2 * dist.sf(abs(z))),
            "p_z": float(2 * norm.sf(abs(z))), "df": df}


@dataclass
class Comparison:
    """What `compare` found; `text()` to print, `as_dict()` for JSON, `plot(path)` for a PNG."""

    value: str
    reference: str  # the group compared against (e.g. control)
    other: str  # the group compared (e.g. treated)
    paired: bool  # pre/post sessions: the animals' changes are compared
    per_animal: pd.DataFrame  # animal, group, and pre/post/change (paired) or value
    headline: dict  # diff, diff_ci, g, g_ci, permutation test
    within: dict = field(default_factory=dict)  # paired: group -> mean change, its CI, sign-flip test
    lmm: dict = field(default_factory=dict)  # terms of interest -> estimate, se, p, ci; or {"skipped": reason}
    notes: list = field(default_factory=list)
    sessions: tuple = ("pre", "post")
    level: float = 0.95  # of the bootstrap intervals

    def text(self) -> str:
        g = self.per_animal.groupby("group")["animal"].apply(list)
        h, perm = self.headline, self.headline["permutation"]
        what = f"({self.sessions[1]} - {self.sessions[0]})" if self.paired else "per-animal mean"
        lines = [f"{self.value} by group; unit: the animal ({', '.join(f'{k}: {len(v)}' for k, v in g.items())})",
                 f"{self.other} - {self.reference} difference in {what}: {h['diff']:+.4f} "
                 f"({self.level:.0%} bootstrap CI over animals {_ci(h['diff_ci'])}); Hedges' g {_num(h['g'])} (CI {_ci(h['g_ci'])})",
                 f"  {'exact' if perm['exact'] else 'random'} permutation test over animals ({perm['relabellings']} "
                 f"relabellings): p = {_p(perm['p_two_sided'])} two-sided, {_p(perm['p_greater'])} one-sided ({self.other} higher)"]
        for grp, w in self.within.items():
            t = w["sign_flip"]
            lines.append(f"within {grp}: mean change {w['mean_change']:+.4f} (CI {_ci(w['ci'])}); sign-flip test "
                         f"({t['patterns']} patterns) p = {_p(t['p_two_sided'])} two-sided, {_p(t['p_greater'])} one-sided (up)")
        if "skipped" in self.lmm:
            lines.append(f"mixed model: not fitted ({self.lmm['skipped']})")
        elif self.lmm:
            lines.append(f"mixed model {self.lmm['formula']} (REML, random intercept per animal, {self.lmm['n_rows']} rows, "
                         f"{self.lmm['n_animals']} animals{'' if self.lmm['converged'] else ', NOT converged'}):")
            for name, t in self.lmm["terms"].items():
                lines.append(f"  {name}: {t['estimate']:+.4f} (SE {t['se']:.4f}, 95% CI {_ci(t['ci'])}), p = {_p(t['p'])} "
                             f"(t, {t['df']} df; Wald z p = {_p(t['p_z'])})")
            lines += [f"  statsmodels: {w}" + next((f" ({why})" for key, why in EXPLAINED.items() if key in w), "")
                      for w in self.lmm["warnings"]]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return _plain({"value": self.value, "reference": self.reference, "other": self.other, "paired": self.paired,
                       "sessions": list(self.sessions), "per_animal": self.per_animal.to_dict("records"),
                       "headline": self.headline, "within": self.within, "lmm": self.lmm, "notes": self.notes})

    def plot(self, path) -> Path:
        """Per group: each animal's value (paired: a line from its pre to its post), and the group mean."""
        from matplotlib.figure import Figure

        groups = [self.reference, self.other]
        fig = Figure(figsize=(3.0 * len(groups) if self.paired else 4.0, 3.4))
        axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0] if self.paired else [fig.subplots()]
        pa = self.per_animal
        if self.paired:
            pre, post = self.sessions
            for ax, grp in zip(axes, groups):
                sub = pa[pa["group"] == grp]
                for _, r in sub.iterrows():
                    ax.plot([0, 1], [r[pre], r[post]], "o-", color="0.55", lw=1)
                    ax.annotate(str(r["animal"]), (1, r[post]), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
                ax.plot([0, 1], [sub[pre].mean(), sub[post].mean()], "s-", color="C3" if grp == self.other else "C0", lw=2.5,
                        label="group mean")
                ax.set_xticks([0, 1], [pre, post])
                ax.set_xlim(-0.3, 1.45)
                ax.set_title(f"{grp} (n={len(sub)})", fontsize=9)
            axes[0].set_ylabel(self.value)
            axes[0].legend(fontsize=7, loc="best")
        else:
            ax = axes[0]
            for x, grp in enumerate(groups):
                v = pa.loc[pa["group"] == grp, "value"].to_numpy(float)
                ax.plot(np.full(len(v), x) + np.linspace(-0.08, 0.08, len(v)), v, "o", color="0.45")
                ax.plot([x - 0.2, x + 0.2], [v.mean()] * 2, color="C3", lw=2.5)
            ax.set_xticks(range(len(groups)), groups)
            ax.set_ylabel(self.value)
        perm = self.headline["permutation"]
        fig.suptitle(f"{self.other} - {self.reference}: {self.headline['diff']:+.3f}, {'exact ' if perm['exact'] else ''}"
                     f"permutation p = {_p(perm['p_two_sided'])} (one-sided {_p(perm['p_greater'])})", fontsize=8)
        fixed_margins(fig, left=0.75, right=0.1, top=0.55, bottom=0.35, wspace=0.08)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        tmp.replace(path)
        return path


def compare(summary: pd.DataFrame, group: str = "group", value: str = "mean_pain_prob", session_col: str = "session",
            subject_col: str = "subject", groups=None, pre: str = "pre", post: str = "post", n_perm: int = 20000,
            n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Comparison:
    """Compare two groups of animals on `value` of the per-session `summary` rows (see the module docstring).
    groups: (reference, other), default the two values of `group` sorted (control before treated). Paired when
    `session_col` holds both `pre` and `post`: the headline is the other group's mean change minus the reference's."""
    for col in (group, value, subject_col):
        if col not in summary.columns:
            raise InputError(f"compare: no column {col!r} in the summary ({', '.join(summary.columns)})")
    table = summary.rename(columns={subject_col: "animal", group: "group", value: "value"})
    table = table.assign(animal=table["animal"].astype(str), group=table["group"].astype(str),
                         value=pd.to_numeric(table["value"], errors="coerce"))
    names = tuple(groups) if groups is not None else tuple(sorted(table["group"].unique()))
    if len(names) != 2 or set(names) - set(table["group"]):
        raise InputError(f"compare: want two groups in {group!r}, found {', '.join(sorted(table['group'].unique()))}")
    table = table[table["group"].isin(names)]
    mixed = table.groupby("animal")["group"].nunique()
    if (mixed > 1).any():
        raise InputError(f"compare: animal {mixed[mixed > 1].index[0]} is in both groups")
    notes = []
    if table["value"].isna().any():
        notes.append(f"{int(table['value'].isna().sum())} row(s) without a {value} left out")
        table = table[table["value"].notna()]
    ref, other = names
    paired = session_col in table.columns and {pre, post} <= set(table[session_col].astype(str))
    if paired:
        table = table.assign(session=table[session_col].astype(str))
        table = table[table["session"].isin([pre, post])]
        dup = table.groupby(["animal", "session"]).size()
        if (dup > 1).any():
            a, s = dup[dup > 1].index[0]
            raise InputError(f"compare: {dup.max()} rows for animal {a}, session {s}; summarise by subject and session")
        wide = table.pivot(index="animal", columns="session", values="value")
        incomplete = wide.index[wide.isna().any(axis=1)].tolist()
        if incomplete:
            notes.append(f"left out of the pre/post comparison (a session missing): {', '.join(incomplete)}")
        wide = wide.dropna()
        per = pd.DataFrame({"animal": wide.index, "group": table.groupby("animal")["group"].first()[wide.index].to_numpy(),
                            pre: wide[pre].to_numpy(), post: wide[post].to_numpy()})
        per["change"] = per[post] - per[pre]
        measure = "change"
        rows = table[table["animal"].isin(per["animal"])]
    else:
        per = table.groupby("animal", as_index=False).agg(group=("group", "first"), value=("value", "mean"))
        measure = "value"
        rows = table
    per = per.assign(order=per["group"].map({ref: 0, other: 1})).sort_values(["order", "animal"])
    per = per.drop(columns="order").reset_index(drop=True)
    a = per.loc[per["group"] == ref, measure].to_numpy(float)
    b = per.loc[per["group"] == other, measure].to_numpy(float)
    if len(a) < 1 or len(b) < 1:
        raise InputError(f"compare: each group needs at least one animal with {'both sessions' if paired else 'a value'}")
    boot = bootstrap_animals(a, b, n_boot, seed, level)
    headline = {"measure": measure, "diff": float(b.mean() - a.mean()), "diff_ci": boot["diff_ci"], "g": hedges_g(a, b),
                "g_ci": boot["g_ci"], "g_undefined_resamples": boot["g_undefined"],
                "permutation": permutation_test(a, b, n_perm, seed)}
    within = {}
    if paired:
        for i, grp in enumerate((ref, other)):
            d = per.loc[per["group"] == grp, "change"].to_numpy(float)
            rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
            ci = np.percentile(d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1), [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
            within[grp] = {"n": int(len(d)), "mean_change": float(d.mean()), "ci": (float(ci[0]), float(ci[1])),
                           "sign_flip": sign_flip_test(d, n_perm, seed)}
    lmm = _lmm(rows, ref, other, post if paired else None)
    return Comparison(value, ref, other, paired, per, headline, within, lmm, notes, (pre, post), level)


def _lmm(rows: pd.DataFrame, ref: str, other: str, post: str | None) -> dict:
    """The mixed model's terms of interest (or why it was not fitted)."""
    data = pd.DataFrame({"value": rows["value"].to_numpy(float), "animal": rows["animal"].to_numpy(),
                         "treated": (rows["group"] == other).to_numpy(int)})
    if post is not None:
        data["post"] = (rows["session"] == post).to_numpy(int)
        formula = "value ~ treated * post"
    else:
        formula = "value ~ treated"
        if data["animal"].duplicated().sum() == 0:
            return {"skipped": "one row per animal: the animal's random effect is not identified"}
    if data["animal"].nunique() < 3:
        return {"skipped": "fewer than three animals"}
    try:
        fit = mixed_model(data, formula)
    except (np.linalg.LinAlgError, ValueError) as e:
        return {"skipped": f"the fit failed ({type(e).__name__}: {e})"}
    animals, n = data["animal"].nunique(), len(data)
    if post is not None:  # "between-within" degrees of freedom: rows less one per animal less post and treated:post
        df = n - animals - 2
        terms = {f"difference in change ({other} x post)": contrast(fit, {"treated:post": 1}, df),
                 f"{ref}'s change (post)": contrast(fit, {"post": 1}, df),
                 f"{other}'s change (post + {other} x post)": contrast(fit, {"post": 1, "treated:post": 1}, df)}
    else:  # a between-animal term: animals less the intercept and treated
        terms = {f"{other} - {ref}": contrast(fit, {"treated": 1}, animals - 2)}
    return {"formula": formula, "terms": terms, "group_var": fit["group_var"], "n_rows": fit["n_rows"],
            "n_animals": fit["n_animals"], "converged": fit["converged"], "warnings": fit["warnings"],
            "params": fit["params"], "p": fit["p"]}


def _ci(ci) -> str:
    return f"{_num(ci[0])} to {_num(ci[1])}"


def _num(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3f}"


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _plain(x):
    """Numpy scalars, tuples and frames into JSON-able Python values."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else float(x)
    return x
