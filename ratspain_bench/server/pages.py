"""The service's HTML: a team's status page, the token form, and the Content-Security-Policy every page is sent with.

Every string a team sent is escaped (`html.escape`); pages load nothing external; the policy allows only the
page's own inline `<style>` and `<script>` blocks, by their SHA-256 (no `unsafe-inline`), and images as data: URIs.
"""
from __future__ import annotations

import base64
import hashlib
import re
from html import escape

CSS = ("body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
       "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
       ".status{font-weight:bold}.failed{color:#a00}.scored{color:#070}form input{margin:.2rem}")
_BLOCK = re.compile(r"<(style|script)>(.*?)</\1>", re.S)


def csp(html: str) -> str:
    """A policy allowing exactly the inline blocks of `html`."""
    hashes = {"style": [], "script": []}
    for kind, body in _BLOCK.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    script = " ".join(hashes["script"]) or "'none'"
    style = " ".join(hashes["style"]) or "'none'"
    return (f"default-src 'none'; script-src {script}; style-src {style}; img-src data:; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}<p><a href=\"/\">Leaderboard</a> · <a href=\"/login\">Sign in</a></p>"
            "</body></html>")


def login(message: str = "") -> str:
    note = f"<p class=\"failed\">{escape(message)}</p>" if message else ""
    return page("Sign in", "<h1>Sign in</h1>" + note +
                "<form method=\"post\" action=\"/login\"><label>Team token <input type=\"password\" name=\"token\" "
                "autocomplete=\"off\" size=\"60\"></label> <input type=\"submit\" value=\"Sign in\"></form>"
                "<p>The token is kept in a cookie this site alone can read (HttpOnly, SameSite=Strict).</p>")


META_FIELDS = ("name", "authors", "contact", "paper", "licence", "license", "description")


def status(view: dict, metadata: dict) -> str:
    """A team's page for one submission: what the API gives it, nothing more."""
    cls = escape(view["status"])
    rows = [("Submission", f"#{view['id']}"), ("Team", escape(view["team"])), ("Status", f"<span class=\"status {cls}\">{cls}</span>")]
    if view.get("queue_position"):
        rows.append(("Place in the queue", str(view["queue_position"])))
    if view.get("reason"):
        rows.append(("Reason", escape(view["reason"])))
    if view.get("released") is not None:
        rows.append(("Your released score (pooled F1)", f"{view['released']:g}"))
    if view.get("f1") is not None:  # a board without the Ladder
        rows.append(("Pooled F1, accuracy", f"{view['f1']:.4f}, {100 * view['accuracy']:.2f}%"))
    for key in META_FIELDS:
        value = metadata.get(key)
        if value not in (None, "", []):
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append((escape(key), escape(text[:500])))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return page(f"Submission {view['id']}", f"<h1>Submission #{view['id']}</h1><table>{table}</table>"
                "<p>Reload the page for news. Failures show one of the harness's fixed reasons only.</p>")
