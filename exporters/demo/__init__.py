"""`mlscope demo`: a local AWS emulator and demo SageMaker traffic, so the stack works with no AWS account.

    mlscope demo aws --listen 127.0.0.1:5000
    mlscope demo traffic --aws-endpoint http://127.0.0.1:5000
    mlscope demo oncall --listen 127.0.0.1:9095
    mlscope demo model-server --listen 127.0.0.1:8000 --triton-listen 127.0.0.1:8002

See docs/demo.md.
"""

from __future__ import annotations

from typing import Sequence

from ..cli import OneLineParser, fail
from ..settings import SettingError

COMMANDS = {
    "aws": "local AWS emulator (moto, patched for SageMaker and CloudWatch)",
    "traffic": "create demo SageMaker endpoints and write their CloudWatch metrics every minute",
    "oncall": "a stand-in on-call webhook that logs every alert Alertmanager sends",
    "model-server": "simulated vLLM and Triton metrics (self-hosted inference on the simulated GPUs)",
}


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: mlscope demo {aws,traffic,oncall,model-server} [options]", "", "commands:"]
        lines += [f"  {name:<13} {help_}" for name, help_ in COMMANDS.items()]
        print("\n".join(lines))
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        OneLineParser(prog="mlscope demo").error(
            f"unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})")
    if argv[0] == "aws":
        try:
            from . import aws as command
        except ModuleNotFoundError as exc:  # moto comes with the extra, not with the exporters
            fail("mlscope demo aws", f"the AWS emulator needs {exc.name}: pip install 'mlscope[demo]'")
    elif argv[0] == "oncall":
        from . import oncall as command
    elif argv[0] == "model-server":
        from . import modelserver as command
    else:
        from . import traffic as command
    try:
        return command.main(argv[1:])
    except SettingError as exc:
        fail(f"mlscope demo {argv[0]}", str(exc))
