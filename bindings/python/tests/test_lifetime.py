"""Handles outlive each other in any order: the C library reference counts models, and each Python
object frees its own handle exactly once (close(), with, or collection)."""
from __future__ import annotations

import gc
import unittest
import weakref

from _support import frugal, tiny_model_path

import lifetime_asan


def greedy(session, prompt="the cat", n=6):
    gen = session.generate(prompt, max_tokens=n, temperature=0)
    text = gen.read()
    return gen.tokens, text


class Lifetime(unittest.TestCase):
    def setUp(self):
        self.path = tiny_model_path()
        with frugal.Model(self.path, n_threads=1) as m:
            self.want = greedy(m.session())

    def test_model_closed_before_its_session(self):
        m = frugal.Model(self.path, n_threads=1)
        s = m.session()
        m.close()
        self.assertTrue(m.closed)
        self.assertEqual(greedy(s), self.want)  # the session keeps the weights alive
        self.assertEqual(s.tokenizer.encode("the"), [1, 276])

    def test_model_collected_before_its_session(self):
        m = frugal.Model(self.path, n_threads=1)
        s = m.session()
        ref = weakref.ref(m)
        del m
        gc.collect()
        self.assertIsNone(ref())
        self.assertEqual(greedy(s), self.want)

    def test_tokenizer_outlives_model_and_sessions(self):
        m = frugal.Model(self.path, n_threads=1)
        s = m.session()
        tok = m.tokenizer()
        own = s.tokenizer
        del m
        s.close()
        gc.collect()
        self.assertEqual(tok.encode("the cat"), [1, 276, 264, 259, 269])
        self.assertEqual(own.decode([276, 264, 259, 269]), "the cat")

    def test_generation_keeps_its_session(self):
        gen = frugal.Model(self.path, n_threads=1).session().generate("the cat", max_tokens=6, temperature=0)
        gc.collect()
        self.assertEqual(gen.read(), self.want[1])

    def test_generation_after_session_closed(self):
        s = frugal.Model(self.path, n_threads=1).session()
        gen = s.generate("the cat", max_tokens=6)
        s.close()
        with self.assertRaises(frugal.InvalidArgument):
            next(gen)

    def test_cycles_are_collected(self):
        m = frugal.Model(self.path, n_threads=1)
        s = m.session()
        m.cycle = [m, s]
        s.cycle = m.cycle
        refs = [weakref.ref(m), weakref.ref(s)]
        del m, s
        gc.collect()
        self.assertEqual([r() for r in refs], [None, None])

    def test_close_is_idempotent_and_with_closes(self):
        with frugal.Model(self.path, n_threads=1) as m:
            with m.session() as s, m.tokenizer() as t:
                pass
        for h in (m, s, t):
            self.assertTrue(h.closed)
            h.close()

    def test_torture_short(self):
        # the ctest "python_lifetime" runs 1000 iterations of the same script (and under ASan
        # in an ASan build); here a few, with another seed
        self.assertEqual(lifetime_asan.main(["--iterations", "60", "--seed", "7"]), 0)


if __name__ == "__main__":
    unittest.main()
