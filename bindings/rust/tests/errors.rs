//! Failures come back as `Error { status, message }` with the library's message.
#[macro_use]
mod common;

use frugal::{ChatMessage, Model, Status, Tokenizer};

#[test]
fn missing_model_file_is_io_and_names_the_path() {
    let path = "/nonexistent-frugal-dir/no-such-model.gguf";
    let e = Model::load(path).expect_err("a missing file must fail");
    assert_eq!(e.status, Status::Io, "{}", e);
    assert!(e.message.contains(path), "message {:?} should name the path", e.message);
    // Display and std::error::Error.
    let shown = format!("{}", e);
    assert!(shown.contains(path), "{}", shown);
    let boxed: Box<dyn std::error::Error> = Box::new(e.clone());
    assert_eq!(boxed.to_string(), shown);

    let e = Tokenizer::load(path).expect_err("a missing tokenizer must fail");
    assert_eq!(e.status, Status::Io, "{}", e);
    assert!(e.message.contains(path), "{}", e.message);
}

#[test]
fn a_path_with_a_nul_byte_is_invalid() {
    let e = Model::load("bad\0path.gguf").expect_err("NUL in a path");
    assert_eq!(e.status, Status::InvalidArgument);
}

#[test]
fn a_file_that_is_not_gguf_is_invalid_model() {
    let dir = std::env::temp_dir().join(format!("frugal-rust-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("not-a-model.gguf");
    std::fs::write(&path, b"this is not a GGUF file, just some bytes to fail on").unwrap();
    let e = Model::load(&path).expect_err("garbage must fail");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(e.status, Status::InvalidModel, "{}", e);
    assert!(!e.message.is_empty());
}

#[test]
fn out_of_range_token_names_the_id() {
    let st = require_stories!();
    let model = Model::load(&st.gguf).unwrap();
    let mut s = model.session(0).unwrap();
    let e = s.prompt_tokens(&[1, 100000]).expect_err("id 100000 is out of range");
    assert_eq!(e.status, Status::InvalidArgument, "{}", e);
    assert!(e.message.contains("100000"), "message {:?} should name the id", e.message);
    assert_eq!(s.n_past(), 0, "nothing evaluated");
    let e = s.prompt_tokens(&[-3]).expect_err("negative id");
    assert!(e.message.contains("-3"), "{}", e.message);
    let e = model.detokenize(&[7, 512], false).expect_err("detokenize 512");
    assert!(e.message.contains("512"), "{}", e.message);
    // The session is still fine.
    s.prompt_tokens(&[1]).unwrap();
    assert_eq!(s.n_past(), 1);
}

#[test]
fn next_without_a_prompt_and_bad_params_are_invalid_arguments() {
    let st = require_stories!();
    let model = Model::load(&st.gguf).unwrap();
    let mut s = model.session(0).unwrap();
    assert_eq!(s.next().unwrap_err().status, Status::InvalidArgument);
    let e = s.set_top_p(2.0).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains('2'), "{}", e.message);
    assert_eq!(s.set_threads(0).unwrap_err().status, Status::InvalidArgument);
    assert_eq!(s.set_top_k(-1).unwrap_err().status, Status::InvalidArgument);
    // A float key given as an integer.
    assert_eq!(s.set_param_i64(frugal::Param::TEMPERATURE, 1).unwrap_err().status, Status::InvalidArgument);
    assert_eq!(model.session(-5).unwrap_err().status, Status::InvalidArgument);
}

#[test]
fn context_full() {
    let st = require_stories!();
    let (bos, want, _) = common::greedy_from_bos(&st);
    let model = Model::load(&st.gguf).unwrap();
    let n_ctx = 16;
    let mut s = model.session(n_ctx).unwrap();
    s.set_temperature(0.0).unwrap();
    // BOS + the first 9 reference tokens: the greedy continuation is the reference's.
    let mut prompt = bos.clone();
    prompt.extend_from_slice(&want[..9]);
    s.prompt_tokens(&prompt).unwrap();
    let mut got = Vec::new();
    let mut failure = None;
    for t in s.tokens(100) {
        match t {
            Ok(t) => got.push(t.id),
            Err(e) => failure = Some(e),
        }
    }
    let e = failure.expect("the context fills up");
    assert_eq!(e.status, Status::ContextFull, "{}", e);
    assert!(e.message.contains("16"), "message {:?} should name n_ctx", e.message);
    assert_eq!(got, want[9..9 + (n_ctx as usize - prompt.len())].to_vec());
    assert_eq!(s.n_past(), n_ctx);
    // A prompt longer than the context: nothing evaluated.
    let e = s.prompt_tokens(&[1]).unwrap_err();
    assert_eq!(e.status, Status::ContextFull);
    s.reset().unwrap();
    let long: Vec<i32> = std::iter::once(1).chain(want[..16].iter().cloned()).collect();
    let e = s.prompt_tokens(&long).unwrap_err();
    assert_eq!(e.status, Status::ContextFull);
    assert!(e.message.contains("17"), "{}", e.message);
    assert_eq!(s.n_past(), 0);
    // reset freed the positions.
    s.prompt_tokens(&prompt).unwrap();
    let t = s.next().unwrap().unwrap();
    assert_eq!(t.id, want[9]);
}

#[test]
fn chat_template_errors() {
    let path = require_shared!("tokenizers/deepseek-v3");
    let tok = Tokenizer::load(&path).unwrap();
    let e = tok.apply_chat_template(&[ChatMessage::new("robot", "hi")], true).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("robot"), "{}", e.message);
    let e = tok.apply_chat_template_as("no-such-format", &[ChatMessage::user("hi")], true).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    let e = tok.apply_chat_template(&[ChatMessage::new("us\0er", "hi")], true).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
}
