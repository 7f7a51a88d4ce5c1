//! Tokenizers loaded alone (a Hugging Face tokenizer.json folder) and from a model; chat templates.
#[macro_use]
mod common;

use frugal::{ChatMessage, Model, Tokenizer};

#[test]
fn deepseek_v3_tokenizer_from_a_folder() {
    let path = require_shared!("tokenizers/deepseek-v3");
    let tok = Tokenizer::load(&path).expect("load the deepseek-v3 tokenizer");
    assert_eq!(tok.encode("Hello world", true, false).unwrap(), vec![0, 19923, 2058]);
    assert_eq!(tok.encode("Hello world", false, false).unwrap(), vec![19923, 2058]);
    assert_eq!(tok.chat_format(), "deepseek-v3");
    assert_eq!(tok.token_bos(), Some(0));
    assert!(tok.n_vocab() > 100000, "n_vocab {}", tok.n_vocab());
    let eos = tok.token_eos().expect("eos");
    assert!(tok.token_is_eog(eos));
    assert_eq!(tok.decode(&[19923, 2058], false).unwrap(), "Hello world");

    // Longer than the first guess of the output buffer: the bindings grow it and retry.
    let long = "Once upon a time, there was a tokenizer. ".repeat(200);
    let ids = tok.encode(&long, false, false).unwrap();
    assert!(ids.len() > 100);
    assert_eq!(tok.decode(&ids, false).unwrap(), long);

    // Non-ASCII survives the round trip.
    let text = "Ünïcode ☃ and 中文, 🦀";
    assert_eq!(tok.decode(&tok.encode(text, false, false).unwrap(), false).unwrap(), text);

    // Control-token texts become tokens only with parse_special.
    let with = tok.encode("<｜begin▁of▁sentence｜>", false, true).unwrap();
    assert_eq!(with, vec![0]);
    let without = tok.encode("<｜begin▁of▁sentence｜>", false, false).unwrap();
    assert!(without.len() > 1, "{:?}", without);
    assert_eq!(tok.decode(&[0, 19923], true).unwrap(), "<｜begin▁of▁sentence｜>Hello");
    assert_eq!(tok.decode(&[0, 19923], false).unwrap(), "Hello");
}

#[test]
fn chat_template_renders_a_conversation() {
    let path = require_shared!("tokenizers/deepseek-v3");
    let tok = Tokenizer::load(&path).unwrap();
    let msgs = [
        ChatMessage::system("You are terse."),
        ChatMessage::user("Why is the sky blue?"),
        ChatMessage::assistant("Rayleigh scattering."),
        ChatMessage::user("And sunsets?"),
    ];
    let text = tok.apply_chat_template(&msgs, true).unwrap();
    assert!(text.starts_with("<｜begin▁of▁sentence｜>You are terse."), "{:?}", text);
    assert!(text.contains("<｜User｜>Why is the sky blue?<｜Assistant｜>Rayleigh scattering."), "{:?}", text);
    assert!(text.ends_with("<｜User｜>And sunsets?<｜Assistant｜>"), "{:?}", text);
    let no_gen = tok.apply_chat_template(&msgs, false).unwrap();
    assert!(!no_gen.ends_with("<｜Assistant｜>"), "{:?}", no_gen);
    // Forcing a format by name; the same as the tokenizer's own for its own name.
    assert_eq!(tok.apply_chat_template_as("deepseek-v3", &msgs, true).unwrap(), text);
    let chatml = tok.apply_chat_template_as("chatml", &[ChatMessage::user("hi")], true).unwrap();
    assert!(chatml.contains("<|im_start|>user\nhi<|im_end|>"), "{:?}", chatml);

    // A long conversation: larger than the first buffer guess.
    let long = "word ".repeat(5000);
    let msgs = [ChatMessage::user(&long)];
    let text = tok.apply_chat_template(&msgs, true).unwrap();
    assert!(text.contains(&long));
}

#[test]
fn tokenizer_shared_across_threads() {
    let path = require_shared!("tokenizers/deepseek-v3");
    let tok = Tokenizer::load(&path).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let tok = tok.clone();
            std::thread::spawn(move || {
                let text = format!("Hello world {}", i);
                let ids = tok.encode(&text, false, false).unwrap();
                assert_eq!(tok.decode(&ids, false).unwrap(), text);
                ids[..2].to_vec()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), vec![19923, 2058]);
    }
}

#[test]
fn model_tokenizer_matches_the_reference_prompts() {
    let st = require_stories!();
    let model = Model::load(&st.gguf).unwrap();
    let tok = model.tokenizer().unwrap();
    assert_eq!(tok.n_vocab(), model.n_vocab());
    assert_eq!(tok.token_bos(), model.token_bos());
    for p in st.reference.get("prompts").and_then(|p| p.as_array()).unwrap() {
        let prompt = p.get("prompt").and_then(|v| v.as_str()).unwrap();
        let want = p.get("prompt_ids").unwrap().ids();
        assert_eq!(tok.encode(prompt, true, false).unwrap(), want, "{:?}", prompt);
        assert_eq!(tok.decode(&want, false).unwrap(), prompt);
    }
    // A tokenizer loaded from the GGUF file alone encodes the same.
    let alone = Tokenizer::load(&st.gguf).unwrap();
    assert_eq!(alone.encode("Once upon a time", true, false).unwrap(), vec![1, 403, 407, 261, 378]);
}
