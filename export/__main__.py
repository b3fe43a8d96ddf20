"""``python -m export CKPT --format onnx|torchscript|all --out DIR``: export and prove parity.

Each artifact is checked against the eager checkpoint on every runtime that reads it here (an
ONNX file on ONNX Runtime and, when installed, OpenVINO); a failing artifact is removed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .parity import ParityError, check_artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("checkpoint", help="checkpoint of any supported architecture (original .ckpt or state_dict .pt)")
    parser.add_argument("--format", choices=["onnx", "torchscript", "all"], default="all")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", default=None, help="file name stem (default: the checkpoint's)")
    args = parser.parse_args(argv)

    from models.checkpoint import CheckpointError, load_checkpoint
    from models.formats import baseline_format
    from separation.loading import openvino_available

    from .exporters import export_onnx, export_torchscript

    if baseline_format(args.checkpoint) is not None:
        print(f"error: {args.checkpoint} is an Open-Unmix folder or a demucs package; the kit runs those on eager "
              "PyTorch and has no export for them yet (pass it to `predict.py separate --checkpoint` as it is)",
              file=sys.stderr)
        return 2
    try:
        model = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or Path(args.checkpoint).stem
    formats = ["onnx", "torchscript"] if args.format == "all" else [args.format]
    status = 0
    for fmt in formats:
        path = out / f"{name}.{'onnx' if fmt == 'onnx' else 'ts'}"
        (export_onnx if fmt == "onnx" else export_torchscript)(model, path)
        runtimes = ["torchscript"] if fmt == "torchscript" else ["onnx"] + (["openvino"] if openvino_available() else [])
        # OpenVINO must keep the criteria only for architectures that run on it by default.
        required = {"torchscript", "onnx", model.architecture.cpu_runtime}
        reports, failure = {}, None
        for runtime in runtimes:
            try:
                reports[runtime] = str(check_artifact(model, path, runtime))
            except ParityError as exc:
                if runtime in required:
                    failure = exc
                    break
                reports[runtime] = f"outside tolerance, so --backend auto runs this file elsewhere: {exc}"
        if failure is not None:
            path.unlink(missing_ok=True)
            print(f"FAILED {fmt}: {failure} (artifact removed)", file=sys.stderr)
            status = 1
            continue
        print(f"{fmt:12s} {path}  {path.stat().st_size / 2**20:.1f} MiB")
        for runtime, report in reports.items():
            print(f"  on {runtime:11s} {report}")
    return status


if __name__ == "__main__":
    sys.exit(main())
