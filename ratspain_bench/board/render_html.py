"""`index.html`: one self-contained page (inline CSS and JS, figures as base64 PNG; no network, works from file://)."""
from __future__ import annotations

import base64
from html import escape

from . import cells, figures, paper, render_au
from .render_md import definitions, exploratory_intro, unranked_intro
from .table import Leaderboard, Row

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --head:#f3f5f9; --accent:#2f5fb3; --base:#fbf7ea; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); }
header { padding: 18px 24px 8px; border-bottom: 1px solid var(--line); }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 26px 0 8px; } h3 { font-size: 15px; margin: 8px 0; }
main { padding: 0 24px 40px; }
.meta { color: var(--muted); margin: 0; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.row > div { min-width: 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: var(--head); font-weight: 600; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #e6ebf5; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 10px; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 10px; }
tr.baseline td { background: var(--base); font-style: italic; }
tr.top td { font-weight: 600; }
tr.unranked td { color: #777; }
.small { font-size: 12px; color: var(--muted); }
code { background: #f1f3f7; padding: 1px 4px; border-radius: 3px; }
a { color: var(--accent); }
img { max-width: 100%; height: auto; border: 1px solid var(--line); }
ul.defs li { margin: 3px 0; }
.warn { background: #fff1e6; border: 1px solid #f0b27a; padding: 6px 10px; }
"""

JS = """
(function () {
  function key(td, numeric) {
    var v = td.getAttribute("data-sort");
    if (v === null) { v = td.textContent.trim(); }
    if (numeric) { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v === "" ? null : v.toLowerCase();
  }
  function sortBy(table, th, col) {
    var numeric = th.getAttribute("data-type") === "num";
    var current = th.getAttribute("aria-sort");
    var dir = current ? (current === "ascending" ? "descending" : "ascending") : (th.getAttribute("data-first") || "ascending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var ka = key(a.cells[col], numeric), kb = key(b.cells[col], numeric);
      if (ka === null && kb === null) { return 0; }
      if (ka === null) { return 1; }
      if (kb === null) { return -1; }
      var c = ka < kb ? -1 : (ka > kb ? 1 : 0);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
})();
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _th(text: str, numeric: bool = True, first: str = "descending", title: str = "") -> str:
    attrs = ' data-type="num"' if numeric else ' class="text" data-type="text"'
    if numeric:
        attrs += f' data-first="{first}"'
    if title:
        attrs += f' data-help="{escape(title)}"'
    return f"<th{attrs}>{escape(text)}</th>"


def _td(text: str, sort=None, cls: str = "", raw: bool = False) -> str:
    attrs = f' class="{cls}"' if cls else ""
    if sort is not None:
        attrs += f' data-sort="{sort:.10g}"' if isinstance(sort, float) else f' data-sort="{escape(str(sort))}"'
    return f"<td{attrs}>{text if raw else escape(text)}</td>"


def _runs_html(row: Row) -> str:
    if not row.run_ids:
        return cells.DASH
    links = []
    for seed, rid, url in zip(row.seeds, row.run_ids, row.run_urls):
        label = f"{rid[:8]}" + (f" (seed {seed})" if len(row.seeds) > 1 else "")
        links.append(f'<a href="{escape(url)}" title="MLflow run {escape(rid)}">{escape(label)}</a>')
    return " ".join(links)


def _row_class(row: Row) -> str:
    return {"baseline": "baseline", "unranked": "unranked"}.get(row.kind, "top" if row.rank == 1 else "")


def _row_title(row: Row) -> str:
    """A row not ranked says why when pointed at (and in the list under the table)."""
    return f' title="not ranked: {escape(row.note)}"' if row.kind == "unranked" else ""


def _sort_value(x):
    """A cell's sort key: "" (sorted last) where the value is undefined."""
    return "" if x is None else x


def results_table(lb: Leaderboard, rows=None, table_id: str = "results-table") -> str:
    """The results as a sortable table. Method stays the second column (tests/browser reads it there), so Tier
    comes after it."""
    head = ([_th("Rank", first="ascending"), _th("Method", numeric=False), _th("Tier", first="ascending")]
            + [_th(f"Rat#{s}") for s in lb.rat_columns]
            + [_th("LORO (pooled)"), _th("Mean over rats"), _th("Pooled F1 95% CI"), _th("Bal. acc."), _th("MCC"),
               _th("vs top: McNemar p", first="ascending"), _th("Seeds"), _th("Train (s)", first="ascending"),
               _th("Hardware", numeric=False), _th("Source", numeric=False), _th("Code", numeric=False),
               _th("MLflow run", numeric=False)])
    body = []
    for r in (lb.main_rows if rows is None else rows):
        cls = _row_class(r)
        p = r.mcnemar["p_value"] if r.mcnemar else None
        tds = ([_td(cells.rank_cell(r), _sort_value(r.rank)), _td(r.label, cls="text"), _td(cells.tier_cell(r), _sort_value(r.tier))]
               + [_td(cells.rat_cell(r, s), _sort_value(r.per_subject.get(s, {}).get("f1"))) for s in lb.rat_columns]
               + [_td(cells.pooled_cell(r), r.pooled["f1"]), _td(cells.mean_cell(r), _sort_value(r.mean_over_subjects["f1"])),
                  _td(cells.ci_cell(r), r.ci["pooled_f1"][0] if "pooled_f1" in r.ci else ""),
                  _td(cells.metric_cell(r, "balanced_accuracy"), r.pooled["balanced_accuracy"]),
                  _td(cells.metric_cell(r, "mcc"), r.pooled["mcc"]),
                  _td(cells.vs_top_cell(r), "" if p is None else p),
                  _td(cells.seeds_cell(r), len(r.seeds) if r.seeds else ""),
                  _td(cells.train_cell(r), "" if r.train_seconds is None else r.train_seconds),
                  _td(r.hardware or cells.DASH, cls="text"), _td(r.source or r.note, cls="text small"),
                  _td(cells.code_cell(r), cls="text small"), _td(_runs_html(r), cls="text", raw=True)])
        body.append(f'<tr class="{cls}"{_row_title(r)}>' + "".join(tds) + "</tr>")
    return (f'<table id="{table_id}" class="sortable"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table>")


def au_results_table(lb: Leaderboard, rows=None, table_id: str = "au-results-table") -> str:
    """The au board's results as a sortable table (`render_au`'s columns, MLflow links last); the human-ceiling
    row follows the main rows (class `reference`)."""
    from ..tasks import AUS
    head = ([_th("Rank", first="ascending"), _th("Method", numeric=False), _th("Tier", first="ascending")]
            + [_th(f"QWK {a}") for a in AUS]
            + [_th("RGS ICC(A,1)"), _th("ICC 95% CI"), _th("RGS MAE", first="ascending"), _th("Derived F1/Acc (pooled)"),
               _th("vs top: McNemar p", first="ascending"), _th("Seeds"), _th("Train (s)", first="ascending"),
               _th("Source", numeric=False), _th("Code", numeric=False), _th("MLflow run", numeric=False)])
    body = []
    for r in (lb.main_rows if rows is None else rows):
        t = render_au.row_cells(r)
        p = r.mcnemar["p_value"] if r.mcnemar else None
        sorts = ([_sort_value(r.rank), _sort_value(r.tier), None] + [_sort_value(r.au["qwk"][a]) for a in AUS]
                 + [_sort_value(r.au["rgs"]["icc_a1"]), _sort_value(r.au["icc_ci"][0]), _sort_value(r.au["rgs"]["mae"]),
                    r.pooled["f1"], "" if p is None else p, len(r.seeds) if r.seeds else "",
                    "" if r.train_seconds is None else r.train_seconds, None, None])
        order = [0, 2, 1] + list(range(3, len(t)))  # Method second, as on the binary table (`sorts` in `t` order)
        tds = [_td(t[i], sorts[i], cls="text" if i in (2, len(t) - 2, len(t) - 1) else "") for i in order]
        body.append(f'<tr class="{_row_class(r)}"{_row_title(r)}>' + "".join(tds) + _td(_runs_html(r), cls="text", raw=True) + "</tr>")
    if rows is None and lb.ceiling:
        t, c = render_au.ceiling_cells(lb), lb.ceiling
        sorts = ["", "", None] + [_sort_value(c["au"][a]["qwk"]) for a in AUS] + [_sort_value(c["rgs"]["icc_a1"]), "",
                                                                               _sort_value(c["rgs"]["mae"])] + [""] * 6
        order = [0, 2, 1] + list(range(3, len(t)))
        body.append('<tr class="baseline reference">' + "".join(_td(t[i], sorts[i], cls="text" if i == 2 else "") for i in order)
                    + _td(cells.DASH, cls="text") + "</tr>")
    return (f'<table id="{table_id}" class="sortable"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table>")


def imbalance_table(lb: Leaderboard) -> str:
    head = [_th("Held-out rat", first="ascending"), _th("Train no pain"), _th("Train pain"), _th("Test no pain"),
            _th("Test pain"), _th("Test pain %"), _th("Majority (train)", numeric=False), _th("Majority baseline F1/Acc")]
    body = []
    for d in lb.imbalance:
        subj = d["subject"]
        tds = [_td(f"Rat#{subj}", float(subj) if subj.lstrip("-").isdigit() else subj),
               _td(str(d["train_no_pain"]), d["train_no_pain"]), _td(str(d["train_pain"]), d["train_pain"]),
               _td(str(d["test_no_pain"]), d["test_no_pain"]), _td(str(d["test_pain"]), d["test_pain"]),
               _td(f"{100 * d['test_pain_share']:.1f}", d["test_pain_share"]), _td(d["majority_class"], cls="text"),
               _td(cells.f1_acc_cell(d["majority_f1"], d["majority_accuracy"]), _sort_value(d["majority_f1"]))]
        body.append("<tr>" + "".join(tds) + "</tr>")
    return ('<table id="imbalance-table" class="sortable"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table>")


def _reference_table(lb: Leaderboard) -> str:
    head = [_th("Method", numeric=False)] + [_th(f"Rat#{s}") for s in lb.subjects] + [_th("LORO (pooled)"), _th("Mean over rats")]
    body = []
    for ref in lb.reference:
        texts = cells.reference_cells(ref, lb.subjects)
        sorts = ([""] + [ref["per_subject"][s]["f1"] if s in ref["per_subject"] else "" for s in lb.subjects]
                 + [ref["pooled"]["f1"], ref["mean_over_subjects"]["f1"]])
        body.append("<tr>" + _td(texts[0], cls="text") + "".join(_td(t, s) for t, s in zip(texts[1:], sorts[1:])) + "</tr>")
    return ('<table id="reference-table" class="sortable"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table>")


def _incomplete_table(lb: Leaderboard) -> str:
    rows = []
    for r in lb.incomplete:
        links = " ".join(f'<a href="{escape(u)}" title="MLflow run {escape(i)}">{escape(i[:8])}</a>' for i, u in zip(r.run_ids, r.run_urls))
        rows.append("<tr>" + _td(r.label, cls="text") + _td(",".join(r.seeds), cls="text") + _td(r.folds, cls="text")
                    + _td("; ".join(r.reasons), cls="text") + _td(links, cls="text", raw=True) + "</tr>")
    return ('<table id="incomplete-table"><thead><tr><th class="text">Method</th><th class="text">Seeds</th>'
            '<th class="text">Folds complete</th><th class="text">Why</th><th class="text">MLflow run</th></tr></thead><tbody>'
            + "\n".join(rows) + "</tbody></table>")


def _md_inline(text: str) -> str:
    """The few Markdown marks used in the definitions (**bold**, `code`) as HTML."""
    out, parts = [], escape(text).split("**")
    for i, p in enumerate(parts):
        out.append(f"<strong>{p}</strong>" if i % 2 else p)
    s = "".join(out)
    parts = s.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(lb: Leaderboard, with_figures: bool = True) -> str:
    au_board = lb.task == "au"
    table = au_results_table if au_board else results_table
    title = escape(lb.dataset) + (escape(render_au.TITLE) if au_board else "")
    meta = f"Leave-one-rat-out (LORO): {len(lb.subjects)} rats, {lb.n_images:,} images"
    if lb.imbalance:
        meta += f", {100 * cells.pain_share(lb):.1f}% pain"
    if lb.fingerprint:
        meta += f"; dataset fingerprint <code>{escape(lb.fingerprint)}</code>"
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', '<link rel="icon" href="data:,">',
        f"<title>Leaderboard: {title}</title>", f"<style>{CSS}</style></head><body>",
        f"<header><h1>Leaderboard: {title}</h1><p class=\"meta\">{meta}. "
        f"Ranked by {render_au.RANKED_BY if au_board else 'pooled F1'}; click a column header to sort."
        + (' <a href="robustness.html">Robustness</a>: pose-shift and leave-one-site-out.' if lb.robustness else "")
        + "</p></header><main>",
    ]
    for w in lb.warnings:
        parts.append(f'<p class="warn">Warning: {escape(w)}</p>')
    if lb.ui_command:
        mlflow = (f"Run links open the MLflow UI at {escape(lb.ui_url)} after <code>{escape(lb.ui_command)}</code> "
                  f"(tracking store <code>{escape(lb.tracking_uri)}</code>).")
    else:
        mlflow = f'Run links open the tracking server <a href="{escape(lb.tracking_uri)}">{escape(lb.tracking_uri)}</a>.'
    parts += ['<section id="results"><h2>Results</h2><div class="row">',
              f'<div class="scroll">{table(lb) if lb.main_rows or (au_board and lb.ceiling) else "<p>No complete run yet.</p>"}'
              f'<p class="small">{mlflow}</p></div>']
    if lb.imbalance:
        parts.append('<div id="imbalance"><h3>Class imbalance per fold</h3>'
                     '<p class="small">From the predictions: all test images over the folds are the dataset; '
                     'a fold trains on every other rat.</p>'
                     f'<div class="scroll">{imbalance_table(lb)}</div>'
                     + (_img(figures.imbalance_bars(lb), "class balance per rat") if with_figures else "") + "</div>")
    parts.append("</div>")
    if lb.unranked:  # right under the table: why the greyed rows are not ranked
        parts.append(f'<div id="not-ranked"><p><strong>Not ranked</strong> (greyed): {_md_inline(unranked_intro(lb))}</p><ul>'
                     + "".join(f"<li>{escape(r.label)}: {escape(r.note)}</li>" for r in lb.unranked) + "</ul></div>")
    defs = render_au.definitions(lb) if au_board else definitions(lb)
    parts.append('<ul class="defs">' + "".join(f"<li>{_md_inline(d)}</li>" for d in defs) + "</ul></section>")
    if lb.exploratory:
        parts += ['<section id="exploratory"><h2>Exploratory configurations (not ranked)</h2>',
                  f"<p>{_md_inline(exploratory_intro(lb))}</p>",
                  f'<div class="scroll">{table(lb, lb.exploratory, "exploratory-table")}</div>',
                  '<ul class="defs">' + "".join(f"<li>{escape(r.label)}: {escape(r.note)}</li>" for r in lb.exploratory)
                  + "</ul></section>"]
    if lb.predictions_only:
        parts += ['<section id="predictions-only"><h2>Predictions only, not reproduced (never ranked)</h2>',
                  "<p>Entries submitted as predictions files: scored against the dataset's labels, their code not run.</p>",
                  f'<div class="scroll">{table(lb, lb.predictions_only, "predictions-only-table")}</div></section>']
    if lb.incomplete:
        parts += ['<section id="incomplete"><h2>Incomplete (not ranked)</h2>',
                  "<p>Missing folds, failed or still running: listed here, never ranked and never averaged.</p>",
                  f'<div class="scroll">{_incomplete_table(lb)}</div></section>']
    if lb.reference:
        parts += ['<section id="reference"><h2>Reference: the paper\'s reported Table 3 (not reproduced, never ranked)</h2>',
                  f"<p>Copied from the paper ({escape(paper.SOURCE)}); F1/accuracy %. They come from the real RatsPain "
                  "images, which a replica dataset does not contain: compare with care.</p>",
                  f'<div class="scroll">{_reference_table(lb)}</div>',
                  f'<p class="small">{escape(paper.NOTE)}</p></section>']
    if with_figures and au_board and any(r.au for r in lb.rows):
        top = next((r for r in lb.ranked if r.au), None) or next(r for r in lb.rows if r.au)
        parts += ['<section id="figures"><h2>Figures</h2>',
                  '<h3>Per-AU confusion matrices (pooled, consensus vs predicted grade)</h3>',
                  _img(figures.au_confusion_matrices(lb), "per-AU confusion matrices"),
                  f'<h3>Bland–Altman plot of the RGS score: {escape(top.label)}</h3>',
                  '<p class="small">x: mean of the predicted score (mean of the predicted AUs) and the consensus score; '
                  'y: predicted − consensus; solid line: bias (mean difference), dashed: bias ± 1.96 SD.</p>',
                  _img(figures.bland_altman(lb), "Bland–Altman plot of the RGS score"), "</section>"]
    elif with_figures and lb.rows and not au_board:
        parts += ['<section id="figures"><h2>Figures</h2>',
                  '<h3>F1 per held-out rat</h3>', _img(figures.f1_heatmap(lb), "per-rat F1 heatmap"),
                  '<h3>Per-rat F1 and accuracy</h3>', _img(figures.per_rat_bars(lb), "per-rat bar charts"),
                  '<h3>Pooled confusion matrices</h3>', _img(figures.confusion_matrices(lb), "confusion matrices"),
                  "</section>"]
    parts += ["</main>", f"<script>{JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


def render_index_html(entries) -> str:
    """The top-level page when there are several datasets: `entries` are (leaderboard, relative folder)."""
    rows = []
    for lb, rel in entries:
        label, score, key = cells.top_cells(lb)
        rows.append("<tr>" + _td(f'<a href="{escape(rel)}/index.html">{escape(lb.name)}</a>', lb.name, cls="text", raw=True)
                    + _td(lb.task, cls="text") + _td(str(len(lb.subjects)), len(lb.subjects)) + _td(f"{lb.n_images:,}", lb.n_images)
                    + _td(str(len(lb.ranked)), len(lb.ranked)) + _td(str(len(lb.incomplete)), len(lb.incomplete))
                    + _td(label, cls="text") + _td(score, key) + "</tr>")
    head = [_th("Board", numeric=False), _th("Task", numeric=False), _th("Rats"), _th("Images"), _th("Ranked"),
            _th("Incomplete"), _th("Top", numeric=False), _th("Top's score (pooled)")]
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', '<link rel="icon" href="data:,">',
        "<title>Leaderboards</title>", f"<style>{CSS}</style></head><body>",
        "<header><h1>Leaderboards</h1><p class=\"meta\">One leaderboard per dataset and task, never mixed.</p></header><main>",
        '<table id="datasets-table" class="sortable"><thead><tr>' + "".join(head) + "</tr></thead><tbody>" + "\n".join(rows)
        + "</tbody></table>", "</main>", f"<script>{JS}</script>", "</body></html>", ""])
