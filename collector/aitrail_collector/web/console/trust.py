"""What the console says about trust: each record's plain status, "Verify this task"
and the task's proof archive.

"Verify this task" checks each record of a task against its chain's newest signed
checkpoint exactly as `aitrail verify-proof` checks the downloaded bundles
(aitrail.verify.bundle): the stored envelope re-encoded and hashed, its inclusion proof
against the signed root, the checkpoint's signature against the trusted key. The
bundles come from audit/proofs.latest_bundles (one tree read per chain, hashed in C).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aitrail.verify.bundle import BundleError, make_archive, verify_bundle
from aitrail_collector.audit import proofs
from aitrail_collector.store.client import Store


def ago(ns: int) -> str:
    seconds = max(0, (time.time_ns() - ns) / 1e9)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def utc(ns: int) -> str:
    """An absolute time, as every page shows it beside a relative one."""
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def verify_task(store: Store, key: Optional[Ed25519PublicKey], events: list[dict]) -> dict:
    """Each record of the task against its chain's newest signed checkpoint: the
    stored envelope re-encoded and hashed, its inclusion proof checked against the
    signed root, the signature against the trusted key, exactly as `aitrail
    verify-proof` checks the downloaded bundles (aitrail.verify.bundle)."""
    found = proofs.latest_bundles(store, [(e["record_id"], e["chain_id"], e["seq"])
                                          for e in events])
    results: dict[str, tuple[str, str]] = {}
    for record_id, text in found.bundles.items():
        if key is None:
            results[record_id] = ("unchecked", "no public key to check the signature with")
            continue
        try:
            verify_bundle(text, key)
            results[record_id] = ("verified", "")
        except BundleError as exc:
            results[record_id] = ("failed", str(exc))
    for record_id, reason in found.refused.items():
        results[record_id] = ("failed", reason)  # changed after sealing: no bundle
    for record_id in found.uncovered:
        results[record_id] = ("uncovered", "")
    kinds = [kind for kind, _ in results.values()]
    return {"results": results, "at": time.time_ns(),
            "checkpoints": {chain: {"number": s.checkpoint.number, "size": s.checkpoint.size,
                                    "time_ns": s.checkpoint.time_ns}
                            for chain, s in found.checkpoints.items()},
            **{kind: kinds.count(kind) for kind in
               ("verified", "failed", "uncovered", "unchecked")}}


def proof_archive(store: Store, public_key_pem: bytes, task: str, by: str,
                  events: list[dict]) -> Optional[tuple[bytes, str, int]]:
    """(ZIP bytes, file name, bundles) of the task's proof archive against the newest
    checkpoint, with the public key and a README; None when no record is covered yet."""
    found = proofs.latest_bundles(store, [(e["record_id"], e["chain_id"], e["seq"])
                                          for e in events])
    if not found.bundles:
        return None
    seqs = {e["record_id"]: e["seq"] for e in events}
    members = [(f"bundles/{seqs[rid]:012d}-{rid}.json", text)
               for rid, text in sorted(found.bundles.items(), key=lambda kv: seqs[kv[0]])]
    data = make_archive(members, public_key_pem, _archive_readme(task, by, found, events))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task)[:80]
    return data, f"aitrail-proofs-{name}.zip", len(members)


def trust_status(event: dict, check: Optional[dict], next_due: Optional[int]) -> dict:
    """The plain status of one record: what was checked, against which checkpoint."""
    due = f"; next due about {utc(next_due)}" if next_due else ""
    if check is not None:
        kind, detail = check["results"].get(event["record_id"], ("uncovered", ""))
        cp = check["checkpoints"].get(event["chain_id"])
        where = (f"signed checkpoint #{cp['number']} of {utc(cp['time_ns'])} "
                 f"({ago(cp['time_ns'])})") if cp else ""
        text = {"verified": f"Verified: unchanged since sealed, in {where}",
                "failed": f"FAILED against {where}: {detail}",
                "unchecked": f"In {where}, but not checked: {detail}",
                "uncovered": f"Sealed, not yet in a signed checkpoint{due}"}[kind]
        return {"kind": kind, "text": text + "."}
    cp = event["integrity"]
    if cp.get("checkpoint"):
        return {"kind": "sealed", "text": f"Sealed, in signed checkpoint #{cp['checkpoint']} "
                f"of {utc(cp['checkpoint_time'])} ({ago(cp['checkpoint_time'])}); "
                "not verified on this page yet."}
    return {"kind": "uncovered", "text": f"Sealed, not yet in a signed checkpoint{due}."}


def _archive_readme(task: str, by: str, found: proofs.TaskProofs, events: list[dict]) -> str:
    lines = [f"aitrail proof archive: task {task}",
             f"Made {utc(time.time_ns())} for {by}.", "",
             "Each bundles/*.json file proves one record of the task is included, unchanged,",
             "in a signed checkpoint. Check them all offline (pip install aitrail):", "",
             "    aitrail verify-proof THIS-FILE.zip --public-key public-key.pem", "",
             "public-key.pem is the collector's checkpoint key as it served it; compare it",
             "with the key you got from the collector's operator out of band before trusting",
             "an OK.", "", "Checkpoints:"]
    for chain, signed in sorted(found.checkpoints.items()):
        cp = signed.checkpoint
        lines.append(f"    chain {chain}: #{cp.number}, {cp.size} records, signed "
                     f"{utc(cp.time_ns)}")
    if found.refused:
        lines += ["", "FAILED: changed after sealing, so no bundle can show them (run "
                  "`aitrail verify`):"]
        lines += [f"    {rid}: {reason}" for rid, reason in sorted(found.refused.items())]
    if found.uncovered:
        lines += ["", "Not yet in a signed checkpoint (no bundle here; download again later):"]
        lines += [f"    {e['record_id']} (seq {e['seq']} of chain {e['chain_id']})"
                  for e in events if e["record_id"] in set(found.uncovered)]
    return "\n".join(lines) + "\n"
