#!/usr/bin/env python3
"""Checks the offline install the README documents:

    python3 -m venv --system-site-packages VENV
    VENV/bin/python -m pip install --no-build-isolation ./bindings/python

in a temporary venv (from a copy of bindings/python, so no build/ or egg-info lands in the
checkout; --no-index too, so nothing can come from the network), then imports the installed
package from outside the source tree and runs a short unittest selection against it.

The build backend is setuptools (>= 61, with wheel) from the interpreter's own site-packages,
e.g. Debian's python3-setuptools and python3-wheel. If this interpreter lacks them, /usr/bin/python3
is tried. Exit 77 (SKIP) when no interpreter has venv + setuptools + wheel.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BINDING = os.path.dirname(HERE)

PROBE = (
    "import sys, venv, ensurepip, setuptools, wheel\n"
    "v = tuple(int(x) for x in setuptools.__version__.split('.')[:2])\n"
    "sys.exit(0 if v >= (61, 0) else 3)\n"
)


def usable(python: str) -> str:
    """'' if python can build the package offline in a venv, else why not."""
    try:
        r = subprocess.run([python, "-c", PROBE], capture_output=True, timeout=60)
    except OSError as e:
        return str(e)
    if r.returncode == 0:
        return ""
    if r.returncode == 3:
        return "setuptools < 61"
    return r.stderr.decode("utf-8", "replace").strip().splitlines()[-1]


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, timeout=600, **kw)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    if r.returncode != 0:
        print(out)
        raise SystemExit(f"pip_install: {cmd[0]} ... exited with {r.returncode}")
    return out


def main() -> int:
    if not os.environ.get("FRUGAL_LIBRARY"):
        print("SKIP: FRUGAL_LIBRARY is not set (the installed package needs libfrugal)")
        return 77
    candidates = [sys.executable] + (["/usr/bin/python3"] if os.path.exists("/usr/bin/python3") else [])
    why = {}
    python = None
    for c in candidates:
        why[c] = usable(c)
        if not why[c]:
            python = c
            break
        print(f"{c} cannot build the package offline ({why[c]}); trying the next interpreter")
    if python is None:
        print("SKIP: no interpreter with venv, ensurepip, setuptools >= 61 and wheel (Debian: apt-get install "
              "python3-venv python3-setuptools python3-wheel): "
              + "; ".join(f"{c}: {w}" for c, w in why.items()))
        return 77

    tmp = tempfile.mkdtemp(prefix="frugal-pip-")
    try:
        src = os.path.join(tmp, "python")
        shutil.copytree(BINDING, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        venv = os.path.join(tmp, "venv")
        run([python, "-m", "venv", "--system-site-packages", venv])
        vpy = os.path.join(venv, "bin", "python")
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        env.pop("PYTHONPATH", None)
        out = run([vpy, "-m", "pip", "install", "--no-build-isolation", "--no-index", src], env=env)
        print(out.strip().splitlines()[-1])
        # the installed copy, imported from elsewhere than the source tree
        out = run([vpy, "-c", "import frugal, sys; print(frugal.__file__); print(frugal.version(), frugal.library_path)"],
                  env=env, cwd=tmp)
        installed = out.splitlines()[0]
        if not installed.startswith(venv):
            print(f"pip_install: frugal was imported from {installed}, not from the venv {venv}")
            return 1
        if not os.path.exists(os.path.join(os.path.dirname(installed), "py.typed")):
            print("pip_install: py.typed is missing from the installed package")
            return 1
        print(f"installed: {installed} ({out.splitlines()[1]})")
        env["FRUGAL_PYTHON_INSTALLED"] = "1"
        out = run([vpy, os.path.join(HERE, "run_tests.py"), "test_generate.TinyModel", "test_lifetime", "test_errors"],
                  env=env, cwd=tmp)
        print(out.strip().splitlines()[-1])
        run([vpy, "-m", "pip", "uninstall", "-y", "frugal"], env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"pip_install: OK with {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
