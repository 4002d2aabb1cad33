"""`submit upload`: pack a submission folder, send it to a hosted board, and (with `wait`) follow it to its end.

Standard library only (urllib), so a participant needs nothing beyond this package.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from ..errors import InputError
from .archive import pack

ENDED = ("scored", "failed")


class Refused(InputError):
    """The server refused the upload (4xx): its one-line reason."""


def _form(archive: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with the field `archive` (the contract's upload form)."""
    import secrets

    boundary = "ratspain-" + secrets.token_hex(16)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"submission.tar.gz\"\r\n"
            "Content-Type: application/gzip\r\n\r\n").encode() + archive + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _call(method: str, url: str, token: str, body: bytes | None = None, timeout: float = 120) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        body, headers["Content-Type"] = _form(body)
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", "")
        except ValueError:
            detail = e.reason
        raise Refused(f"{url}: {e.code}: {detail}") from None
    except urllib.error.URLError as e:
        raise InputError(f"{url}: cannot reach the server ({e.reason})") from None


def upload(folder, server: str, token: str | None) -> dict:
    """Upload `folder`; the server's reply (id, status, queue_position, quota)."""
    if not token:
        raise InputError("no token: pass --token or set $RATSPAIN_TOKEN (the host gives each team one)")
    return _call("POST", server.rstrip("/") + "/api/submissions", token, pack(folder))


def select(server: str, token: str | None, sid: int) -> dict:
    """Pick submission `sid` for the final run."""
    if not token:
        raise InputError("no token: pass --token or set $RATSPAIN_TOKEN (the host gives each team one)")
    return _call("POST", f"{server.rstrip('/')}/api/submissions/{sid}/select", token, None)


def status(server: str, token: str, sid: int) -> dict:
    return _call("GET", f"{server.rstrip('/')}/api/submissions/{sid}", token)


def wait(server: str, token: str, sid: int, every: float = 2.0, show=None) -> dict:
    """Poll until the submission is scored or failed; `show(view)` on each change."""
    last = None
    while True:
        view = status(server, token, sid)
        key = (view["status"], view.get("queue_position"))
        if key != last and show is not None:
            show(view)
        last = key
        if view["status"] in ENDED:
            return view
        time.sleep(every)
