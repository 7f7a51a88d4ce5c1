"""Generation through the binding equals the shared greedy references of stories260K exactly."""
from __future__ import annotations

import array
import unittest

from _support import frugal, need_stories, reference, STORIES, tiny_model_path

from frugal.session import Generation


class GreedyReference(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = None

    def setUp(self):
        need_stories(self)
        if GreedyReference.model is None:
            # one thread: the results are the same and the suite stays fast on a busy machine
            GreedyReference.model = frugal.Model(STORIES, n_threads=1)
        self.ref = reference()

    @classmethod
    def tearDownClass(cls):
        if cls.model is not None:
            cls.model.close()

    def exact_session(self):
        """A greedy session whose KV cache keeps F32 values, as reference.json's forward pass did."""
        return self.model.session(temperature=0, kv_type="f32")

    def check_run(self, session, gen, want_ids, want_text):
        pieces = list(gen)
        self.assertEqual(gen.tokens, want_ids)
        self.assertEqual("".join(pieces), want_text)
        self.assertEqual(gen.text, want_text)
        self.assertEqual(gen.finish_reason, "length")
        self.assertTrue(all(isinstance(p, str) and p for p in pieces))

    def test_first_prompt(self):
        p = self.ref["prompts"][0]
        with frugal.Model(STORIES) as m, m.session(temperature=0, kv_type="f32") as s:  # default threads
            gen = s.generate(p["prompt"], max_tokens=len(p["generated_ids"]))
            # the prompt is evaluated by generate() itself, before any iteration
            self.assertEqual(s.n_past, len(p["prompt_ids"]))
            self.check_run(s, gen, p["generated_ids"], p["generated_text"])
            # the last sampled token is evaluated lazily, by the next call that needs it
            self.assertEqual(s.n_past, len(p["prompt_ids"]) + len(p["generated_ids"]) - 1)

    def test_all_prompts(self):
        s = self.exact_session()
        for p in self.ref["prompts"]:
            with self.subTest(prompt=p["prompt"]):
                s.reset()
                self.assertEqual(self.model.tokenize(p["prompt"]), p["prompt_ids"])
                gen = s.generate(p["prompt"], max_tokens=len(p["generated_ids"]))
                self.check_run(s, gen, p["generated_ids"], p["generated_text"])
        s.close()

    def test_prompt_tokens(self):
        p = self.ref["prompts"][1]
        s = self.exact_session()
        gen = s.generate(p["prompt_ids"], max_tokens=len(p["generated_ids"]))
        self.check_run(s, gen, p["generated_ids"], p["generated_text"])

    def test_greedy_from_bos(self):
        r = self.ref["greedy_from_bos"]
        s = self.exact_session()
        s.prompt_tokens(r["prompt_ids"])
        gen = s.generate(max_tokens=r["steps"])
        text = gen.read()
        self.assertEqual(gen.tokens, r["generated_ids"])
        self.assertEqual(text, r["text"])
        # an empty text prompt is BOS alone
        s.reset()
        again = s.generate("", max_tokens=r["steps"])
        self.assertEqual(again.read(), r["text"])
        self.assertEqual(again.tokens, r["generated_ids"])

    def test_split_reasoning_without_tags_is_content(self):
        p = self.ref["prompts"][0]
        s = self.model.session(temperature=0)
        gen = s.generate(p["prompt"], max_tokens=len(p["generated_ids"]), split_reasoning=True)
        parts = list(gen)
        self.assertTrue(parts)
        self.assertEqual({part.kind for part in parts}, {"content"})
        self.assertEqual("".join(part.text for part in parts), p["generated_text"])
        self.assertEqual(gen.tokens, p["generated_ids"])
        self.assertEqual(gen.reasoning, "")

    def test_reasoning_prompt_yields_only_reasoning(self):
        s = self.model.session(temperature=0)
        gen = s.generate("<think>\nOnce upon a time", max_tokens=48, split_reasoning=True)
        parts = list(gen)
        self.assertGreater(len(parts), 10)
        for part in parts:
            self.assertIsInstance(part, frugal.Piece)
            self.assertEqual(part.kind, "reasoning", part)
            self.assertTrue(part.text)
        self.assertEqual(len(gen.tokens), 48)
        self.assertEqual(gen.text, "")
        self.assertEqual(gen.reasoning, "".join(p.text for p in parts))
        # the same tokens as the plain stream of the same prompt
        s.reset()
        plain = s.generate("<think>\nOnce upon a time", max_tokens=48)
        plain_text = plain.read()
        self.assertEqual(plain.tokens, gen.tokens)
        self.assertEqual(plain_text.lstrip(), gen.reasoning.lstrip())

    def test_generation_resumes_and_max_tokens(self):
        p = self.ref["prompts"][0]
        s = self.exact_session()
        first = s.generate(p["prompt"], max_tokens=10)
        a = first.read()
        second = s.generate(max_tokens=len(p["generated_ids"]) - 10)
        b = second.read()
        self.assertEqual(first.tokens + second.tokens, p["generated_ids"])
        self.assertEqual(a + b, p["generated_text"])
        self.assertEqual(list(s.generate(max_tokens=0)), [])

    def test_sampling_is_seeded(self):
        p = self.ref["prompts"][0]
        params = dict(temperature=1.0, top_k=40, top_p=0.9, min_p=0.0, seed=1234)
        s = self.model.session(**params)
        a = s.generate(p["prompt"], max_tokens=40)
        a.read()
        s.reset()  # reseeds with the session's seed
        b = s.generate(p["prompt"], max_tokens=40)
        b.read()
        c = self.model.session(**params).generate(p["prompt"], max_tokens=40)
        c.read()
        self.assertEqual(len(a.tokens), 40)
        self.assertEqual(a.tokens, b.tokens)
        self.assertEqual(a.tokens, c.tokens)

    def test_logits(self):
        r = self.ref
        s = self.exact_session()
        self.assertIsNone(s.logits())
        s.prompt_tokens([self.model.bos])
        logits = s.logits()
        self.assertIsInstance(logits, array.array)
        self.assertEqual(len(logits), self.model.n_vocab)
        want = r.get("logits_first_8_pos")
        if want:
            for a, b in zip(logits, want[0]):
                self.assertAlmostEqual(a, b, delta=1e-4)
        argmax = max(range(len(logits)), key=logits.__getitem__)
        self.assertEqual(argmax, r["greedy_from_bos"]["generated_ids"][0])
        # after a token was yielded, the logits are those it was drawn from
        gen = s.generate(max_tokens=1)
        gen.read()
        self.assertEqual(gen.tokens, [argmax])
        self.assertEqual(list(s.logits()), list(logits))

    def test_chat_applies_template(self):
        s = self.model.session(temperature=0)
        gen = s.chat([{"role": "user", "content": "Hi"}], max_tokens=8, format="deepseek-r1", split_reasoning=True)
        parts = list(gen)
        # the R1 opening ends in "<think>\n": the story that follows is reasoning
        self.assertTrue(parts)
        self.assertEqual({p.kind for p in parts}, {"reasoning"})
        text = self.model.tokenizer().apply_chat_template([("user", "Hi")], format="deepseek-r1")
        self.assertTrue(text.startswith("<s>"))
        # the rendered BOS text is the BOS: no second one is added
        self.assertEqual(s.n_past, len(self.model.tokenize(text, add_special=False)) + 8 - 1)


class SplitAccounting(unittest.TestCase):
    """How generate(split_reasoning=True) counts tokens, with the C calls scripted: a token whose
    text is both reasoning and content arrives in two frugal_session_next_part calls with the
    same id, and only the first sampled it (the second leaves n_past unchanged)."""

    # (status, token, kind, text, n_past after the call), as libfrugal would return them
    SCRIPT = [
        (0, 10, 1, "a", 5),   # first sample after the prompt: nothing pending, n_past unchanged
        (0, 11, 1, "b", 6),   # evaluates 10, samples 11 (text: "b</think>c")
        (0, 11, 0, "c", 6),   # the rest of 11, no sampling
        (0, 12, 0, "d", 7),
        (0, 2, 0, "e", 8),    # end of generation (id 2): what was held comes out ...
        (1, 2, 0, "", 8),     # ... the last part with FRUGAL_DONE
    ]

    class FakeSession:
        def __init__(self, tok_h):
            self._tok_h = tok_h
            self._fresh = True
            self._last_n_past = -1
            self.n_past = 5

    def play(self, max_tokens_list):
        tok = frugal.Tokenizer(tiny_model_path())  # end-of-generation checks: id 2 is </s>
        s = self.FakeSession(tok._handle())
        script = iter(self.SCRIPT)

        def call(fn, tok_ref, kind_ref):
            st, token, kind, text, n_past = next(script)
            tok_ref._obj.value, kind_ref._obj.value, s.n_past = token, kind, n_past
            return st, text

        gens = []
        for max_tokens in max_tokens_list:
            gen = Generation(s, max_tokens, True)
            gen._call = call
            gens.append((gen, list(gen)))
        return gens

    def test_one_generation(self):
        [(gen, parts)] = self.play([None])
        self.assertEqual([(p.kind, p.text, p.token) for p in parts],
                         [("reasoning", "a", 10), ("reasoning", "b", 11), ("content", "c", 11),
                          ("content", "d", 12), ("content", "e", 2)])
        self.assertEqual(gen.tokens, [10, 11, 12])
        self.assertEqual((gen.finish_reason, gen.stop_token), ("stop", 2))
        self.assertEqual((gen.reasoning, gen.text), ("ab", "cde"))

    def test_max_tokens_between_two_parts_of_a_token(self):
        [(g1, p1), (g2, p2)] = self.play([2, None])
        self.assertEqual((g1.tokens, g1.finish_reason), ([10, 11], "length"))
        self.assertEqual([p.text for p in p1], ["a", "b"])
        # the rest of token 11 comes first in the next generation and is not counted again
        self.assertEqual([p.text for p in p2], ["c", "d", "e"])
        self.assertEqual((g2.tokens, g2.finish_reason), ([12], "stop"))


class TinyModel(unittest.TestCase):
    """Runs without the shared data: a random-weight model written by tiny_gguf.py."""

    def test_properties(self):
        with frugal.Model(tiny_model_path(), n_threads=1) as m:
            self.assertEqual(m.architecture, "llama")
            self.assertEqual(m.name, "tiny-llama")
            self.assertEqual(m.n_vocab, 278)
            self.assertEqual(m.n_ctx_train, 64)
            self.assertEqual((m.n_embd, m.n_layers, m.n_heads, m.n_heads_kv), (8, 1, 2, 1))
            self.assertEqual((m.bos, m.eos), (1, 2))
            self.assertTrue(m.is_eog(2))
            self.assertFalse(m.is_eog(5))
            self.assertEqual((m.n_experts, m.n_experts_used), (0, 0))
            self.assertGreater(m.n_params, 0)
            self.assertGreater(m.size_bytes, 0)
            self.assertGreater(m.kv_bytes_per_token, 0)
            md = m.metadata
            self.assertEqual(md["general.architecture"], "llama")
            self.assertEqual(md["llama.block_count"], "1")
            self.assertIn("tiny-llama", repr(m))
            s = m.session(n_ctx=32)
            self.assertEqual(s.n_ctx, 32)
            self.assertEqual(s.n_past, 0)
            self.assertEqual(s.kv_bytes, 32 * m.kv_bytes_per_token)
            self.assertEqual(s.kv_type, "f16")  # the default; kv_bytes_per_token is its cost
            s32 = m.session(n_ctx=32, kv_type="f32")
            self.assertEqual(s32.kv_type, "f32")
            self.assertEqual(s32.kv_bytes, 2 * s.kv_bytes)
            with self.assertRaises(ValueError):
                m.session(kv_type="q4_0")
            # Q8_0 caches need heads in whole blocks of 32: this model's are 4 wide.
            with self.assertRaisesRegex(frugal.InvalidArgument, "q8_0.*are 4"):
                m.session(kv_type="q8_0")
            self.assertIn("n_ctx=32", repr(s))

    def test_generate_is_deterministic(self):
        m = frugal.Model(tiny_model_path(), n_threads=1, use_mmap=False)
        a = m.session(temperature=0).generate("the cat", max_tokens=12)
        b = m.session(temperature=0).generate("the cat", max_tokens=12)
        self.assertEqual(a.read(), b.read())
        self.assertEqual(a.tokens, b.tokens)
        self.assertEqual(len(a.tokens), 12)
        # The options struct's appended fields reach the library intact (a misplaced field would
        # be refused as out of range): weights in place give the same tokens.
        in_place = frugal.Model(tiny_model_path(), n_threads=1, repack_weights=False)
        c = in_place.session(temperature=0).generate("the cat", max_tokens=12)
        self.assertEqual(c.read(), a.read())

    def test_progress_callback(self):
        seen = []
        frugal.Model(tiny_model_path(), progress=seen.append)
        self.assertTrue(seen)
        self.assertAlmostEqual(seen[-1], 1.0)
        self.assertEqual(seen, sorted(seen))

    def test_log_callback(self):
        got = []
        frugal.set_log_callback(lambda level, msg: got.append((level, msg)), "warn")
        try:
            m = frugal.Model(tiny_model_path(), n_threads=1)
            m.session(n_ctx=128)  # larger than the training context (64): a warning
        finally:
            frugal.set_log_callback(None)
        self.assertTrue(any(level == frugal.LOG_WARN and "128" in msg for level, msg in got), got)

    def test_version(self):
        self.assertEqual(frugal.library_version[:2], frugal.header_version[:2])
        self.assertEqual(frugal.version(), "%d.%d.%d" % frugal.library_version)


if __name__ == "__main__":
    unittest.main()
