"""The optional compiled build of the hot path: the same Python sources, compiled by Cython.

Why: a worker's throughput is bounded by its own per-event Python (parsing and validating
platform payloads, the order state machine, stock and allocation, Avro records); no Kafka or Faust
setting moves it (BENCHMARKS.md). Cython compiling these modules unchanged, in its pure-Python
mode, removes the interpreter's dispatch for them: measured 1.2-1.4x on our processing alone.

What it must not change: behaviour. The modules are compiled with `annotation_typing` off, so a
type annotation never becomes a runtime check (a type-confused payload fails exactly as it does in
pure Python, with the same quarantine reason), and `binding` on, so functions and dataclasses
introspect like Python's. CI runs the unit and fuzz suites against a compiled tree
(tests/compiled/).

Pure Python stays the default (an editable install, `make test`, the demo): a compiled extension
next to its .py would shadow later edits of the source. Compiled builds are for wheels and images:

    STOCKSTREAM_COMPILE=1 pip wheel --no-build-isolation .       (Cython and a C compiler needed)
    python -m stockstream.compiled DEST                          (a compiled copy for PYTHONPATH)
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

# The modules every raw event passes through, in a worker's main thread or its ingest batcher.
HOT_MODULES = (
    "connectors/base.py",
    "connectors/tmall.py",
    "connectors/jd.py",
    "connectors/douyin.py",
    "connectors/pdd.py",
    "connectors/warehouse.py",
    "stockstream/core/allocation.py",
    "stockstream/core/catalog.py",
    "stockstream/core/model.py",
    "stockstream/core/movements.py",
    "stockstream/core/orders.py",
    "stockstream/core/stock.py",
    "stockstream/core/velocity.py",
    "stockstream/core/warehouse.py",
    "schemas/batches.py",
    "schemas/codec.py",
    "schemas/mappers.py",
    "streams/ingest.py",
    "streams/normalize.py",
    "streams/partitioning.py",
    "streams/sku_allocation.py",
    "streams/stock.py",
)
PACKAGES = ("stockstream", "streams", "connectors", "schemas", "sinks")
ENV_FLAG = "STOCKSTREAM_COMPILE"
COMPILER_DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def requested() -> bool:
    """Whether this build was asked to compile (setup.py)."""
    return os.environ.get(ENV_FLAG) == "1"


def extensions(root: Path = SOURCE_ROOT) -> list:
    """The Cython extensions of HOT_MODULES under `root` (paths relative to it, as setuptools wants)."""
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        raise SystemExit(f"{ENV_FLAG}=1 needs Cython in the build environment (pip install cython; "
                         "then pip wheel --no-build-isolation)") from exc
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return cythonize(list(HOT_MODULES), compiler_directives=COMPILER_DIRECTIVES, quiet=True,
                         nthreads=os.cpu_count() or 1)
    finally:
        os.chdir(cwd)


def compiled_modules() -> dict[str, bool]:
    """Module name -> whether the running interpreter loads it from a compiled extension."""
    status = {}
    for path in HOT_MODULES:
        name = path.removesuffix(".py").replace("/", ".")
        spec = importlib.util.find_spec(name)
        status[name] = spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    return status


def runs_from(tree: Path, env: Mapping[str, str], also: Sequence[Path] = ()) -> dict:
    """subprocess options that run Python from `tree` ahead of the installed sources: PYTHONPATH
    and the working directory both, since `python -m` puts the working directory first on sys.path
    (ahead of PYTHONPATH and the editable install). `also`: more directories after `tree`."""
    return {"cwd": tree, "env": {**env, "PYTHONPATH": os.pathsep.join(str(path) for path in (tree, *also))}}


def build_tree(dest: Path, source: Path = SOURCE_ROOT, extra: tuple[str, ...] = ()) -> Path:
    """A copy of the packages under `dest` with HOT_MODULES compiled in place next to their
    sources; put `dest` first on PYTHONPATH to run it. `extra`: more top-level entries of `source`
    to copy (tests, pyproject.toml) for running the test suites against the copy."""
    dest = Path(dest)
    # results and artifacts: bench/ and tests/ outputs, not code (hundreds of MB)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.pyc", "results", "artifacts", ".hypothesis")
    for name in (*PACKAGES, *extra):
        origin = source / name
        if origin.is_dir():
            shutil.copytree(origin, dest / name, ignore=ignore, dirs_exist_ok=True)
        elif origin.exists():
            shutil.copy2(origin, dest / name)
    script = (
        "import sys; from setuptools import setup; from stockstream import compiled; "
        "setup(name='stockstream-compiled', ext_modules=compiled.extensions(), script_args=sys.argv[1:])"
    )
    subprocess.run(
        [sys.executable, "-c", script, "build_ext", "--inplace", "--parallel", str(os.cpu_count() or 1)],
        **runs_from(dest, os.environ), check=True, capture_output=True,
    )
    shutil.rmtree(dest / "build", ignore_errors=True)  # object files
    missing = [path for path in HOT_MODULES if not list((dest / path).parent.glob(Path(path).stem + ".*.so"))]
    if missing:
        raise RuntimeError(f"not compiled: {', '.join(missing)}")
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="directory for the compiled copy (created)")
    args = parser.parse_args(argv)
    build_tree(args.dest)
    print(f"compiled {len(HOT_MODULES)} modules into {args.dest}; run with PYTHONPATH={args.dest}")


if __name__ == "__main__":
    main()
