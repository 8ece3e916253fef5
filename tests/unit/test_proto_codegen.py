"""The committed generated code is exactly what proto/ produces."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("audit_pb2.py", "audit_pb2.pyi", "audit_pb2_grpc.py")


def test_regenerating_from_proto_reproduces_the_committed_files(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         str(ROOT / "proto/aitrail/v1/audit.proto")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in GENERATED:
        fresh = (tmp_path / "aitrail/v1" / name).read_text()
        committed = (ROOT / "sdk/aitrail/v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: regenerate with scripts/gen-proto"
