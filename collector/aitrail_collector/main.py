"""``aitrail collector``: run the collector in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys

from aitrail_collector.server import Collector, CollectorConfig, running_collector
from aitrail_collector.store import DEFAULT_RETENTION_DAYS, StoreError, dsn_for


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    dsn = dsn_for(data_dir=args.data_dir, clickhouse=args.clickhouse)
    if dsn.startswith("chdb://"):
        held = running_collector(dsn[len("chdb://"):])
        if held:
            raise StoreError(f"{dsn[len('chdb://'):]} is already held by a running collector "
                             f"(pid {held['pid']}, {held.get('url')})")
    return CollectorConfig(dsn=dsn, chain_id=args.chain_id, grpc_listen=args.grpc_listen,
                           http_listen=args.http_listen or None,
                           retention_days=args.retention_days or DEFAULT_RETENTION_DAYS,
                           max_message_bytes=args.max_message_bytes)


def start_from_args(args: argparse.Namespace) -> Collector:
    try:
        return Collector(config_from_args(args)).start()
    except (StoreError, OSError, ValueError) as exc:
        sys.stderr.write(f"aitrail {args.command}: {exc}\n")
        raise SystemExit(2) from None


def run_collector(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    collector = start_from_args(args)
    where = collector.data_dir or collector.store.dsn
    print(f"aitrail collector: chain {collector.config.chain_id} (head seq "
          f"{collector.ledger.head_seq}), store {where}", flush=True)
    print(f"  gRPC ingest  {collector.grpc_endpoint}", flush=True)
    if collector.url:
        print(f"  HTTP API     {collector.url}   (OpenAPI: {collector.url}/docs)", flush=True)
    collector.serve_forever()
    return 0
