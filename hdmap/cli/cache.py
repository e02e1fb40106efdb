"""`hdmap cache list|clear`: what the feature cache holds (per entry: size, maps, backbone, input size, last use)
and removing entries no process holds (all, or those unused for `--older-than` days). HDMAP_CACHE_MAX_GB caps its
size: after each write the least recently used entries go."""
from __future__ import annotations


def add_cache(sub) -> None:
    p = sub.add_parser("cache", help="list or clear the feature cache", description=__doc__)
    p.add_argument("action", choices=["list", "clear"])
    p.add_argument("--cache-dir", help="feature cache (default $HDMAP_CACHE or ~/.cache/hdmap/features)")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="clear: only entries unused for this many days")
    p.set_defaults(run=run_cache)


def run_cache(args) -> int:
    from pathlib import Path

    from hdmap.config import ConfigError
    from hdmap.features.cache import default_cache_dir
    from hdmap.features.cache_admin import clear, describe

    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.older_than is not None and not args.older_than >= 0:
        raise ConfigError(f"--older-than expects a number of days >= 0, got {args.older_than}")
    if args.action == "list":
        print("\n".join(describe(root)))
        return 0
    removed, kept = clear(root, args.older_than)
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {root}; kept {kept}"
          + (" (in use by another process, or used more recently)" if kept else ""))
    return 0
