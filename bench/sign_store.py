"""Sign checkpoints into a store made by ``gen_store.py``, as a collector would have.

``gen_store.py`` seals the records (seq, prev, leaf and chain hashes) but signs no
checkpoint, so ``aitrail verify`` on it checks no tree. This walks the chain by seq
and signs a checkpoint for each ``--every`` seconds of sealed time that holds records
(an hour by default; a running collector signs every few seconds) and one at the
head, with a new
Ed25519 key, stored like the collector's (``Store.insert_checkpoint``) and written to
an anchor directory beside the engine's files: the key and anchor that
``aitrail verify --data-dir`` takes by default. Each checkpoint's time is the sealed
time of its last record.

    .venv/bin/python bench/sign_store.py /work/stores/v10m/data --every 3600
"""

from __future__ import annotations

import argparse
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitrail.verify.checkpoint import Checkpoint, key_id, sign
from aitrail.verify.hashes import ZERO_HASH
from aitrail.verify.merkle import CompactRange
from aitrail_collector import native
from aitrail_collector.anchor import open_anchor
from aitrail_collector.config import DataDir
from aitrail_collector.store.client import Store
from aitrail_collector.store.schema import DB


def _write_key(data_dir: DataDir) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    with open(data_dir.signing_key, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(data_dir.public_key, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("--chain", default="main")
    ap.add_argument("--every", type=float, default=3600.0, help="seconds of sealed time")
    args = ap.parse_args()
    data_dir = DataDir(args.data_dir)
    store = Store(data_dir.dsn)
    if store.query(f"SELECT count() FROM {DB}.checkpoints").result_rows[0][0]:
        print(f"{args.data_dir} already holds checkpoints: left as it is")
        store.close()
        return
    key = _write_key(data_dir)
    t0 = time.perf_counter()
    tree, signed, last = CompactRange(), [], None
    sql = (f"SELECT leaf_hash, chain_hash, toUnixTimestamp64Nano(received_time)"
           f" FROM {DB}.envelopes WHERE chain_id = {{c:String}} ORDER BY seq")
    pending: list[bytes] = []
    head, head_time = ZERO_HASH, 0
    every_ns, due_ns = int(args.every * 1e9), None

    def checkpoint() -> None:
        nonlocal last
        native.extend_range(tree, b"".join(pending))
        pending.clear()
        cp = Checkpoint(origin=args.chain, number=len(signed) + 1, size=tree.size,
                        root=tree.root(), chain_hash=head, time_ns=head_time,
                        prev=last.digest() if last else ZERO_HASH, key_id=key_id(key.public_key()))
        last = sign(cp, key)
        store.insert_checkpoint(args.chain, cp.number, cp.size, cp.time_ns, last.text(),
                                tree.hashes)
        signed.append(last)

    for leaves, chains, times in store.stream_blocks(sql, {"c": args.chain}):
        for i, leaf in enumerate(leaves):  # a bench tool, run once per store
            sealed_ns = int(times[i])
            if due_ns is None:
                due_ns = sealed_ns - sealed_ns % every_ns + every_ns
            elif sealed_ns >= due_ns and pending:  # the checkpoint before this record
                checkpoint()
                due_ns = sealed_ns - sealed_ns % every_ns + every_ns
            pending.append(leaf)
            head, head_time = chains[i], sealed_ns
    if pending:
        checkpoint()
    open_anchor(data_dir.anchor).put_batch(signed)
    print(f"{len(signed)} checkpoints of {args.chain} signed up to size {tree.size} in "
          f"{time.perf_counter() - t0:.0f} s; key {data_dir.public_key}, anchor "
          f"{data_dir.anchor}")
    store.close()


if __name__ == "__main__":
    main()
