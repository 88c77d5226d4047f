//! The canonical form of a JSON body, for the JSON-canonical fingerprint:
//! the same document with other key order or whitespace has one form.
//!
//! The form: no whitespace; object members sorted by key (bytewise on the
//! UTF-8 of the unescaped key, stable for duplicate keys); strings with the
//! shortest escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u00XX` for the
//! other control characters, everything else as UTF-8); numbers and literals
//! exactly as written, so `1`, `1.0` and `1e0` stay three different numbers
//! (they compare as text, never as floats).

use std::borrow::Cow;

/// Nesting deeper than this is not treated as JSON (the body is then
/// fingerprinted as raw bytes), so a hostile body cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// The canonical form of `body`, or `None` if it is not a JSON text.
pub(crate) fn canonicalize(body: &[u8]) -> Option<Vec<u8>> {
    let mut parser = Parser {
        bytes: body,
        pos: 0,
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != body.len() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    value.write(&mut out);
    Some(out)
}

enum Value<'a> {
    /// A number, `true`, `false` or `null`, as written.
    Literal(&'a [u8]),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl Value<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Literal(text) => out.extend_from_slice(text),
            Value::String(text) => write_string(text, out),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Value::Object(members) => {
                let mut sorted: Vec<_> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push(b'{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(key, out);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1F => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xF)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::String),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Option<Value<'a>> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| {
            self.pos = end;
            Value::Literal(word)
        })
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, kept as text.
    fn number(&mut self) -> Option<Value<'a>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(Value::Literal(&self.bytes[start..self.pos]))
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.pos;
        // Fast path: no escapes, borrowed.
        loop {
            match self.next()? {
                b'"' => {
                    let raw = &self.bytes[start..self.pos - 1];
                    return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
                }
                b'\\' => break,
                0x00..=0x1F => return None,
                _ => {}
            }
        }
        // Slow path: unescape from the start.
        self.pos = start;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).ok().map(Cow::Owned),
                b'\\' => {
                    let escaped = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1F => return None,
                byte => out.push(byte),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let text = self.bytes.get(self.pos..self.pos + 4)?;
        let text = std::str::from_utf8(text).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(text, 16).ok()
    }

    /// After `\u`: one code point, joining a surrogate pair. A lone surrogate
    /// is not valid text, so the body is not treated as JSON.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            self.expect(b'\\')?;
            self.expect(b'u')?;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return None;
            }
            char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
        } else {
            char::from_u32(first)
        }
    }

    fn array(&mut self, depth: usize) -> Option<Value<'a>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Some(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b']' => return Some(Value::Array(items)),
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value<'a>> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Some(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b'}' => return Some(Value::Object(members)),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> Option<String> {
        canonicalize(text.as_bytes()).map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = canon(r#"{"b": 1, "a": {"y": [1, 2], "x": null}}"#);
        let b = canon("{\n  \"a\":{\"x\":null,\"y\":[1,2]},\r\n\t\"b\":1 }");
        assert_eq!(a, b);
        assert_eq!(a.unwrap(), r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
    }

    #[test]
    fn array_order_and_values_matter() {
        assert_ne!(canon("[1,2]"), canon("[2,1]"));
        assert_ne!(canon(r#"{"a":1}"#), canon(r#"{"a":2}"#));
    }

    #[test]
    fn numbers_compare_as_text() {
        assert_ne!(canon("1"), canon("1.0"));
        assert_ne!(canon("100"), canon("1e2"));
        // Beyond f64 precision, still exact.
        assert_ne!(
            canon("12345678901234567890123"),
            canon("12345678901234567890124")
        );
        assert_eq!(canon("-0.5e-3").unwrap(), "-0.5e-3");
    }

    #[test]
    fn strings_are_unescaped_and_escaped_one_way() {
        assert_eq!(canon(r#""\u00e9\/""#), canon(r#""é/""#));
        assert_eq!(canon(r#""\u0041""#).unwrap(), r#""A""#);
        assert_eq!(canon(r#""\ud83d\ude00""#).unwrap(), "\"😀\"");
        assert_eq!(canon(r#""a\u0001\n""#).unwrap(), r#""a\u0001\n""#);
        // Escaped and literal keys sort and compare alike.
        assert_eq!(canon(r#"{"\u0062":1,"a":2}"#), canon(r#"{"a":2,"b":1}"#));
    }

    #[test]
    fn not_json_is_refused() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "\"abc",
            "\"a\u{1}\"",
            "{\"a\" 1}",
            "[1] x",
            "\"\\ud800\"",
            "\"\\x\"",
            "{1:2}",
            "nul",
        ] {
            assert_eq!(canon(text), None, "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(canon(&deep), None);
        let fine = "[".repeat(100) + &"]".repeat(100);
        assert!(canon(&fine).is_some());
    }

    /// Differential: against `serde_json`, over documents it generates.
    mod against_serde_json {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{Map, Number, Value as Json};

        /// Any JSON value whose numbers are exactly representable (integers
        /// that fit 64 bits, and binary fractions), so `serde_json` reads
        /// every number back as written.
        fn json() -> impl Strategy<Value = Json> {
            let number = prop_oneof![
                any::<i64>().prop_map(Number::from),
                any::<u64>().prop_map(Number::from),
                (-1000i32..1000, 0u32..8).prop_map(|(m, e)| {
                    Number::from_f64(f64::from(m) / f64::from(1u32 << e)).expect("a finite float")
                }),
            ];
            let leaf = prop_oneof![
                Just(Json::Null),
                any::<bool>().prop_map(Json::Bool),
                number.prop_map(Json::Number),
                any::<String>().prop_map(Json::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                    prop::collection::btree_map(any::<String>(), inner, 0..6).prop_map(|members| {
                        Json::Object(members.into_iter().collect::<Map<_, _>>())
                    }),
                ]
            })
        }

        /// `value` written another way: members in reverse order, whitespace
        /// around every token, every non-ASCII character and `/` escaped.
        fn rewritten(value: &Json, out: &mut String) {
            match value {
                Json::Array(items) => {
                    out.push_str("[ ");
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(" ,\n");
                        }
                        rewritten(item, out);
                    }
                    out.push_str("\t]");
                }
                Json::Object(members) => {
                    out.push_str("{\r\n");
                    for (i, (key, item)) in members.iter().rev().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        escaped(key, out);
                        out.push_str(" : ");
                        rewritten(item, out);
                    }
                    out.push_str(" }");
                }
                Json::String(text) => escaped(text, out),
                other => out.push_str(&other.to_string()),
            }
        }

        fn escaped(text: &str, out: &mut String) {
            out.push('"');
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '/' => out.push_str("\\/"),
                    ' '..='~' => out.push(c),
                    _ => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                }
            }
            out.push('"');
        }

        proptest! {
            #[test]
            fn the_same_value_written_two_ways_canonicalises_alike(value in json()) {
                let compact = serde_json::to_string(&value).unwrap();
                let mut other = String::new();
                rewritten(&value, &mut other);
                prop_assert_eq!(serde_json::from_str::<Json>(&other).unwrap(), value.clone());
                let canonical = canon(&compact).expect("serde_json's JSON is JSON");
                prop_assert_eq!(Some(canonical.clone()), canon(&other));
                // The canonical form is JSON of the same value, and a fixed point.
                prop_assert_eq!(serde_json::from_str::<Json>(&canonical).unwrap(), value);
                prop_assert_eq!(canon(&canonical), Some(canonical));
            }

            #[test]
            fn different_values_never_canonicalise_alike(a in json(), b in json()) {
                prop_assume!(a != b);
                let a = canon(&serde_json::to_string(&a).unwrap());
                let b = canon(&serde_json::to_string(&b).unwrap());
                prop_assert_ne!(a, b);
            }
        }
    }
}
