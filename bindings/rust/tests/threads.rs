//! One Model shared by sessions on several threads; cancelling a session from another thread.
#[macro_use]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use frugal::{Model, Status};

#[test]
fn four_threads_share_one_model_and_agree() {
    let st = require_stories!();
    let p = &st.reference.get("prompts").and_then(|p| p.as_array()).unwrap()[0];
    let prompt = p.get("prompt").and_then(|v| v.as_str()).unwrap().to_string();
    let want_ids = p.get("generated_ids").unwrap().ids();
    let model = Model::load(&st.gguf).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let model = model.clone(); // a reference, not a copy of the weights
            let prompt = prompt.clone();
            let n = want_ids.len();
            thread::spawn(move || {
                let mut s = model.session(128).unwrap();
                s.set_temperature(0.0).unwrap();
                s.set_threads(1).unwrap();
                let mut out = Vec::new();
                // Three rounds each, so the threads overlap.
                for _ in 0..3 {
                    s.reset().unwrap();
                    s.prompt(&prompt).unwrap();
                    let ids: Vec<i32> = s.tokens(n).map(|t| t.unwrap().id).collect();
                    out.push(ids);
                }
                out
            })
        })
        .collect();
    drop(model); // the threads' clones keep it alive
    for h in handles {
        for ids in h.join().unwrap() {
            assert_eq!(ids, want_ids);
        }
    }
}

#[test]
fn a_session_moves_to_another_thread() {
    let st = require_stories!();
    let (bos, want, _) = common::greedy_from_bos(&st);
    let model = Model::load(&st.gguf).unwrap();
    let mut s = model.session(0).unwrap();
    s.set_temperature(0.0).unwrap();
    s.prompt_tokens(&bos).unwrap();
    let first = s.next().unwrap().unwrap();
    let s = thread::spawn(move || {
        let mut s = s;
        let second = s.next().unwrap().unwrap();
        (s, second.id)
    })
    .join()
    .unwrap();
    assert_eq!(first.id, want[0]);
    assert_eq!(s.1, want[1]);
    let mut s = s.0;
    assert_eq!(s.next().unwrap().unwrap().id, want[2]);
}

#[test]
fn cancel_from_another_thread() {
    let st = require_stories!();
    let (bos, want, want_text) = common::greedy_from_bos(&st);
    let model = Model::load(&st.gguf).unwrap();
    let mut s = model.session(0).unwrap();
    s.set_temperature(0.0).unwrap();
    s.set_threads(1).unwrap();
    // A long prompt: BOS + the 256 reference tokens + their first 200 again.
    let mut long: Vec<i32> = bos.clone();
    long.extend_from_slice(&want);
    long.extend_from_slice(&want[..200]);
    assert!(long.len() + 16 < s.n_ctx() as usize);

    // An idle cancel is a no-op.
    let handle = s.cancel_handle();
    assert!(handle.cancel());
    s.prompt_tokens(&bos).unwrap();
    s.reset().unwrap();

    // A second thread keeps cancelling until the main thread has seen a cancelled call.
    let stop = Arc::new(AtomicBool::new(false));
    let canceller = {
        let stop = stop.clone();
        let handle = handle.clone();
        thread::spawn(move || {
            let mut n: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                handle.cancel();
                n += 1;
                thread::sleep(Duration::from_micros(200 + (n * 7919 % 800)));
            }
            n
        })
    };
    let mut cancelled = None;
    let mut completed = 0;
    for _ in 0..500 {
        s.reset().unwrap();
        match s.prompt_tokens(&long) {
            Ok(()) => completed += 1,
            Err(e) => {
                assert_eq!(e.status, Status::Cancelled, "{}", e);
                assert_eq!(s.n_past(), 0, "a cancelled prompt evaluates nothing");
                cancelled = Some(e);
                break;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let n_cancels = canceller.join().unwrap();
    let e =
        cancelled.unwrap_or_else(|| panic!("no call was cancelled ({} completed, {} cancels)", completed, n_cancels));
    assert!(!e.message.is_empty());
    println!("cancelled after {} completed prompts and {} cancel calls: {}", completed, n_cancels, e);

    // The session stays usable: the reference greedy continuation after a reset.
    s.reset().unwrap();
    s.prompt_tokens(&bos).unwrap();
    let mut ids = Vec::new();
    let mut text = String::new();
    for t in s.tokens(want.len()) {
        let t = t.unwrap();
        ids.push(t.id);
        text.push_str(&t.text);
    }
    assert_eq!(ids, want);
    assert_eq!(text, want_text);

    // The handle outlives nothing: after the session is dropped it reports so.
    drop(s);
    assert!(!handle.cancel());
}
