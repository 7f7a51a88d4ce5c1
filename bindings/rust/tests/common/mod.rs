//! Helpers shared by the integration tests: where the team's shared data is, and a minimal
//! JSON reader for reference.json (no serde: the crate has no dependencies).
#![allow(dead_code, unused_macros)]

use std::path::{Path, PathBuf};

/// FRUGAL_SHARED_DIR, else ../../../shared relative to the crate (the repo's sibling `shared`).
pub fn shared_dir() -> PathBuf {
    match std::env::var("FRUGAL_SHARED_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// A file under shared/data, or None (the caller prints SKIP and returns).
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = shared_dir().join("data").join(rel);
    if p.exists() {
        Some(p)
    } else {
        None
    }
}

/// Returns from the test with a SKIP line when the shared file is missing.
macro_rules! require_shared {
    ($rel:expr) => {
        match common::shared_data($rel) {
            Some(p) => p,
            None => {
                println!("SKIP: {} is not available (set FRUGAL_SHARED_DIR)", $rel);
                return;
            }
        }
    };
}

pub struct Stories {
    pub gguf: PathBuf,
    pub reference: Json,
}

/// stories260K.gguf and its reference.json, or None.
pub fn stories() -> Option<Stories> {
    let gguf = shared_data("stories260K/stories260K.gguf")?;
    let refp = shared_data("stories260K/reference.json")?;
    let text = std::fs::read_to_string(&refp).expect("reading reference.json");
    let reference = Json::parse(&text).expect("parsing reference.json");
    Some(Stories { gguf, reference })
}

macro_rules! require_stories {
    () => {
        match common::stories() {
            Some(s) => s,
            None => {
                println!("SKIP: stories260K (shared/data/stories260K) is not available (set FRUGAL_SHARED_DIR)");
                return;
            }
        }
    };
}

/// The reference greedy continuation of BOS: (prompt ids, generated ids, text).
pub fn greedy_from_bos(st: &Stories) -> (Vec<i32>, Vec<i32>, String) {
    let g = st.reference.get("greedy_from_bos").expect("greedy_from_bos");
    (
        g.get("prompt_ids").unwrap().ids(),
        g.get("generated_ids").unwrap().ids(),
        g.get("text").unwrap().as_str().unwrap().to_string(),
    )
}

/// A JSON value. Numbers are kept as f64 (the ids are small integers).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        }
    }

    /// An array of token ids.
    pub fn ids(&self) -> Vec<i32> {
        self.as_array().expect("an array of ids").iter().map(|v| v.as_i64().expect("an integer id") as i32).collect()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("json: {} at byte {}", what, self.i))
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.i < self.s.len() && self.s[self.i] == c {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("expected '{}'", c as char))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        if self.i >= self.s.len() {
            return self.err("unexpected end");
        }
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.i < self.s.len() && self.s[self.i] == b'}' {
                    self.i += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value()?;
                    fields.push((k, v));
                    self.ws();
                    if self.i < self.s.len() && self.s[self.i] == b',' {
                        self.i += 1;
                        continue;
                    }
                    self.eat(b'}')?;
                    return Ok(Json::Object(fields));
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.i < self.s.len() && self.s[self.i] == b']' {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.i < self.s.len() && self.s[self.i] == b',' {
                        self.i += 1;
                        continue;
                    }
                    self.eat(b']')?;
                    return Ok(Json::Array(items));
                }
            }
            b'"' => Ok(Json::String(self.string()?)),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            self.err("unknown literal")
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
        match t.parse::<f64>() {
            Ok(n) => Ok(Json::Number(n)),
            Err(_) => {
                self.i = start;
                self.err("bad number")
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        if self.i + 4 > self.s.len() {
            return self.err("short \\u escape");
        }
        let t = std::str::from_utf8(&self.s[self.i..self.i + 4]).map_err(|_| "bad \\u escape".to_string())?;
        let v = u32::from_str_radix(t, 16).map_err(|_| format!("bad \\u escape at byte {}", self.i))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            if self.i >= self.s.len() {
                return self.err("unterminated string");
            }
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if self.i >= self.s.len() {
                        return self.err("unterminated escape");
                    }
                    let e = self.s[self.i];
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            std::char::from_u32(cp).unwrap_or('\u{FFFD}')
                        }
                        _ => return self.err("unknown escape"),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| "json: invalid UTF-8 in a string".to_string())
    }
}
