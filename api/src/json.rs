//! JSON with the spec's separators: `{"a": 1, "b": [1, 2]}`, as Python's
//! `json.dumps` writes it, which is what SPEC.md shows byte for byte.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// serde_json formatter writing `": "` between key and value and `", "`
/// between elements, on one line.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecFormatter;

impl Formatter for SpecFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Serialise `value` with [`SpecFormatter`].
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SpecFormatter);
    // Serialising plain data (strings, numbers, vectors, derived structs)
    // into memory cannot fail; fall back to an empty object if a caller ever
    // passes a type whose Serialize impl errors.
    if value.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"{}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_match_python_json_dumps() {
        let value =
            serde_json::json!({"message": {"N": 3, "replicas": ["a", "b"]}, "status": "ok"});
        assert_eq!(
            String::from_utf8(to_vec(&value)).expect("utf-8"),
            r#"{"message": {"N": 3, "replicas": ["a", "b"]}, "status": "ok"}"#
        );
        assert_eq!(to_vec(&Vec::<u8>::new()), b"[]");
        assert_eq!(to_vec(&serde_json::json!({})), b"{}");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(to_vec("a\"b\\c\n"), br#""a\"b\\c\n""#);
    }
}
