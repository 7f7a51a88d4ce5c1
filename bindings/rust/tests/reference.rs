//! Greedy generation through the bindings reproduces the reference of stories260K exactly
//! (shared/data/stories260K/reference.json, made with llama2.c), and handles can be dropped in
//! any order.
#[macro_use]
mod common;

use common::Json;
use frugal::{Kind, KvType, Model, Session, SessionOptions, Status, Token};

// A greedy session whose KV cache keeps F32 values, as the reference's forward pass did.
fn greedy(model: &Model, n_ctx: i32) -> Session {
    let mut s = model.session_with(&SessionOptions { n_ctx, kv_type: KvType::F32 }).expect("session");
    s.set_temperature(0.0).expect("temperature 0");
    s
}

fn collect(s: &mut Session, n: usize) -> (Vec<i32>, String) {
    let mut ids = Vec::new();
    let mut text = String::new();
    for t in s.tokens(n) {
        let t: Token = t.expect("token");
        ids.push(t.id);
        text.push_str(&t.text);
    }
    (ids, text)
}

#[test]
fn json_reader_handles_escapes_and_nesting() {
    let v =
        Json::parse(r#" {"a": [1, -2, 3.5e1], "b": "x\"\n\u00e9\ud83d\ude00", "c": {"d": null, "e": true}} "#).unwrap();
    assert_eq!(v.get("a").unwrap().as_array().unwrap().len(), 3);
    assert_eq!(v.get("a").unwrap().as_array().unwrap()[2], Json::Number(35.0));
    assert_eq!(v.get("b").unwrap().as_str().unwrap(), "x\"\n\u{e9}\u{1F600}");
    assert_eq!(v.get("c").unwrap().get("d"), Some(&Json::Null));
    assert!(Json::parse("[1,").is_err());
    assert!(Json::parse("{\"a\" 1}").is_err());
}

#[test]
fn greedy_prompt_matches_reference() {
    let st = require_stories!();
    let model = Model::load(&st.gguf).expect("load stories260K");
    assert_eq!(model.architecture(), "llama");
    assert_eq!(model.n_vocab(), 512);
    let prompts = st.reference.get("prompts").and_then(|p| p.as_array()).expect("prompts");
    assert!(!prompts.is_empty());
    // prompts[0] is the brief's check; the others (one with non-ASCII text) come along cheaply.
    for p in prompts {
        let prompt = p.get("prompt").and_then(|v| v.as_str()).expect("prompt");
        let prompt_ids = p.get("prompt_ids").expect("prompt_ids").ids();
        let want_ids = p.get("generated_ids").expect("generated_ids").ids();
        let want_text = p.get("generated_text").and_then(|v| v.as_str()).expect("generated_text");

        assert_eq!(model.tokenize(prompt, true, false).unwrap(), prompt_ids, "tokenize {:?}", prompt);
        let mut s = greedy(&model, 0);
        assert!(s.logits().is_empty(), "no logits before an evaluation");
        s.prompt(prompt).expect("prompt");
        assert_eq!(s.n_past() as usize, prompt_ids.len());
        assert_eq!(s.logits().len(), 512);
        let (ids, text) = collect(&mut s, want_ids.len());
        assert_eq!(ids, want_ids, "prompt {:?}", prompt);
        assert_eq!(text, want_text, "prompt {:?}", prompt);
        // Decoding the whole sequence gives prompt + continuation (decoding the continuation
        // alone would drop its leading space, as SentencePiece does at the start).
        let all: Vec<i32> = prompt_ids.iter().chain(ids.iter()).cloned().collect();
        assert_eq!(model.detokenize(&all, false).unwrap(), format!("{}{}", prompt, want_text));
    }
}

#[test]
fn greedy_from_bos_256_tokens_and_next_part() {
    let st = require_stories!();
    let (bos, want_ids, want_text) = common::greedy_from_bos(&st);
    let model = Model::load(&st.gguf).expect("load");
    assert_eq!(model.token_bos(), Some(bos[0]));

    // next() one by one.
    let mut s = greedy(&model, 0);
    s.prompt_tokens(&bos).unwrap();
    let mut ids = Vec::new();
    let mut text = String::new();
    while ids.len() < want_ids.len() {
        match s.next().expect("next") {
            Some(t) => {
                ids.push(t.id);
                text.push_str(&t.text);
            }
            None => break,
        }
    }
    assert_eq!(ids, want_ids);
    assert_eq!(text, want_text);

    // The same through next_part: all content, same text.
    s.reset().unwrap();
    assert_eq!(s.n_past(), 0);
    s.prompt_tokens(&bos).unwrap();
    let mut part_text = String::new();
    let mut part_ids = Vec::new();
    for p in s.parts(want_ids.len()) {
        let p = p.expect("part");
        assert_eq!(p.kind, Kind::Content);
        part_ids.push(p.token);
        part_text.push_str(&p.text);
    }
    assert_eq!(part_ids, want_ids);
    assert_eq!(part_text, want_text);

    // complete() and a clone of the model give the same.
    let model2 = model.clone();
    let mut s2 = greedy(&model2, 300);
    s2.prompt_tokens(&bos).unwrap();
    assert_eq!(s2.complete(want_ids.len()).unwrap(), want_text);
}

#[test]
fn reasoning_opened_by_the_prompt_comes_as_reasoning_parts() {
    let st = require_stories!();
    let model = Model::load(&st.gguf).expect("load");
    let prompt = "<think>\nOnce upon a time";
    let mut plain = greedy(&model, 0);
    plain.prompt(prompt).unwrap();
    let (_, want) = collect(&mut plain, 24);
    assert!(!want.is_empty());

    let mut s = greedy(&model, 0);
    s.prompt(prompt).unwrap();
    let mut text = String::new();
    for p in s.parts(24) {
        let p = p.unwrap();
        assert_eq!(p.kind, Kind::Reasoning, "{:?}", p);
        text.push_str(&p.text);
    }
    assert_eq!(text, want);
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let st = require_stories!();
    let model = Model::load(&st.gguf).expect("load");
    let run = |seed: u64| {
        let mut s = model.session(0).unwrap();
        s.set_temperature(1.0).unwrap();
        s.set_top_k(40).unwrap();
        s.set_top_p(0.9).unwrap();
        s.set_min_p(0.0).unwrap();
        s.set_repeat_penalty(1.1).unwrap();
        s.set_repeat_last_n(32).unwrap();
        s.set_seed(seed).unwrap();
        s.set_threads(1).unwrap();
        s.prompt("Once upon a time").unwrap();
        collect(&mut s, 32).0
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert!(!a.is_empty());
}

#[test]
fn model_dropped_before_its_sessions_and_tokenizer() {
    let st = require_stories!();
    let (bos, want_ids, _) = common::greedy_from_bos(&st);
    let model = Model::load(&st.gguf).expect("load");
    let mut s1 = greedy(&model, 0);
    let mut s2 = greedy(&model, 64);
    let tok = model.tokenizer().unwrap();
    let handle = s1.cancel_handle();
    drop(model); // the sessions and the tokenizer keep the weights alive
    for s in [&mut s1, &mut s2] {
        s.prompt_tokens(&bos).unwrap();
        assert_eq!(collect(s, 48).0, want_ids[..48].to_vec());
    }
    assert_eq!(tok.encode("Once upon a time", true, false).unwrap(), vec![1, 403, 407, 261, 378]);
    drop(s1);
    assert!(!handle.cancel(), "the handle does not keep its session alive");
    s2.reset().unwrap();
    s2.prompt_tokens(&bos).unwrap();
    assert_eq!(collect(&mut s2, 8).0, want_ids[..8].to_vec());
    drop(s2);
    assert!(!tok.decode(&want_ids[..8], false).unwrap().is_empty());
}

#[test]
fn model_metadata_and_getters() {
    let st = require_stories!();
    let model = Model::load(&st.gguf).expect("load");
    assert!(model.n_params() > 0);
    assert!(model.size_bytes() > 0);
    assert_eq!(model.n_layers(), 5);
    assert_eq!(model.n_heads(), 8);
    assert_eq!(model.n_heads_kv(), 4);
    assert_eq!(model.n_embd(), 64);
    assert_eq!(model.n_experts(), 0);
    assert!(model.kv_bytes_per_token() > 0);
    let eos = model.token_eos().expect("eos");
    assert!(model.token_is_eog(eos));
    let meta = model.metadata().unwrap();
    assert_eq!(meta.len() as i32, model.meta_count());
    let arch = meta.iter().find(|(k, _)| k == "general.architecture").expect("general.architecture");
    assert_eq!(arch.1, "llama");
    let s = model.session(32).unwrap();
    assert_eq!(s.n_ctx(), 32);
    assert_eq!(s.kv_type(), KvType::F16); // the default, whose cost kv_bytes_per_token gives
    assert_eq!(s.kv_bytes(), 32 * model.kv_bytes_per_token());
    let exact = model.session_with(&SessionOptions { n_ctx: 32, kv_type: KvType::F32 }).unwrap();
    assert_eq!(exact.kv_type(), KvType::F32);
    assert_eq!(exact.kv_bytes(), 2 * s.kv_bytes());
    // A Q8_0 cache needs heads in whole blocks of 32: this model's are 8 wide.
    let err = model.session_with(&SessionOptions { n_ctx: 32, kv_type: KvType::Q8_0 }).unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.message.contains("q8_0") && err.message.contains("are 8"), "{}", err.message);
    let dbg = format!("{:?} {:?}", model, s);
    assert!(dbg.contains("llama"), "{}", dbg);
}
