"""Soak: the fault suite's crash scenario at full size.

    python bench/soak.py --objects 2000 [--kills 3] [--seed 7] [--keep DIR]

N objects land in a local store and are announced through the webhook twice (10% three times)
while `autoinfer serve` is killed with SIGKILL at random moments and restarted; then every
object must have exactly one job, finished once, and one result object. Prints progress, then
`lost=<n> duplicated=<n>` counted from the store and the job records, and the elapsed time.
Exits 1 when a promise was broken.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `tests.faults` importable
    sys.path.insert(0, str(ROOT))

from tests.faults.crash_scenario import run_crash_scenario  # noqa: E402 - needs the path above


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="model cache (default: temporary)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many s")
    args = parser.parse_args(argv)

    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="autoinfer-soak-") as temporary:
        workdir = args.keep or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        cache_dir = args.cache_dir or workdir / "model-cache"
        report = run_crash_scenario(
            workdir,
            cache_dir=cache_dir,
            objects=args.objects,
            kills=args.kills,
            seed=args.seed,
            progress=progress,
            timeout_s=args.timeout,
        )
    progress(report.summary())
    for problem in report.problems[:20]:
        print(f"  problem: {problem}")
    print(f"lost={report.lost} duplicated={report.duplicated}")
    print(f"elapsed {time.monotonic() - started:.1f} s")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
