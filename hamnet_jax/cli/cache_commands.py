"""`hamnet cache list | prune`: the shared caches (cache_root.py): converted cohorts and
fitted baselines.

    hamnet cache list [--root DIR] [--json]
    hamnet cache prune [--older-than DAYS | --all] [--root DIR]

The root is `--root`, else `$HAMNET_CACHE_DIR`, else `~/.cache/hamnet`.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from hamnet_jax.errors import InputError


def _root(args: argparse.Namespace) -> Path:
    from hamnet_jax.cache_root import cache_root

    return Path(args.root) if args.root else cache_root()


def cmd_cache_list(args: argparse.Namespace) -> None:
    from hamnet_jax.data.cache_admin import list_caches

    root = _root(args)
    rows = list_caches(root)
    if args.json:
        print(json.dumps({"root": str(root), "caches": rows}, indent=2))
        return
    print(f"caches in {root}: {len(rows)}, {sum(r['bytes'] for r in rows) / 1e6:,.1f} MB")
    for r in rows:
        used = datetime.datetime.fromtimestamp(r["last_used"]).strftime("%Y-%m-%d %H:%M")
        what = ("fitted baselines" if r["kind"] == "baselines" else "partial cohort build" if r["state"] == "partial"
                else f"cohort: {r['subjects']:,} subjects from {r['source']}")
        print(f"  {r['key'][:24]}  {r['bytes'] / 1e6:9,.1f} MB  last used {used}  {what}")


def cmd_cache_prune(args: argparse.Namespace) -> None:
    from hamnet_jax.data.cache_admin import prune_caches

    if args.older_than is not None and args.older_than < 0:
        raise InputError(f"--older-than: expected days >= 0, got {args.older_than}")
    if args.older_than is not None and args.all:
        raise InputError("--older-than and --all: give one of them")
    result = prune_caches(_root(args), args.older_than, args.all)
    print(f"removed {len(result['removed'])} cache entries, {result['bytes_freed'] / 1e6:,.1f} MB freed"
          + (f"; {len(result['busy'])} being built, kept" if result["busy"] else ""))


def add_cache_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cache", help="the shared caches (cohorts, fitted baselines): list them, prune them")
    actions = c.add_subparsers(dest="cache_command", required=True)
    ls = actions.add_parser("list", help="every cache: key, size, source, last use")
    ls.add_argument("--root", help="cache root (default $HAMNET_CACHE_DIR or ~/.cache/hamnet)")
    ls.add_argument("--json", action="store_true", help="machine-readable")
    ls.set_defaults(func=cmd_cache_list)
    pr = actions.add_parser("prune", help="remove dead partial builds; with --older-than or --all, caches too")
    pr.add_argument("--root", help="cache root (default $HAMNET_CACHE_DIR or ~/.cache/hamnet)")
    pr.add_argument("--older-than", type=float, metavar="DAYS", help="caches no run has read for DAYS days")
    pr.add_argument("--all", action="store_true", help="every cache not being built")
    pr.set_defaults(func=cmd_cache_prune)
