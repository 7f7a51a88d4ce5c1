//! The hand-written declarations in src/sys.rs against capi/frugal.h: every exported function
//! is declared and every enum constant has the header's value. Catches drift when the header
//! grows (skips when the crate is built outside the frugal source tree).
use std::path::Path;

fn read(rel: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).ok()
}

/// `NAME = value` pairs of the header's enums (FRUGAL_ prefix, integer values).
fn header_constants(h: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let bytes = h.as_bytes();
    let mut i = 0;
    while let Some(pos) = h[i..].find("FRUGAL_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &h[start..end];
        let rest = h[end..].trim_start();
        i = end;
        if !rest.starts_with('=') || rest.starts_with("==") {
            continue;
        }
        let rest = rest[1..].trim_start();
        let num: String = rest
            .chars()
            .enumerate()
            .take_while(|(k, c)| c.is_ascii_digit() || (*k == 0 && *c == '-'))
            .map(|(_, c)| c)
            .collect();
        if let Ok(v) = num.parse::<i64>() {
            out.push((name.to_string(), v));
        }
    }
    out
}

/// Names of the functions declared with FRUGAL_API.
fn header_functions(h: &str) -> Vec<String> {
    let mut out = Vec::new();
    for decl in h.split("FRUGAL_API").skip(1) {
        if let Some(paren) = decl.find('(') {
            let head = &decl[..paren];
            let name: String = head
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if name.starts_with("frugal_") {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn sys_declares_everything_the_header_exports() {
    let header = match read("../../capi/frugal.h") {
        Some(h) => h,
        None => {
            println!("SKIP: capi/frugal.h is not next to the crate");
            return;
        }
    };
    let sys = read("src/sys.rs").expect("src/sys.rs");
    let fns = header_functions(&header);
    assert!(fns.len() > 40, "found only {} functions in frugal.h", fns.len());
    let missing: Vec<&String> = fns.iter().filter(|f| !sys.contains(&format!("pub fn {}(", f))).collect();
    assert!(missing.is_empty(), "declared in frugal.h but not in src/sys.rs: {:?}", missing);

    let consts = header_constants(&header);
    assert!(consts.len() > 20, "found only {} constants in frugal.h", consts.len());
    let mut wrong = Vec::new();
    for (name, value) in &consts {
        let decl = sys.lines().find(|l| l.trim_start().starts_with(&format!("pub const {}:", name)));
        match decl {
            Some(l) if l.trim_end().ends_with(&format!("= {};", value)) => {}
            Some(l) => wrong.push(format!("{} = {} in the header, `{}` in sys.rs", name, value, l.trim())),
            None => wrong.push(format!("{} = {} missing from sys.rs", name, value)),
        }
    }
    assert!(wrong.is_empty(), "{:#?}", wrong);
}
