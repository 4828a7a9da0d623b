"""Runtime start-up of the offline stand-in for public.ecr.aws/lambda/python:3.13 (CI only).

Builds the module search path the Lambda Python runtime documents (function code, then layers,
then the runtime's own packages, then the standard library) and hands over to awslambdaric,
the open-source runtime interface client that the official image runs too.
"""

import os
import site
import sys


def lambda_sys_path() -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
    front = [
        task_root,
        f"/opt/python/lib/{version}/site-packages",
        "/opt/python",
        f"{sys.prefix}/lib/{version}/site-packages",
        runtime_dir,
    ]
    # addsitedir also runs the .pth files of layers and of the function package.
    for path in front[:3]:
        if os.path.isdir(path):
            site.addsitedir(path)
    rest = [p for p in sys.path if p not in front and p != os.path.dirname(os.path.abspath(__file__))]
    sys.path[:] = front + rest


def main() -> None:
    handler = os.environ.get("_HANDLER") or os.environ.get("AWS_LAMBDA_FUNCTION_HANDLER")
    if not handler:
        sys.stderr.write("bootstrap: no handler (_HANDLER is not set)\n")
        sys.exit(1)
    lambda_sys_path()
    from awslambdaric.__main__ import main as ric_main

    ric_main([sys.argv[0], handler])


if __name__ == "__main__":
    main()
