//! The log callback (process-wide, so in its own test binary) and the load progress callback.
#[macro_use]
mod common;

use std::sync::{Arc, Mutex};

use frugal::{LoadOptions, LogLevel, Model, Status};

#[test]
fn log_callback_then_progress_callback() {
    let st = require_stories!();

    // Log: the loader reports the model at INFO; DEBUG gets the GGUF summary too.
    let seen: Arc<Mutex<Vec<(LogLevel, String)>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        frugal::set_log_callback(LogLevel::Debug, move |level, msg| {
            seen.lock().unwrap().push((level, msg.to_string()));
        });
    }
    let model = Model::load(&st.gguf).unwrap();
    let got = seen.lock().unwrap().clone();
    assert!(
        got.iter().any(|(l, m)| *l == LogLevel::Info && m.contains("loader:")),
        "no INFO loader message in {:?}",
        got
    );
    assert!(got.iter().any(|(l, _)| *l == LogLevel::Debug), "no DEBUG message in {:?}", got);

    // A higher threshold filters; a panicking callback does not unwind into C.
    seen.lock().unwrap().clear();
    frugal::set_log_callback(LogLevel::Error, |_, _| panic!("must not be called below ERROR"));
    drop(Model::load(&st.gguf).unwrap());
    frugal::set_log_callback(LogLevel::Debug, |_, _| panic!("a panic in the log callback is swallowed"));
    drop(Model::load(&st.gguf).unwrap());
    frugal::clear_log_callback();
    drop(Model::load(&st.gguf).unwrap());
    assert!(seen.lock().unwrap().is_empty());
    drop(model);

    // Progress: fractions rise to 1; returning false cancels the load.
    let mut fractions = Vec::new();
    let m = Model::load_with(
        &st.gguf,
        LoadOptions::new().n_threads(1).use_mmap(false).repack_weights(false).progress(|f| {
            fractions.push(f);
            true
        }),
    )
    .unwrap();
    assert_eq!(m.n_vocab(), 512);
    assert!(!fractions.is_empty());
    assert_eq!(*fractions.last().unwrap(), 1.0);
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{:?}", fractions);

    let mut calls = 0;
    let e = Model::load_with(
        &st.gguf,
        LoadOptions::new().progress(|_| {
            calls += 1;
            false
        }),
    )
    .unwrap_err();
    assert_eq!(e.status, Status::Cancelled, "{}", e);
    assert_eq!(calls, 1);

    // A panic in the progress callback stops the load and comes back out of load_with.
    let r = std::panic::catch_unwind(|| {
        Model::load_with(&st.gguf, LoadOptions::new().progress(|_| panic!("progress panicked")))
    });
    let payload = r.expect_err("the panic is resumed");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"progress panicked"));

    // Bad options are the library's errors.
    let e = Model::load_with(&st.gguf, LoadOptions::new().n_threads(-1)).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
}
