"""`ratspain-bench serve --data DIR`: host a leaderboard (HTTP service, database, workers); see `ratspain_bench.server`."""
from __future__ import annotations

from .common import command


def add_parser(sub) -> None:
    p = command(sub, "serve", "host a leaderboard: teams upload code, workers score it sandboxed on your data", [
        "ratspain-bench synth held/ --hidden && ratspain-bench serve --data held/",
        "ratspain-bench serve --data ~/ratspain --db postgresql://bench@db/bench --workers 0 --port 8080 --config server.toml"],
        description="Serves the public board (GET /), its JSON (GET /api/leaderboard) and uploads (POST /api/submissions) "
                    "under uvicorn. Without --db it starts a private PostgreSQL cluster in RUNS_DIR/postgres and stops it on "
                    "exit. Add teams with `ratspain-bench server team add NAME --runs-dir RUNS_DIR`; more workers, on any "
                    "machine, with `ratspain-bench server worker --db URL --data DIR`.")
    p.add_argument("--data", required=True, help="the dataset submissions are scored on (yours: its labels must be hidden)")
    p.add_argument("--db", default=None, metavar="URL", help="PostgreSQL URL (default: a private cluster in RUNS_DIR/postgres)")
    p.add_argument("--runs-dir", default="ratspain-runs", help="job folders, MLflow store, uploads (default ./ratspain-runs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="local workers started with the server (default 1; 0: only remote ones)")
    p.add_argument("--config", default=None, metavar="TOML", help="quotas and limits (keys: see `ratspain_bench.server.config`)")
    p.add_argument("--sandbox", choices=("auto", "runsc", "bwrap"), default="auto", help="the local workers' sandbox (default auto)")
    p.add_argument("--allow-public-labels", action="store_true",
                   help="serve a dataset whose labels are public (the built-in replica): to try the service, never to rank")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import server

    server.serve(args.data, db=args.db, runs_dir=args.runs_dir, host=args.host, port=args.port, workers=args.workers,
                 config=args.config, allow_public_labels=args.allow_public_labels, sandbox=args.sandbox)
    return 0
