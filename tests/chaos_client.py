"""A client application for the delivery tests: emits records with the real SDK.

    python tests/chaos_client.py ENDPOINT COUNT IDS_FILE [--rate N] [--delivery MODE]

Writes each emitted record id to IDS_FILE (one per line) and, at the end, waits
until everything is delivered, spool included. Exit 0 when it was.
"""

import argparse
import os
import sys
import time

import aitrail


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("endpoint")
    p.add_argument("count", type=int)
    p.add_argument("ids_file")
    p.add_argument("--rate", type=float, default=0, help="records per second (0: as fast as possible)")
    p.add_argument("--delivery", default="durable")
    p.add_argument("--flush-timeout", type=float, default=180)
    args = p.parse_args()
    aitrail.configure(endpoint=args.endpoint, service="chaos-client", redaction_key="k",
                      delivery=args.delivery, batch_size=100, flush_interval=0.05,
                      export_timeout=2)
    start = time.monotonic()
    with open(args.ids_file, "w") as ids:
        for i in range(args.count):
            rid = aitrail.resolve(f"T-{os.getpid()}-{i}", resolution="closed")
            ids.write(rid + "\n")
            if args.rate:
                delay = start + (i + 1) / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    ok = aitrail.flush(args.flush_timeout)
    sys.stderr.write(f"stats {aitrail.stats()}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
