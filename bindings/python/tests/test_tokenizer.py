"""Tokenizers from GGUF files and Hugging Face folders, and chat templates."""
from __future__ import annotations

import json
import os
import unittest

from _support import DEEPSEEK_V3_TOKENIZER, frugal, need_stories, reference, STORIES, tiny_model_path


class StoriesTokenizer(unittest.TestCase):
    def setUp(self):
        need_stories(self)

    def test_round_trip(self):
        ref = reference()
        for source in ("model", "file"):
            with self.subTest(source=source):
                if source == "model":
                    with frugal.Model(STORIES, n_threads=1) as m:
                        tok = m.tokenizer()  # outlives the Model object
                else:
                    tok = frugal.Tokenizer(STORIES)  # the vocabulary alone, no weights
                self.assertEqual(tok.n_vocab, 512)
                self.assertEqual((tok.bos, tok.eos), (1, 2))
                self.assertTrue(tok.is_eog(2))
                self.assertEqual(tok.chat_format, "none")
                for p in ref["prompts"]:
                    ids = tok.encode(p["prompt"])
                    self.assertEqual(ids, p["prompt_ids"])
                    self.assertEqual(tok.decode(ids), p["prompt"])
                    self.assertEqual(tok.encode(p["prompt"], add_special=False), p["prompt_ids"][1:])
                    self.assertEqual(tok.decode(p["generated_ids"]), p["generated_text"].lstrip(" "))
                text = "Héllo wörld, 猫 🐈!\n\ttabs"
                self.assertEqual(tok.decode(tok.encode(text)), text)
                self.assertEqual(tok.decode(tok.encode(text.encode("utf-8"))), text)
                self.assertEqual(tok.decode_bytes(tok.encode(text)), text.encode("utf-8"))
                # control tokens: rendered only with special=True, parsed only with parse_special
                self.assertEqual(tok.decode([1, 403], special=True), "<s> Once")
                self.assertEqual(tok.decode([1, 403]), "Once")
                self.assertEqual(tok.encode("<s>", add_special=False), [1])
                self.assertNotEqual(tok.encode("<s>", add_special=False, parse_special=False), [1])
                self.assertEqual(tok.token_to_piece(1), "<s>")
                tok.close()

    def test_half_characters_decode_with_replacement(self):
        tok = frugal.Tokenizer(STORIES)
        ids = tok.encode("猫", add_special=False)  # "▁" then three byte-fallback tokens
        self.assertEqual(len(ids), 4)
        self.assertEqual(tok.decode_bytes(ids), "猫".encode("utf-8"))
        self.assertEqual(tok.decode_bytes(ids[:2]), "猫".encode("utf-8")[:1])
        self.assertEqual(tok.decode(ids[:2]), "\ufffd")
        with self.assertRaises(UnicodeDecodeError):
            tok.decode(ids[:2], errors="strict")

    def test_r1_template_by_hand(self):
        tok = frugal.Tokenizer(STORIES)
        self.assertEqual(tok.apply_chat_template([{"role": "user", "content": "Hi"}], format="deepseek-r1"),
                         "<s><｜User｜>Hi<｜Assistant｜><think>\n")
        self.assertEqual(tok.apply_chat_template([("user", "Hi")], add_generation_prompt=False,
                                                 format="deepseek-r1"),
                         "<s><｜User｜>Hi")
        # a system prompt goes first; an earlier answer's reasoning is dropped, as DeepSeek's template
        # does (it keeps what follows </think>)
        self.assertEqual(tok.apply_chat_template([("system", "Be brief."), ("user", "Hi"),
                                                  ("assistant", "<think>\nhmm\n</think>\n\nHello!"),
                                                  ("user", "Bye")], format="deepseek-r1"),
                         "<s>Be brief.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜>"
                         "<｜User｜>Bye<｜Assistant｜><think>\n")
        self.assertEqual(tok.apply_chat_template([("user", "Hi")], format="chatml"),
                         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


class HuggingFaceTokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(os.path.join(DEEPSEEK_V3_TOKENIZER, "tokenizer.json")):
            raise unittest.SkipTest(f"shared tokenizer not found: {DEEPSEEK_V3_TOKENIZER} (set FRUGAL_SHARED_DIR)")
        cls.tok = frugal.Tokenizer(DEEPSEEK_V3_TOKENIZER)  # a 7.5 MB tokenizer.json: load it once

    @classmethod
    def tearDownClass(cls):
        cls.tok.close()

    def test_hello_world(self):
        self.assertEqual(self.tok.encode("Hello world"), [0, 19923, 2058])
        self.assertEqual(self.tok.encode("Hello world", add_special=False), [19923, 2058])
        self.assertEqual(self.tok.decode([0, 19923, 2058]), "Hello world")
        self.assertEqual(self.tok.decode([0, 19923, 2058], special=True), "<｜begin▁of▁sentence｜>Hello world")
        self.assertEqual(self.tok.chat_format, "deepseek-v3")
        self.assertEqual(self.tok.bos, 0)
        self.assertGreater(self.tok.n_vocab, 128000)

    def test_shared_cases(self):
        with open(os.path.join(DEEPSEEK_V3_TOKENIZER, "cases.jsonl"), encoding="utf-8") as f:
            cases = [json.loads(line) for line in f if line.strip()]
        self.assertGreater(len(cases), 10)
        for c in cases:
            with self.subTest(id=c["id"]):
                ids = self.tok.encode(c["text"], add_special=False)
                self.assertEqual(ids, c["ids"])
                self.assertEqual(self.tok.decode(ids, special=True), c.get("decoded", c["text"]))

    def test_v3_and_r1_templates(self):
        msgs = [("user", "Hi")]
        v3 = self.tok.apply_chat_template(msgs)
        self.assertEqual(v3, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>")
        r1 = self.tok.apply_chat_template(msgs, format="deepseek-r1")
        self.assertEqual(r1, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n")
        ids = self.tok.encode(r1, add_special=False)
        self.assertEqual(ids[0], self.tok.bos)
        self.assertEqual(self.tok.decode(ids, special=True), r1)


class TinyTokenizer(unittest.TestCase):
    def test_gguf_vocabulary_only(self):
        tok = frugal.Tokenizer(tiny_model_path())
        self.assertEqual(tok.n_vocab, 278)
        self.assertEqual(tok.encode("the cat"), [1, 276, 264, 259, 269])
        self.assertEqual(tok.decode(tok.encode("the cat")), "the cat")
        self.assertIn("n_vocab=278", repr(tok))


if __name__ == "__main__":
    unittest.main()
