"""``aitrail collector``: run the collector in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aitrail_collector.anchor import AnchorError
from aitrail_collector.ingest import TlsFiles
from aitrail_collector.server import (Collector, CollectorConfig, running_collector,
                                      stop_on_signals)
from aitrail_collector.store import DEFAULT_RETENTION_DAYS, StoreError, dsn_for
from aitrail_collector.validate import Limits


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    dsn = dsn_for(data_dir=args.data_dir, clickhouse=args.clickhouse)
    if dsn.startswith("chdb://"):
        held = running_collector(dsn[len("chdb://"):])
        if held:
            raise StoreError(f"{dsn[len('chdb://'):]} is already held by a running collector "
                             f"(pid {held['pid']}, {held.get('url')})")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if getattr(args, "checkpoint_interval", 1) <= 0 or getattr(args, "checkpoint_max_quiet", 1) <= 0:
        raise ValueError("--checkpoint-interval and --checkpoint-max-quiet must be positive")
    for path in (args.tls_cert, args.tls_key, args.tls_client_ca, args.api_keys,
                 getattr(args, "signing_key", None)):
        if path and not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
    limits = Limits(max_record_bytes=args.max_record_bytes, max_text_chars=args.max_text_chars,
                    max_attributes=args.max_attributes, future_skew_s=args.max_clock_skew,
                    max_age_s=int(args.max_record_age_days * 86400))
    return CollectorConfig(dsn=dsn, chain_id=args.chain_id, grpc_listen=args.grpc_listen,
                           http_listen=args.http_listen or None,
                           retention_days=args.retention_days or DEFAULT_RETENTION_DAYS,
                           limits=limits, max_message_bytes=args.max_message_bytes,
                           max_records_per_batch=args.max_records_per_batch,
                           max_pending_records=args.max_pending_records,
                           api_keys=args.api_keys,
                           signing_key=getattr(args, "signing_key", None),
                           anchor=getattr(args, "anchor", None),
                           checkpoint_interval=getattr(args, "checkpoint_interval", 300),
                           checkpoint_max_quiet=getattr(args, "checkpoint_max_quiet", 86400),
                           users=getattr(args, "users", None),
                           tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca or "")
                           if args.tls_cert else None)


def start_from_args(args: argparse.Namespace) -> Collector:
    try:
        return Collector(config_from_args(args)).start()
    except (StoreError, AnchorError, OSError, ValueError) as exc:
        sys.stderr.write(f"aitrail {args.command}: {exc}\n")
        raise SystemExit(2) from None


def run_collector(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = stop_on_signals()
    collector = start_from_args(args)
    where = collector.data_dir or collector.store.dsn
    print(f"aitrail collector: chain {collector.config.chain_id} (head seq "
          f"{collector.ledger.head_seq}), store {where}", flush=True)
    print(f"  gRPC ingest  {collector.grpc_endpoint}", flush=True)
    if collector.url:
        print(f"  HTTP API     {collector.url}   (OpenAPI: {collector.url}/docs)", flush=True)
    collector.serve_forever(stop)
    return 0
