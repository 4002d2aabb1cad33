"""`ratspain-bench server ...`: the host's commands for a hosted leaderboard (teams, workers, submissions)."""
from __future__ import annotations

from .common import command, print_json


def _db_options(p) -> None:
    p.add_argument("--db", default=None, metavar="URL", help="the service's PostgreSQL URL")
    p.add_argument("--runs-dir", default="ratspain-runs", help="or the runs folder of a `serve` running with its private database")


def add_parser(sub) -> None:
    p = command(sub, "server", "a hosted leaderboard's teams, workers and submissions (the host's side)", [
        "ratspain-bench server team add lab-a --contact a@example.org",
        "ratspain-bench server worker --db postgresql://bench@db/bench --data ~/ratspain",
        "ratspain-bench server submissions --all"])
    ss = p.add_subparsers(dest="server_command", required=True, metavar="ACTION")
    team = command(ss, "team", "add, list or revoke teams", ["ratspain-bench server team add lab-a"])
    ts = team.add_subparsers(dest="team_command", required=True, metavar="ACTION")
    add = command(ts, "add", "a new team: prints its token once (only its hash is kept)", ["ratspain-bench server team add lab-a"])
    add.add_argument("name")
    add.add_argument("--contact", default="", metavar="EMAIL")
    _db_options(add)
    add.set_defaults(func=team_add)
    ls = command(ts, "list", "every team", ["ratspain-bench server team list"])
    _db_options(ls)
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(func=team_list)
    rv = command(ts, "revoke", "revoke a team's token (its rows stay)", ["ratspain-bench server team revoke lab-a"])
    rv.add_argument("name")
    _db_options(rv)
    rv.set_defaults(func=team_revoke)

    w = command(ss, "worker", "score queued submissions on this machine until stopped (SIGTERM ends the running one first)", [
        "ratspain-bench server worker --db postgresql://bench@db/bench --data ~/ratspain",
        "ratspain-bench server worker --db URL --data ~/ratspain --devices cuda:0,cuda:1   # one worker per GPU"])
    _db_options(w)
    w.add_argument("--data", required=True, help="the server's dataset (the same files on every machine)")
    w.add_argument("--devices", default="cpu", help="comma-separated devices, one worker each (default cpu)")
    w.add_argument("--sandbox", choices=("auto", "runsc", "bwrap"), default="auto")
    w.add_argument("--heartbeat", type=float, default=10.0, metavar="S", help="seconds between beats (default 10)")
    w.set_defaults(func=run_worker)

    sp = command(ss, "split", "draw the secret public/private split of the images (before the first submission)", [
        "ratspain-bench server split --data ~/ratspain --public 0.5 --runs-dir ratspain-runs"],
        description="Per rat and per label, from a seed drawn by the operating system and kept in the secrets folder "
                    "($RATSPAIN_SECRETS_DIR). While the public phase lasts, every run uses the public images only.")
    sp.add_argument("--data", required=True)
    sp.add_argument("--public", type=float, default=0.5, help="the public fraction (default 0.5)")
    _db_options(sp)
    sp.set_defaults(func=run_split)

    fz = command(ss, "finalize", "close the public phase and run each team's pick once on the private images", [
        "ratspain-bench server finalize --data ~/ratspain --runs-dir ratspain-runs"],
        description="Each team's selected submission (`submit select ID`), else its best released one, runs once: fold j "
                    "trains on every image of the other rats and is scored on rat j's private images. The final board "
                    "(per rat, intervals, tiers, and the public-phase score beside it) is served at /final and /api/final. "
                    "No upload is taken afterwards.")
    fz.add_argument("--data", required=True)
    fz.add_argument("--sandbox", choices=("auto", "runsc", "bwrap"), default="auto")
    fz.add_argument("--device", default="cpu")
    _db_options(fz)
    fz.set_defaults(func=run_finalize)

    s = command(ss, "submissions", "every submission as the host sees it", ["ratspain-bench server submissions --all --format json"])
    _db_options(s)
    s.add_argument("--all", action="store_true", help="with the harness's logs (what teams never see)")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=list_submissions)


def team_add(args) -> int:
    from .. import server

    token = server.add_team(args.name, args.contact, db=args.db, runs_dir=args.runs_dir)
    print(f"team {args.name} added; its token (shown once, give it to the team):\n{token}")
    return 0


def team_list(args) -> int:
    from .. import server

    teams = server.list_teams(db=args.db, runs_dir=args.runs_dir)
    if args.format == "json":
        print_json(teams)
    else:
        for t in teams:
            print(f"{t['name']}\t{t['contact']}\t{t['submissions']} submission(s)\t" + (f"revoked {t['revoked']}" if t["revoked"] else "active"))
    return 0


def team_revoke(args) -> int:
    from .. import server

    server.revoke_team(args.name, db=args.db, runs_dir=args.runs_dir)
    print(f"team {args.name}: token revoked")
    return 0


def run_split(args) -> int:
    from .. import server

    made = server.split(args.data, args.public, db=args.db, runs_dir=args.runs_dir)
    pairs = made["near_duplicates"]
    print(f"{made['n_public']} public and {made['n_private']} private images; the seed is kept in {made['seed_file']}; "
          f"{len(pairs)} near-identical pair(s) across the two halves (data check's detector)")
    for a, b, d in pairs[:20]:
        print(f"  public {a} ~ private {b} (distance {d})")
    return 0


def run_finalize(args) -> int:
    from .. import server

    board = server.finalize(args.data, db=args.db, runs_dir=args.runs_dir, sandbox=args.sandbox, device=args.device)
    n = sum(len(lb["rows"]) for lb in board["leaderboards"])
    print(f"finalized: {len(board['outcomes'])} pick(s), {n} row(s) on the final board (served at /final and /api/final)")
    return 0


def run_worker(args) -> int:
    import signal
    import subprocess
    import sys

    from .. import server

    devices = [d.strip() for d in args.devices.split(",") if d.strip()] or ["cpu"]
    if len(devices) == 1:
        server.worker(args.db, args.data, runs_dir=args.runs_dir, device=devices[0], sandbox=args.sandbox, heartbeat=args.heartbeat)
        return 0
    children = [subprocess.Popen([sys.executable, "-m", "ratspain_bench", "server", "worker", "--data", args.data, "--devices", d,
                                  "--runs-dir", args.runs_dir, "--sandbox", args.sandbox, "--heartbeat", str(args.heartbeat)]
                                 + (["--db", args.db] if args.db else [])) for d in devices]
    try:
        return max(c.wait() for c in children)
    finally:
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)


def list_submissions(args) -> int:
    from .. import server

    rows = server.submissions(db=args.db, runs_dir=args.runs_dir, logs=args.all)
    if args.format == "json":
        print_json(rows)
        return 0
    for r in rows:
        score = f" F1 {r['f1']:.3f}" if r["f1"] is not None else ""
        print(f"#{r['id']}\t{r['team']}\t{r['name']}\t{r['status']}{score}\t{r['reason']}\tattempts {r['attempts']}"
              + ("" if r["charged"] else "\trefunded"))
        if args.all and r.get("log"):
            print("  " + r["log"].rstrip().replace("\n", "\n  "))
    return 0
