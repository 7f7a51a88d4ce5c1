"""Errors keep the library's status code and message; buffers grow without the caller noticing."""
from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import sys
import unittest

from _support import frugal, need_stories, reference, STORIES, tiny_model_path, tmp_dir

from frugal import _native


class Errors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = frugal.Model(tiny_model_path(), n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def assertError(self, cls, code, *fragments):
        ctx = self.assertRaises(cls)
        outer = self

        class _Check:
            def __enter__(self):
                return ctx.__enter__()

            def __exit__(self, *exc):
                handled = ctx.__exit__(*exc)
                e = ctx.exception
                outer.assertIsInstance(e, frugal.Error)
                outer.assertEqual(e.code, code)
                outer.assertEqual(str(e), e.message)
                outer.assertTrue(e.status)
                for f in fragments:
                    outer.assertIn(f, e.message)
                return handled

        return _Check()

    def test_missing_file_is_io_error_naming_the_path(self):
        path = os.path.join(tmp_dir(), "no-such-dir", "model.gguf")
        with self.assertError(frugal.IoError, -3, path) as cm:
            frugal.Model(path)
        self.assertIsInstance(cm.exception, OSError)
        self.assertEqual(cm.exception.status, "i/o error")
        with self.assertError(frugal.IoError, -3, path):
            frugal.Tokenizer(path)

    def test_malformed_file_is_invalid_model(self):
        path = os.path.join(tmp_dir(), "not-a-model.gguf")
        with open(path, "wb") as f:
            f.write(b"hello, world")
        with self.assertError(frugal.InvalidModel, -9, path, "magic"):
            frugal.Model(path)

    def test_out_of_range_token_names_the_id(self):
        s = self.model.session()
        with self.assertError(frugal.InvalidArgument, -1, "100000") as cm:
            s.prompt_tokens([1, 100000])
        self.assertIsInstance(cm.exception, ValueError)
        with self.assertError(frugal.InvalidArgument, -1, "-5"):
            s.prompt_tokens([1, -5])
        with self.assertError(frugal.InvalidArgument, -1, str(2**40)):
            s.prompt_tokens([1, 2**40])  # caught by the binding: no int32 holds it
        self.assertEqual(s.n_past, 0)  # nothing was evaluated
        with self.assertError(frugal.InvalidArgument, -1, "600"):
            self.model.tokenizer().decode([1, 600])
        with self.assertRaises(TypeError):
            s.prompt_tokens("abc")
        with self.assertRaises(TypeError):
            s.prompt_tokens([1, "2"])

    def test_invalid_utf8_names_the_offset(self):
        s = self.model.session()
        with self.assertError(frugal.InvalidArgument, -1, "utf-8", "offset 5"):
            s.prompt(b"Once \xff upon")
        # a lone surrogate in a str reaches the library as the bytes it would be, and is refused there
        with self.assertError(frugal.InvalidArgument, -1, "utf-8", "offset 5"):
            s.prompt("Once \udcff upon")
        tok = self.model.tokenizer()
        with self.assertError(frugal.InvalidArgument, -1, "utf-8", "offset 2"):
            tok.encode(b"ab\xc3")
        with self.assertError(frugal.InvalidArgument, -1, "messages[1]", "utf-8"):
            tok.apply_chat_template([("user", "hi"), ("assistant", b"x\xff")], format="chatml")
        with self.assertRaises(TypeError):
            s.prompt(42)

    def test_context_full(self):
        s = self.model.session(n_ctx=8, temperature=0)
        with self.assertError(frugal.ContextFull, -5, "8"):
            s.prompt("the the the the the the the the the the the")
        self.assertEqual(s.n_past, 0)
        gen = s.generate("the cat", max_tokens=None)  # BOS + 4 tokens: 3 more fit
        with self.assertError(frugal.ContextFull, -5, "8"):
            for _ in gen:
                pass
        self.assertEqual(len(gen.tokens), 8 - len(self.model.tokenize("the cat")))
        self.assertEqual(s.n_past, 8)
        s.reset()  # usable again
        again = s.generate("the", max_tokens=3)
        again.read()
        self.assertEqual(len(again.tokens), 3)

    def test_bad_parameters(self):
        s = self.model.session()
        with self.assertError(frugal.InvalidArgument, -1, "top_p", "2"):
            s.set_params(top_p=2.0)
        with self.assertError(frugal.InvalidArgument, -1, "n_threads", "0"):
            s.set_params(n_threads=0)
        with self.assertError(frugal.InvalidArgument, -1, "repeat_penalty"):
            self.model.session(repeat_penalty=0.0)
        with self.assertError(frugal.InvalidArgument, -1, "n_ctx", "-1"):
            self.model.session(n_ctx=-1)
        with self.assertError(frugal.InvalidArgument, -1, "n_threads", "-1"):
            frugal.Model(tiny_model_path(), n_threads=-1)
        with self.assertRaises(TypeError):
            s.generate("the", max_tokens=2, temprature=0)
        with self.assertError(frugal.InvalidArgument, -1, "max_tokens"):
            s.generate(max_tokens=-1)

    def test_chat_template_errors(self):
        tok = self.model.tokenizer()
        self.assertEqual(tok.chat_format, "none")
        with self.assertError(frugal.InvalidArgument, -1, "'bot'"):
            tok.apply_chat_template([("bot", "x")], format="chatml")
        with self.assertError(frugal.InvalidArgument, -1, "none"):
            tok.apply_chat_template([("user", "x")])
        with self.assertError(frugal.InvalidArgument, -1, "'bogus'"):
            tok.apply_chat_template([("user", "x")], format="bogus")
        with self.assertRaises(TypeError):
            tok.apply_chat_template([{"role": "user"}], format="chatml")
        with self.assertRaises(TypeError):
            tok.apply_chat_template("hello", format="chatml")

    def test_next_without_prompt(self):
        s = self.model.session()
        gen = s.generate(max_tokens=4)
        with self.assertError(frugal.InvalidArgument, -1, "prompt"):
            next(gen)

    def test_progress_stops_the_load(self):
        with self.assertError(frugal.Cancelled, -6, "progress"):
            frugal.Model(tiny_model_path(), progress=lambda f: False)

        class Stop(Exception):
            pass

        def boom(_f):
            raise Stop("from the callback")

        with self.assertRaises(Stop) as cm:
            frugal.Model(tiny_model_path(), progress=boom)
        self.assertIsInstance(cm.exception.__cause__, frugal.Cancelled)

    def test_closed_handles(self):
        m = frugal.Model(tiny_model_path(), n_threads=1)
        s = m.session()
        t = m.tokenizer()
        for h in (m, s, t):
            h.close()
            h.close()  # idempotent
            self.assertTrue(h.closed)
            self.assertIn("(closed)", repr(h))
        with self.assertError(frugal.InvalidArgument, -1, "frugal.Model is closed"):
            m.n_vocab
        with self.assertError(frugal.InvalidArgument, -1, "frugal.Model is closed"):
            m.session()
        with self.assertError(frugal.InvalidArgument, -1, "frugal.Session is closed"):
            s.prompt("the")
        with self.assertError(frugal.InvalidArgument, -1, "frugal.Tokenizer is closed"):
            t.encode("the")
        s.cancel()  # a no-op, never an error
        with self.assertRaises(frugal.InvalidArgument):
            with m:
                pass

    def test_error_objects(self):
        e = frugal.ContextFull(-5, "context full: all 8 positions are used")
        e2 = pickle.loads(pickle.dumps(e))
        self.assertIs(type(e2), frugal.ContextFull)
        self.assertEqual((e2.code, e2.message, e2.status), (-5, e.message, "context full"))
        self.assertIsInstance(frugal.IoError(-3, "x"), OSError)
        self.assertIsInstance(frugal.OutOfMemory(-2, "x"), MemoryError)
        self.assertIs(frugal.errors.error_class(-42), frugal.Error)
        self.assertIn("8 positions", repr(e))


class Loading(unittest.TestCase):
    def test_version_mismatch_is_refused(self):
        class FakeLib:
            def __init__(self, number):
                self.frugal_version_number = lambda: number

        self.assertEqual(_native._check_version(FakeLib(103), "x"), (0, 1, 3))  # another patch: fine
        for number in (200, 10100, 0):
            with self.assertRaises(frugal.VersionMismatchError) as cm:
                _native._check_version(FakeLib(number), "/some/libfrugal.so")
            self.assertIsInstance(cm.exception, ImportError)
            self.assertIn("/some/libfrugal.so", str(cm.exception))
            self.assertIn("0.1", str(cm.exception))

    def test_missing_library_is_an_import_error(self):
        env = dict(os.environ, FRUGAL_LIBRARY=os.path.join(tmp_dir(), "libfrugal-missing.so"))
        code = "import frugal"
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             cwd=os.path.dirname(os.path.dirname(frugal.__file__)))
        err = run.stderr.decode("utf-8", "replace")
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("LibraryNotFoundError", err)
        self.assertIn("libfrugal-missing.so", err)
        self.assertIn("FRUGAL_LIBRARY", err)


class BufferGrowth(unittest.TestCase):
    def test_tiny_piece_buffer(self):
        need_stories(self)
        ref = reference()["greedy_from_bos"]
        m = frugal.Model(STORIES, n_threads=1)
        for split in (False, True):
            s = m.session(temperature=0)
            s._buf_cap = 1  # every multi-byte piece needs the buffer grown (and the token re-fetched)
            s._buf = ctypes.create_string_buffer(1)
            gen = s.generate("", max_tokens=ref["steps"], split_reasoning=split)
            pieces = list(gen)
            text = "".join(p.text if split else p for p in pieces)
            self.assertEqual(gen.tokens, ref["generated_ids"])
            self.assertEqual(text, ref["text"])
            self.assertGreater(s._buf_cap, 1)

    def test_text_and_id_buffers_grow(self):
        m = frugal.Model(tiny_model_path(), n_threads=1)
        tok = m.tokenizer()
        text = "the cat ate the hat " * 500
        ids = _native.ids_call(_native.lib.frugal_tokenizer_encode, tok._handle(), text.encode(), len(text), 1, 1,
                               cap=1)
        self.assertEqual(ids, tok.encode(text))
        arr, n = _native.token_array(ids)
        raw = _native.text_call(_native.lib.frugal_tokenizer_decode, tok._handle(), arr, n, 0, cap=1)
        self.assertEqual(raw.decode(), tok.decode(ids))
        self.assertEqual(tok.decode(ids), text)
        long = "x" * 100000
        rendered = tok.apply_chat_template([("user", long)], format="chatml")
        self.assertIn(long, rendered)
        self.assertEqual(m.metadata["general.name"], "tiny-llama")


if __name__ == "__main__":
    unittest.main()
