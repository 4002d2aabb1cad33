"""The hosted leaderboard's costs: a submission through the service against `run` of the same folder, and status polls
under load while a submission runs.

    python benchmarks/service.py [--per-rat 40] [--repeats 2] [--clients 50] [--seconds 10] [--interval 0.5] [--load-only]

Setup: a hidden replica (6 rats, `--per-rat` images each, 64 px), a private PostgreSQL cluster, `ratspain-bench serve`
with one local worker on 127.0.0.1.
1. Overhead: the worked example (examples/hog-logreg) uploaded with `submit upload --wait` (from the upload to the
   client seeing `scored`), against `rb.run` of the same folder in a fresh process with a fresh runs folder (the
   reference, as `benchmarks/sandbox_overhead.py` times it). Alternating, best of `--repeats`; the scores must be equal.
   Target: service <= 1.05 x run + 2 s.
2. Load: `--clients` threads, each with its own keep-alive connection, poll `GET /api/submissions/{id}` every
   `--interval` seconds (0: as fast as they can) for `--seconds` while a submission runs; p50/p99 latency and
   requests/s. Target: p99 < 100 ms. (`submit upload --wait` polls every 2 s.)
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hog-logreg"
RUN = """
import json, sys, time
import ratspain_bench as rb
start = time.perf_counter()
r = rb.run(["hog-logreg"], sys.argv[1], runs_dir=sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start, "f1": r.results[0].score["pooled"]["f1"]}))
"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ratspain_bench", *args]


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited")
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer")


def poll(url: str, path: str, token: str, until: float, interval: float, out: list, errors: list) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    while time.perf_counter() < until:
        t = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
        except OSError as e:
            errors.append(str(e))
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            continue
        out.append(time.perf_counter() - t)
        if interval:
            time.sleep(max(0.0, interval - (time.perf_counter() - t)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-rat", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between one client's polls (0: no pause)")
    ap.add_argument("--load-only", action="store_true", help="skip the overhead measurement")
    args = ap.parse_args()
    import ratspain_bench as rb
    from ratspain_bench import server

    tmp = Path(tempfile.mkdtemp(prefix="service-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)  # the postgres user reaches its cluster here
    env = {**os.environ, "RATSPAIN_SECRETS_DIR": str(tmp / "secrets"), "RATSPAIN_CACHE_DIR": str(tmp / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update({k: env[k] for k in ("RATSPAIN_SECRETS_DIR", "RATSPAIN_CACHE_DIR")})
    counts = {f"rat{i}": {"no_pain": args.per_rat // 2, "moderate": args.per_rat - args.per_rat // 2} for i in range(1, 7)}
    data = rb.synth(tmp / "held", size=64, counts=counts, hidden=True, jobs=1).parent
    subs = tmp / "submissions"
    shutil.copytree(EXAMPLE, subs / "hog-logreg")
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(cli("serve", "--data", str(data), "--runs-dir", str(tmp / "service"), "--port", str(port), "--workers", "1"),
                             env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "wb"), start_new_session=True)
    try:
        wait_ready(url, serve)
        token = server.add_team("bench", runs_dir=tmp / "service")
        # an untimed run of each first: the gVisor snapshot, the image cache
        subprocess.run(cli("submit", "upload", str(subs / "hog-logreg"), "--server", url, "--token", token, "--wait", "--json"),
                       env=env, check=True, capture_output=True)
        times = {"run": [], "service": []}
        f1 = {}
        for i in range(0 if args.load_only else args.repeats):
            r = subprocess.run([sys.executable, "-c", RUN, str(data), str(tmp / f"runs{i}")], env={**env, "RATSPAIN_SUBMISSIONS_DIR": str(subs)},
                               capture_output=True, text=True, check=True)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            times["run"].append(out["seconds"])
            f1["run"] = out["f1"]
            shutil.copytree(EXAMPLE, subs / f"v{i}", dirs_exist_ok=True)
            (subs / f"v{i}" / "note.txt").write_text(f"repeat {i}\n")  # a new code hash: nothing is resumed
            t = time.perf_counter()
            r = subprocess.run(cli("submit", "upload", str(subs / f"v{i}"), "--server", url, "--token", token, "--wait", "--json"),
                               env=env, capture_output=True, text=True, check=True)
            times["service"].append(time.perf_counter() - t)
            f1["service"] = json.loads(r.stdout.strip().splitlines()[-1])["f1"]
            shutil.rmtree(subs / f"v{i}")
        if not args.load_only:
            assert abs(f1["run"] - f1["service"]) < 1e-9, f1
            best = {k: min(v) for k, v in times.items()}
            print(f"overhead: run {best['run']:.2f} s, service {best['service']:.2f} s (upload to scored): "
                  f"{best['service'] / best['run']:.3f} x run, +{best['service'] - best['run']:.2f} s; "
                  f"target {1.05 * best['run'] + 2:.2f} s; pooled F1 equal ({f1['run']:.4f}); all: {json.dumps(times)}")

        shutil.copytree(EXAMPLE, subs / "load", dirs_exist_ok=True)
        (subs / "load" / "note.txt").write_text("load\n")
        reply = json.loads(subprocess.run(cli("submit", "upload", str(subs / "load"), "--server", url, "--token", token, "--json"),
                                          env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        lat, errors = [], []
        until = time.perf_counter() + args.seconds
        threads = [threading.Thread(target=poll, args=(url, f"/api/submissions/{reply['id']}", token, until, args.interval, lat, errors))
                   for _ in range(args.clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        lat.sort()
        status = json.loads(urllib.request.urlopen(urllib.request.Request(f"{url}/api/submissions/{reply['id']}",
                                                                          headers={"Authorization": f"Bearer {token}"})).read())
        print(f"load: {args.clients} clients polling every {args.interval:g} s for {args.seconds:g} s ({wall:.1f} s wall) while a submission ran "
              f"(its status at the end: {status['status']}): {len(lat)} requests, {len(lat) / wall:.0f} requests/s, "
              f"p50 {1000 * lat[len(lat) // 2]:.1f} ms, p99 {1000 * lat[int(len(lat) * 0.99)]:.1f} ms, {len(errors)} errors")
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
