//! A serde deserializer over the parsed TOML document that keeps every value's place in
//! the file, so that every error — also one about a value that came from the
//! environment — names file, line and key.
//!
//! It is also where values from the environment get their type: a string holding a
//! `${NAME}` reference is read as an integer, a boolean or a float when the field being
//! read is one (`port = "${PG_PORT}"`). The field's own `Deserialize` asks for the type
//! (`deserialize_u16`, `deserialize_bool`), so the coercion follows the schema exactly:
//! a string field stays a string even when its value looks like a number, and
//! `deny_unknown_fields` works as usual. Internally tagged enums would hide the fields
//! from the deserializer (serde buffers them), so the `type`-tagged store and target
//! sections are dispatched by the caller instead ([`NodeDe::skipping`]).

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use toml::de::DeValue;
use toml::Spanned;

/// One value of the document, with its place in the text.
pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// Which of the two passes is reading.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pass<'r> {
    /// The text as written. A string holding a `${NAME}` reference, where a number, a
    /// boolean or an enum is expected, reads as a placeholder (0, `false`, the first
    /// variant): its real value is only known in the second pass.
    Raw,
    /// After expansion. `refs` maps the span start of every string that held a
    /// reference to its text as written (used to coerce it, and to show the reference
    /// rather than its value in errors).
    Expanded(&'r BTreeMap<usize, String>),
}

/// A deserialization error and, once known, the span of the value it is about.
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    /// One line.
    pub message: String,
    /// Byte range in the configuration text.
    pub span: Option<Range<usize>>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string().replace('\n', " "),
            span: None,
        }
    }
}

impl DeError {
    /// An error about the value at `span`.
    pub(crate) fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            span: Some(span),
        }
    }
}

/// Deserializes one node.
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a, 'i> {
    node: &'a Node<'i>,
    pass: Pass<'a>,
    skip: Option<&'static str>,
}

impl<'a, 'i> NodeDe<'a, 'i> {
    /// A deserializer for `node`.
    pub(crate) fn new(node: &'a Node<'i>, pass: Pass<'a>) -> Self {
        NodeDe { node, pass, skip: None }
    }

    /// Reads the node, a table, as if it had no `key` (the tag of a tagged section).
    pub(crate) fn skipping(mut self, key: &'static str) -> Self {
        self.skip = Some(key);
        self
    }

    /// For a string holding an environment reference: the text as written.
    fn reference(&self) -> Option<&'a str> {
        let DeValue::String(s) = self.node.get_ref() else {
            return None;
        };
        match self.pass {
            Pass::Raw => s.contains("${").then_some(s.as_ref()),
            Pass::Expanded(refs) => refs.get(&self.node.span().start).map(String::as_str),
        }
    }

    /// Gives an error that has no place yet this node's, and never shows a value that
    /// came from the environment: its reference as written is shown instead.
    fn locate(&self, mut e: DeError) -> DeError {
        if e.span.is_none() {
            if let (Pass::Expanded(_), Some(raw), DeValue::String(value)) =
                (self.pass, self.reference(), self.node.get_ref())
            {
                if !value.is_empty() {
                    e.message = e
                        .message
                        .replace(&format!("\"{value}\""), &format!("\"{raw}\""))
                        .replace(&format!("`{value}`"), &format!("`{raw}`"));
                }
            }
            e.span = Some(self.node.span());
        }
        e
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V, what: &str) -> Result<V::Value, DeError> {
        let (DeValue::String(s), Some(raw)) = (self.node.get_ref(), self.reference()) else {
            return self.deserialize_any(visitor);
        };
        let result = match self.pass {
            Pass::Raw => visitor.visit_u64(0),
            Pass::Expanded(_) => {
                let text = s.trim();
                if let Ok(n) = text.parse::<u64>() {
                    visitor.visit_u64(n)
                } else if let Ok(n) = text.parse::<i64>() {
                    visitor.visit_i64(n)
                } else {
                    Err(de::Error::custom(format!(
                        "`{raw}` must expand to {what}, and the environment holds something else"
                    )))
                }
            }
        };
        result.map_err(|e| self.locate(e))
    }
}

fn integer_value<'de, V: Visitor<'de>>(text: &str, radix: u32, visitor: V) -> Result<V::Value, DeError> {
    if let Ok(n) = i64::from_str_radix(text, radix) {
        visitor.visit_i64(n)
    } else if let Ok(n) = u64::from_str_radix(text, radix) {
        visitor.visit_u64(n)
    } else {
        Err(de::Error::custom("integer number overflowed"))
    }
}

macro_rules! integers {
    ($($method:ident => $what:literal),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                self.integer(visitor, $what)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for NodeDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node.get_ref() {
            DeValue::String(s) => visitor.visit_str(s),
            DeValue::Integer(i) => integer_value(i.as_str(), i.radix(), visitor),
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(x) => visitor.visit_f64(x),
                Err(_) => Err(de::Error::custom("malformed floating-point number")),
            },
            DeValue::Boolean(b) => visitor.visit_bool(*b),
            DeValue::Datetime(_) => Err(de::Error::invalid_type(Unexpected::Other("datetime"), &visitor)),
            DeValue::Array(items) => visitor.visit_seq(Items {
                items: items.iter(),
                pass: self.pass,
            }),
            DeValue::Table(table) => visitor.visit_map(Entries {
                entries: table.iter(),
                pending: None,
                pass: self.pass,
                skip: self.skip,
            }),
        };
        result.map_err(|e| self.locate(e))
    }

    integers! {
        deserialize_u8 => "an integer (0 to 255)",
        deserialize_u16 => "an integer (0 to 65535)",
        deserialize_u32 => "an integer",
        deserialize_u64 => "an integer",
        deserialize_u128 => "an integer",
        deserialize_i8 => "an integer",
        deserialize_i16 => "an integer",
        deserialize_i32 => "an integer",
        deserialize_i64 => "an integer",
        deserialize_i128 => "an integer",
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (DeValue::String(s), Some(raw)) = (self.node.get_ref(), self.reference()) else {
            return self.deserialize_any(visitor);
        };
        let result = match self.pass {
            Pass::Raw => visitor.visit_bool(false),
            Pass::Expanded(_) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                _ => Err(de::Error::custom(format!(
                    "`{raw}` must expand to true or false, and the environment holds something else"
                ))),
            },
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (DeValue::String(s), Some(raw)) = (self.node.get_ref(), self.reference()) else {
            return self.deserialize_any(visitor);
        };
        let result = match self.pass {
            Pass::Raw => visitor.visit_f64(0.0),
            Pass::Expanded(_) => match s.trim().parse::<f64>() {
                Ok(x) => visitor.visit_f64(x),
                Err(_) => Err(de::Error::custom(format!(
                    "`{raw}` must expand to a number, and the environment holds something else"
                ))),
            },
        };
        result.map_err(|e| self.locate(e))
    }

    // TOML has no null: a present value is `Some`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self).map_err(|e| self.locate(e))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self).map_err(|e| self.locate(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match self.node.get_ref() {
            DeValue::String(_) if matches!(self.pass, Pass::Raw) && self.reference().is_some() => {
                let placeholder = variants.first().copied().unwrap_or_default();
                visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(placeholder))
            }
            DeValue::String(s) => visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(s.as_ref())),
            DeValue::Table(table) if table.len() == 1 => {
                visitor.visit_enum(de::value::MapAccessDeserializer::new(Entries {
                    entries: table.iter(),
                    pending: None,
                    pass: self.pass,
                    skip: None,
                }))
            }
            _ => return self.deserialize_any(visitor),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// A table's entries, for `visit_map`.
struct Entries<'a, 'i, I> {
    entries: I,
    pending: Option<(&'a str, &'a Node<'i>)>,
    pass: Pass<'a>,
    skip: Option<&'static str>,
}

impl<'de, 'a, 'i: 'a, I> MapAccess<'de> for Entries<'a, 'i, I>
where
    I: Iterator<Item = (&'a Spanned<std::borrow::Cow<'i, str>>, &'a Node<'i>)>,
{
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for (key, value) in self.entries.by_ref() {
            if self.skip == Some(key.get_ref().as_ref()) {
                continue;
            }
            self.pending = Some((key.get_ref().as_ref(), value));
            let name: &str = key.get_ref();
            return seed
                .deserialize(IntoDeserializer::<DeError>::into_deserializer(name))
                .map(Some)
                .map_err(|mut e| {
                    e.span.get_or_insert_with(|| key.span());
                    e
                });
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let (key, node) = self
            .pending
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("a value was read before its key"))?;
        seed.deserialize(NodeDe::new(node, self.pass)).map_err(|mut e| {
            if e.span.is_none() {
                e.span = Some(node.span());
            }
            // An error about the value itself (not one inside it) names its key.
            if e.span == Some(node.span()) && !e.message.contains(&format!("`{key}`")) {
                e.message = format!("`{key}`: {}", e.message);
            }
            e
        })
    }
}

/// An array's items, for `visit_seq`.
struct Items<'a, 'i> {
    items: std::slice::Iter<'a, Node<'i>>,
    pass: Pass<'a>,
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some(node) => seed.deserialize(NodeDe::new(node, self.pass)).map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A value whose presence is required but that is read separately (the `type`-tagged
/// sections).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot;

impl<'de> de::Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_ignored_any(de::IgnoredAny).map(|_| Slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        port: u16,
        name: String,
        on: bool,
        #[serde(default)]
        list: Vec<String>,
    }

    fn read(text: &str, expanded: Option<&BTreeMap<usize, String>>) -> Result<Sample, DeError> {
        let doc = toml::de::DeTable::parse(text).unwrap();
        let span = doc.span();
        let node = Spanned::new(span, DeValue::Table(doc.into_inner()));
        let pass = match expanded {
            Some(refs) => Pass::Expanded(refs),
            None => Pass::Raw,
        };
        Sample::deserialize(NodeDe::new(&node, pass))
    }

    /// Marks the string literals `needles` of `text` as references written `raw`.
    fn refs(text: &str, marks: &[(&str, &str)]) -> BTreeMap<usize, String> {
        marks
            .iter()
            .map(|(needle, raw)| (text.find(&format!("\"{needle}\"")).unwrap(), (*raw).to_owned()))
            .collect()
    }

    #[test]
    fn plain_values_and_unknown_keys() {
        let s = read("port = 5432\nname = \"x\"\non = true\nlist = [\"a\"]", None).unwrap();
        assert_eq!(s.port, 5432);
        assert_eq!(s.list, ["a"]);
        let text = "port = 5432\nname = \"x\"\non = true\nnmae = 1";
        let e = read(text, None).unwrap_err();
        assert!(e.message.contains("unknown field `nmae`"), "{e}");
        let at = text.find("nmae").unwrap();
        assert_eq!(e.span, Some(at..at + 4));
        let e = read("port = \"5432\"\nname = \"x\"\non = true", None).unwrap_err();
        assert!(e.message.contains("`port`") && e.message.contains("u16"), "{e}");
    }

    #[test]
    fn references_read_as_the_type_the_field_expects() {
        // Pass 1: placeholders.
        let text = "port = \"${P}\"\nname = \"${N}\"\non = \"${B}\"";
        let s = read(text, None).unwrap();
        assert_eq!((s.port, s.name.as_str(), s.on), (0, "${N}", false));
        // Pass 2: the expanded strings, marked as references by their span start.
        let marks = [("5432", "${P}"), ("1234", "${N}"), ("true", "${B}")];
        let expanded = "port = \"5432\"\nname = \"1234\"\non = \"true\"";
        let s = read(expanded, Some(&refs(expanded, &marks))).unwrap();
        assert_eq!((s.port, s.name.as_str(), s.on), (5432, "1234", true));
        let bad = "port = \"54x2\"\nname = \"1234\"\non = \"true\"";
        let e = read(
            bad,
            Some(&refs(bad, &[("54x2", "${P}"), ("1234", "${N}"), ("true", "${B}")])),
        )
        .unwrap_err();
        assert!(e.message.contains("${P}") && !e.message.contains("54x2"), "{e}");
        let big = "port = \"99999\"\nname = \"1234\"\non = \"true\"";
        let e = read(
            big,
            Some(&refs(big, &[("99999", "${P}"), ("1234", "${N}"), ("true", "${B}")])),
        )
        .unwrap_err();
        assert!(e.message.contains("`port`") && !e.message.contains("99999"), "{e}");
        // Not a reference: a quoted number stays a type error.
        let e = read(expanded, Some(&BTreeMap::new())).unwrap_err();
        assert!(e.message.contains("invalid type"), "{e}");
    }
}
