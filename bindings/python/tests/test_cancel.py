"""Session.cancel() from another thread stops a running call with Cancelled; the session stays usable."""
from __future__ import annotations

import threading
import time
import unittest

from _support import frugal, need_stories, reference, STORIES

DEADLINE_S = 30.0


class Canceller:
    """Calls session.cancel() in a loop on a thread of its own (a cancel that arrives while nothing
    runs is dropped by the library, so a single well-timed call would make a flaky test)."""

    def __init__(self, session):
        self.session = session
        self.stop = threading.Event()
        self.calls = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.session.cancel()
            self.calls += 1
            time.sleep(0.0002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class Cancel(unittest.TestCase):
    def setUp(self):
        need_stories(self)
        self.model = frugal.Model(STORIES, n_threads=1)
        self.ref = reference()

    def tearDown(self):
        self.model.close()

    def test_cancel_prompt(self):
        s = self.model.session(temperature=0)
        p = self.ref["prompts"][0]
        s.prompt(p["prompt"])
        before = s.n_past
        long_prompt = [403, 407, 261, 378] * 100  # 400 tokens: a prompt evaluation of several ms
        caught = None
        t0 = time.monotonic()
        with Canceller(s):
            while caught is None and time.monotonic() - t0 < DEADLINE_S:
                try:
                    s.prompt_tokens(long_prompt)
                except frugal.Cancelled as e:
                    caught = e
                    break
                s.reset()
                while True:  # the canceller may stop this one too; it leaves the session as it was
                    try:
                        s.prompt(p["prompt"])
                        break
                    except frugal.Cancelled:
                        self.assertEqual(s.n_past, 0)
        self.assertIsNotNone(caught, "no prompt evaluation was cancelled within %.0f s" % DEADLINE_S)
        self.assertEqual(caught.code, -6)
        self.assertIn("cancel", caught.message)
        # the session is as before the cancelled call: the greedy continuation is the reference
        self.assertEqual(s.n_past, before)
        gen = s.generate(max_tokens=len(p["generated_ids"]))
        self.assertEqual(gen.read(), p["generated_text"])
        self.assertEqual(gen.tokens, p["generated_ids"])

    def test_cancel_generation_and_resume(self):
        r = self.ref["greedy_from_bos"]
        s = self.model.session(temperature=0)
        t0 = time.monotonic()
        cancellations = 0
        while cancellations == 0 and time.monotonic() - t0 < DEADLINE_S:
            s.reset()
            gen = s.generate([self.model.bos], max_tokens=r["steps"])
            pieces = []
            with Canceller(s):
                while True:
                    try:
                        for piece in gen:
                            pieces.append(piece)
                        break
                    except frugal.Cancelled:
                        cancellations += 1  # iterating again resumes where it stopped
            self.assertEqual(gen.tokens, r["generated_ids"])
            self.assertEqual("".join(pieces), r["text"])
        self.assertGreater(cancellations, 0, "no generation step was cancelled within %.0f s" % DEADLINE_S)

    def test_cancel_when_idle_is_a_no_op(self):
        s = self.model.session(temperature=0)
        s.cancel()
        p = self.ref["prompts"][0]
        gen = s.generate(p["prompt"], max_tokens=8)
        s.cancel()
        self.assertEqual(gen.read(), self.model.detokenize(p["generated_ids"][:8]))


if __name__ == "__main__":
    unittest.main()
