"""`python -m mlscope.gpu.proto [OUT]`: generate the pod-resources v1 Python stubs (default: beside the .proto)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "podresources_v1.proto"


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # a development dependency: the exporter needs only grpcio and protobuf

    with tempfile.TemporaryDirectory() as tmp:
        # laid out as the package, so the generated grpc module imports `from mlscope.gpu.proto import ...`
        package = Path(tmp, "mlscope", "gpu", "proto")
        package.mkdir(parents=True)
        shutil.copy(HERE / PROTO, package / PROTO)
        args = ["protoc", f"-I{tmp}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
                f"mlscope/gpu/proto/{PROTO}"]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {PROTO}")
        written = []
        for generated in sorted(package.glob("*_pb2*.py")):
            target = out / generated.name
            target.write_bytes(generated.read_bytes())
            written.append(target)
        return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(f"wrote {path}")
