"""Shared by the binding's tests: importing frugal from this checkout, test data, a tiny model.

Environment:
    FRUGAL_LIBRARY      full path of the libfrugal.so to test (else frugal's own search)
    FRUGAL_SHARED_DIR   the team's shared folder (default: <repo>/../shared); tests that need its
                        data skip with a message when it is absent
    FRUGAL_PYTHON_INSTALLED=1  test the installed frugal package instead of bindings/python/src
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BINDING_DIR = os.path.dirname(HERE)
REPO_DIR = os.path.dirname(os.path.dirname(BINDING_DIR))

if os.environ.get("FRUGAL_PYTHON_INSTALLED") != "1":
    sys.path.insert(0, os.path.join(BINDING_DIR, "src"))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import frugal  # noqa: E402  (the ImportError says how to point at libfrugal)
import tiny_gguf  # noqa: E402

SHARED_DIR = os.environ.get("FRUGAL_SHARED_DIR") or os.path.join(REPO_DIR, "..", "shared")
STORIES_DIR = os.path.join(SHARED_DIR, "data", "stories260K")
STORIES = os.path.join(STORIES_DIR, "stories260K.gguf")
REFERENCE = os.path.join(STORIES_DIR, "reference.json")
DEEPSEEK_V3_TOKENIZER = os.path.join(SHARED_DIR, "data", "tokenizers", "deepseek-v3")

_tmp = None


def tmp_dir() -> str:
    """A temporary folder removed at exit."""
    global _tmp
    if _tmp is None:
        _tmp = tempfile.mkdtemp(prefix="frugal-py-")
        atexit.register(shutil.rmtree, _tmp, True)
    return _tmp


_tiny = None


def tiny_model_path() -> str:
    """A minimal random-weight llama model (tiny_gguf.py), written once per process."""
    global _tiny
    if _tiny is None:
        _tiny = tiny_gguf.write(os.path.join(tmp_dir(), "tiny-llama.gguf"))
    return _tiny


def need_stories(test: unittest.TestCase) -> None:
    if not (os.path.isfile(STORIES) and os.path.isfile(REFERENCE)):
        test.skipTest(f"shared test data not found: {STORIES_DIR} (set FRUGAL_SHARED_DIR)")


def reference() -> dict:
    with open(REFERENCE, encoding="utf-8") as f:
        return json.load(f)
