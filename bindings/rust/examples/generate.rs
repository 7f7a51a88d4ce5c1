//! Streams a completion from a GGUF model through the safe Rust bindings.
//!
//!     cargo run --example generate -- MODEL.gguf [PROMPT] [-n N] [--temp T] [--seed S] [--chat]
//!
//! Without a prompt the model starts from BOS. `--temp` defaults to 0 (greedy, reproducible).
//! `--chat` sends the prompt as a user message through the model's chat template and streams
//! reasoning (R1 models' `<think>` part) to stderr and the answer to stdout. Ctrl-C is left to
//! the default handler; see `CancelHandle` for stopping a generation from another thread.
use std::io::Write;
use std::process::exit;

fn usage() -> ! {
    eprintln!("usage: generate MODEL.gguf [PROMPT] [-n N] [--temp T] [--seed S] [--chat]");
    exit(2);
}

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
    match value.as_ref().map(|v| v.parse::<T>()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("generate: {} needs a valid value", flag);
            usage()
        }
    }
}

fn run() -> frugal::Result<()> {
    let mut model_path: Option<String> = None;
    let mut prompt: Option<String> = None;
    let mut n_predict: usize = 64;
    let mut temp: f32 = 0.0;
    let mut seed: Option<u64> = None;
    let mut chat = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" => n_predict = parse("-n", args.next()),
            "--temp" => temp = parse("--temp", args.next()),
            "--seed" => seed = Some(parse("--seed", args.next())),
            "--chat" => chat = true,
            "-h" | "--help" => usage(),
            _ if model_path.is_none() => model_path = Some(a),
            _ if prompt.is_none() => prompt = Some(a),
            _ => usage(),
        }
    }
    let model_path = match model_path {
        Some(p) => p,
        None => usage(),
    };
    if let Err(e) = frugal::check_version() {
        eprintln!("generate: warning: {}", e);
    }

    let model = frugal::Model::load(&model_path)?;
    eprintln!(
        "generate: {} ({}), {} parameters, libfrugal {}",
        model.name(),
        model.architecture(),
        model.n_params(),
        frugal::version()
    );
    let mut session = model.session(0)?;
    session.set_temperature(temp)?;
    if let Some(s) = seed {
        session.set_seed(s)?;
    }
    let prompt = prompt.unwrap_or_default();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();

    if chat {
        let tokenizer = model.tokenizer()?;
        if tokenizer.chat_format() == "none" {
            // A base model (stories260K): no template, the prompt goes in as text.
            eprintln!("generate: the model has no chat template; sending the prompt as is");
            session.prompt(&prompt)?;
        } else {
            let text = tokenizer.apply_chat_template(&[frugal::ChatMessage::user(&prompt)], true)?;
            session.prompt(&text)?;
        }
        for part in session.parts(n_predict) {
            let part = part?;
            match part.kind {
                frugal::Kind::Reasoning => {
                    let mut e = stderr.lock();
                    let _ = e.write_all(part.text.as_bytes());
                    let _ = e.flush();
                }
                frugal::Kind::Content => {
                    let mut o = stdout.lock();
                    let _ = o.write_all(part.text.as_bytes());
                    let _ = o.flush();
                }
            }
        }
    } else {
        if prompt.is_empty() {
            match model.token_bos() {
                Some(bos) => session.prompt_tokens(&[bos])?,
                None => session.prompt("")?,
            }
        } else {
            session.prompt(&prompt)?;
        }
        let mut out = stdout.lock();
        let _ = out.write_all(prompt.as_bytes());
        for token in session.tokens(n_predict) {
            let _ = out.write_all(token?.text.as_bytes());
            let _ = out.flush();
        }
    }
    println!();
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("generate: {}", e);
        exit(1);
    }
}
