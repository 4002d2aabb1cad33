"""Check the leaderboard page in a real headless Chromium, over the DevTools protocol (stdlib only).

Chromium is started with `--remote-debugging-pipe`: it reads DevTools commands on fd 3 and writes
replies and events on fd 4, each message a JSON text ended by a NUL byte. The check:
1. loads the page from a file:// URL and records console errors, uncaught exceptions and failed loads;
2. clicks column headers with real mouse events (Input.dispatchMouseEvent at the header's position)
   and reads back the row order: "Method" sorts text ascending, "LORO (pooled)" sorts pooled F1
   descending, a second click ascending (the au page: `--table au-results-table --column "RGS ICC(A,1)"`);
3. optionally saves a PNG screenshot of the top of the page.

    python tests/browser/check_page.py leaderboard/index.html --screenshot leaderboard/screenshot.png

Needs Debian's `chromium` package (`apt-get install -y chromium`).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-pipe"]


class DevTools:
    """A minimal Chrome DevTools Protocol client over the debugging pipe."""

    def __init__(self, chromium: str, user_data_dir: str, timeout: float = 30.0):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child_fds():  # runs in the child before exec: the pipe ends become fds 3 and 4
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.close(a)
            os.close(b)

        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     preexec_fn=child_fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.timeout = timeout
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited: {self.stderr_tail()}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float | None = None) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def pump(self, seconds: float) -> None:
        """Collect events for a short while (late console messages)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        try:
            os.write(self._w, json.dumps({"id": self._id + 1, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stderr.close()


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('text', '')} {d.get('exception', {}).get('description', '')}".strip())
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
    return out


_COLUMN = """(function (name, table) {
  var t = document.getElementById(table);
  var ths = Array.prototype.slice.call(t.tHead.rows[0].cells);
  var col = ths.findIndex(function (h) { return h.textContent.trim() === name; });
  return JSON.stringify({aria: ths[col].getAttribute('aria-sort'),
    values: Array.prototype.map.call(t.tBodies[0].rows, function (r) { return r.cells[col].getAttribute('data-sort'); }),
    labels: Array.prototype.map.call(t.tBodies[0].rows, function (r) { return r.cells[1].textContent.trim(); })});
})(%s, %s)"""

_HEADER_BOX = """(function (name, table) {
  var ths = Array.prototype.slice.call(document.getElementById(table).tHead.rows[0].cells);
  var h = ths.find(function (x) { return x.textContent.trim() === name; });
  h.scrollIntoView({block: 'center', inline: 'center'});
  var r = h.getBoundingClientRect();
  return JSON.stringify({x: r.left + r.width / 2, y: r.top + r.height / 2});
})(%s, %s)"""


def _eval(dt: DevTools, session: str, expr: str):
    res = dt.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
    if "exceptionDetails" in res:
        raise RuntimeError(f"page script failed: {res['exceptionDetails'].get('text')}")
    return json.loads(res["result"]["value"])


def _click_header(dt: DevTools, session: str, name: str, table: str) -> dict:
    box = _eval(dt, session, _HEADER_BOX % (json.dumps(name), json.dumps(table)))
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        dt.send("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"], "button": "left",
                                             "clickCount": 0 if kind == "mouseMoved" else 1}, session)
    return _eval(dt, session, _COLUMN % (json.dumps(name), json.dumps(table)))


@contextlib.contextmanager
def _page(html, chromium: str | None, width: int, height: int, headers: dict | None = None):
    """A headless Chromium tab with `html` (a file, or an http:// URL fetched with `headers`) loaded: (devtools,
    session); its events are recorded from the navigation."""
    chromium = chromium or shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="ratspain-chromium-") as profile:
        dt = DevTools(chromium, profile)
        try:
            target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                dt.send(f"{domain}.enable", {}, session)
            if headers:
                dt.send("Network.setExtraHTTPHeaders", {"headers": headers}, session)
            dt.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False}, session)
            dt.events.clear()
            url = html if str(html).startswith(("http://", "https://")) else Path(html).resolve().as_uri()
            dt.send("Page.navigate", {"url": url}, session)
            dt.wait_event("Page.loadEventFired")
            dt.pump(0.5)
            yield dt, session
        finally:
            dt.close()


def page_facts(html, expression: str, chromium: str | None = None, width: int = 1200, height: int = 900,
               headers: dict | None = None) -> dict:
    """Load `html` (a file or an http:// URL, fetched with `headers`) and evaluate `expression` (JavaScript returning a
    JSON text): {"value": its result, "console_errors": [...]}."""
    with _page(html, chromium, width, height, headers) as (dt, session):
        value = _eval(dt, session, expression)
        dt.pump(0.3)
        return {"value": value, "console_errors": _errors(dt.events)}


def check_page(html: Path, screenshot: Path | None = None, chromium: str | None = None, width: int = 1400,
               height: int = 1000, table: str = "results-table", column: str = "LORO (pooled)") -> dict:
    """Load `html` in headless Chromium, click headers of `table` ("Method", then `column`, a numeric column sorted
    descending first), return what happened (see the module doc). The au task's page: `au-results-table`, "RGS ICC(A,1)"."""
    url = Path(html).resolve().as_uri()
    with _page(html, chromium, width, height) as (dt, session):
        initial = _eval(dt, session, _COLUMN % (json.dumps(column), json.dumps(table)))
        shot = None
        if screenshot is not None:
            shot = base64.b64decode(dt.send("Page.captureScreenshot", {"format": "png"}, session)["data"])
        by_method = _click_header(dt, session, "Method", table)
        desc = _click_header(dt, session, column, table)
        asc = _click_header(dt, session, column, table)
        dt.pump(0.3)
        errors = _errors(dt.events)
    if shot is not None:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        Path(screenshot).write_bytes(shot)
    nums = lambda col: [float(v) for v in col["values"]]  # noqa: E731
    labels = by_method["labels"]
    return {
        "url": url,
        "console_errors": errors,
        "rows": len(initial["values"]),
        "sorted_by_method": by_method["aria"] == "ascending" and labels == sorted(labels, key=str.lower),
        "sorted_descending": desc["aria"] == "descending" and nums(desc) == sorted(nums(desc), reverse=True),
        "sorted_ascending": asc["aria"] == "ascending" and nums(asc) == sorted(nums(asc)),
        "order_changed_by_click": by_method["labels"] != initial["labels"],
        "screenshot": str(screenshot) if shot is not None else None,
        "screenshot_bytes": len(shot) if shot is not None else 0,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", help="the page, e.g. leaderboard/index.html")
    ap.add_argument("--screenshot", default=None, help="write a PNG screenshot here")
    ap.add_argument("--chromium", default=None, help="browser binary (default: chromium on PATH)")
    ap.add_argument("--table", default="results-table", help="the table's id (the au task's page: au-results-table)")
    ap.add_argument("--column", default="LORO (pooled)", help="a numeric column to sort (the au task's page: 'RGS ICC(A,1)')")
    args = ap.parse_args(argv)
    result = check_page(Path(args.html), Path(args.screenshot) if args.screenshot else None, args.chromium, table=args.table,
                        column=args.column)
    print(json.dumps(result, indent=1))
    ok = (not result["console_errors"] and result["sorted_by_method"] and result["sorted_descending"]
          and result["sorted_ascending"] and result["order_changed_by_click"])
    print("page check: " + ("OK" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
