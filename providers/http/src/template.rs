//! `{{FIELD}}` placeholders in paths, headers, bodies and basic auth.
//!
//! A template is parsed once, when the target is built. Rendering looks each name up in
//! the document the step works on (plus `{{credential}}`), and never puts a value in an
//! error: a missing field is reported by name.

use rekey_api::document::PASSWORD;
use rekey_api::SecretDoc;
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

/// The placeholder that names the credential (reserved: not a document field).
pub(crate) const CREDENTIAL: &str = "credential";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Field(String),
}

/// A parsed string with `{{FIELD}}` placeholders.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl std::fmt::Debug for Template {
    // Literal parts may hold `${ENV}` values (an admin token in a header): only the
    // placeholder names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a template could not be parsed. Never quotes the text (it may hold a token).
pub(crate) fn parse_error(at: &str, why: &str) -> String {
    format!("{at}: {why}")
}

impl Template {
    /// Parses `text`; `at` names where it is in the configuration, for the error.
    pub(crate) fn parse(text: &str, at: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(parse_error(at, "`{{` without a closing `}}`"));
            };
            let name = after[..end].trim();
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(parse_error(
                    at,
                    "a placeholder must be `{{FIELD}}` with a field name of letters, digits, `_`, `-`, `.`",
                ));
            }
            parts.push(Part::Field(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The field names it refers to.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(name) => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// The field, when the template is exactly one placeholder and nothing else.
    pub(crate) fn single_field(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Field(name)] => Some(name),
            _ => None,
        }
    }

    /// Whether it holds no placeholder.
    pub(crate) fn is_literal(&self) -> bool {
        self.fields().next().is_none()
    }

    /// The text with every placeholder replaced by its value, each passed through
    /// `encode` (percent-encoding for paths, identity elsewhere).
    pub(crate) fn render(
        &self,
        values: &Values<'_>,
        encode: &dyn Fn(&str) -> String,
    ) -> Result<Zeroizing<String>, Missing> {
        let mut out = Zeroizing::new(String::new());
        for part in &self.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Field(name) => {
                    let value = values.text(name)?;
                    let mut encoded = encode(&value);
                    out.push_str(&encoded);
                    encoded.zeroize();
                }
            }
        }
        Ok(out)
    }
}

/// A field a template needs that the document lacks (or holds as an object/array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    pub field: String,
    pub not_text: bool,
}

/// What placeholders resolve against: the credential's name and one document.
pub(crate) struct Values<'a> {
    pub credential: &'a str,
    pub doc: &'a SecretDoc,
    /// The first of `secret_fields` when it is not `password`: a document holding a
    /// `password` field (what `rekey import` of a bare value writes) gives its value to
    /// this field.
    pub primary: Option<&'a str>,
}

impl Values<'_> {
    /// The JSON value of a placeholder.
    pub(crate) fn value(&self, name: &str) -> Result<Value, Missing> {
        if name == CREDENTIAL {
            return Ok(Value::String(self.credential.to_owned()));
        }
        let looked_up = if Some(name) == self.primary {
            self.doc.get(PASSWORD).or_else(|| self.doc.get(name))
        } else {
            self.doc.get(name)
        };
        match looked_up {
            None | Some(Value::Null) => Err(Missing {
                field: name.to_owned(),
                not_text: false,
            }),
            Some(Value::Array(_) | Value::Object(_)) => Err(Missing {
                field: name.to_owned(),
                not_text: true,
            }),
            Some(v) => Ok(v.clone()),
        }
    }

    /// The text of a placeholder (numbers and booleans as JSON writes them).
    pub(crate) fn text(&self, name: &str) -> Result<Zeroizing<String>, Missing> {
        Ok(Zeroizing::new(match self.value(name)? {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

/// A JSON body whose strings are templates. A string that is exactly one placeholder
/// takes the field's JSON value (so a number stays a number).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum JsonTemplate {
    Plain(PlainJson),
    Text(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

/// A JSON scalar without placeholders (Debug shows its type only).
#[derive(Clone, PartialEq)]
pub(crate) struct PlainJson(pub Value);

impl std::fmt::Debug for PlainJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            _ => "value",
        })
    }
}

impl JsonTemplate {
    pub(crate) fn parse(value: &Value, at: &str) -> Result<JsonTemplate, String> {
        Ok(match value {
            Value::String(s) => JsonTemplate::Text(Template::parse(s, at)?),
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| JsonTemplate::parse(v, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::parse(v, &format!("{at}.{k}"))?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Plain(PlainJson(other.clone())),
        })
    }

    pub(crate) fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            JsonTemplate::Plain(_) => {}
            JsonTemplate::Text(t) => out.extend(t.fields()),
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.collect_fields(out)),
            JsonTemplate::Object(items) => items.iter().for_each(|(_, i)| i.collect_fields(out)),
        }
    }

    /// The JSON text, in a buffer zeroized on drop.
    pub(crate) fn render(&self, values: &Values<'_>) -> Result<Zeroizing<Vec<u8>>, Missing> {
        let mut value = SecretValue(self.render_value(values)?);
        let text = Zeroizing::new(serde_json::to_vec(&value.0).unwrap_or_default());
        value.0 = Value::Null;
        Ok(text)
    }

    fn render_value(&self, values: &Values<'_>) -> Result<Value, Missing> {
        Ok(match self {
            JsonTemplate::Plain(v) => v.0.clone(),
            JsonTemplate::Text(t) => match t.single_field() {
                Some(name) => values.value(name)?,
                None => Value::String(std::mem::take(&mut *t.render(values, &|s| s.to_owned())?)),
            },
            JsonTemplate::Array(items) => {
                let mut out = SecretValue(Value::Array(Vec::with_capacity(items.len())));
                for item in items {
                    let v = item.render_value(values)?;
                    if let Value::Array(a) = &mut out.0 {
                        a.push(v);
                    }
                }
                std::mem::take(&mut out.0)
            }
            JsonTemplate::Object(items) => {
                let mut out = SecretValue(Value::Object(Map::new()));
                for (k, item) in items {
                    let v = item.render_value(values)?;
                    if let Value::Object(m) = &mut out.0 {
                        m.insert(k.clone(), v);
                    }
                }
                std::mem::take(&mut out.0)
            }
        })
    }
}

/// A JSON value zeroized on drop (a rendered body, a parsed response).
#[derive(Default)]
pub(crate) struct SecretValue(pub Value);

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

/// Zeroizes every string inside a JSON value.
pub(crate) fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

/// Percent-encodes a value for a URL path segment or query value: everything but
/// RFC 3986's unreserved characters.
pub(crate) fn encode_component(value: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    utf8_percent_encode(value, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> SecretDoc {
        SecretDoc::from_value(v).unwrap()
    }

    #[test]
    fn parse_and_render() {
        let t = Template::parse("Bearer {{ api_key }}!", "h").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), vec!["api_key"]);
        let d = doc(json!({"api_key": "k1", "n": 5}));
        let v = Values {
            credential: "c",
            doc: &d,
            primary: None,
        };
        assert_eq!(&*t.render(&v, &|s| s.to_owned()).unwrap(), "Bearer k1!");
        let t = Template::parse("/x/{{n}}/{{credential}}", "p").unwrap();
        assert_eq!(&*t.render(&v, &encode_component).unwrap(), "/x/5/c");
        assert!(Template::parse("{{", "p").is_err());
        assert!(Template::parse("{{a b}}", "p").is_err());
        assert!(Template::parse("{{}}", "p").is_err());
        assert!(Template::parse("plain", "p").unwrap().is_literal());
        let err = Template::parse("{{missing}}", "p")
            .unwrap()
            .render(&v, &|s| s.to_owned())
            .unwrap_err();
        assert_eq!(err.field, "missing");
    }

    #[test]
    fn password_stands_for_the_primary_secret() {
        let d = doc(json!({"api_key": "real", "password": "imported"}));
        let v = Values {
            credential: "c",
            doc: &d,
            primary: Some("api_key"),
        };
        assert_eq!(&*v.text("api_key").unwrap(), "imported");
        let d = doc(json!({"api_key": "real"}));
        let v = Values {
            credential: "c",
            doc: &d,
            primary: Some("api_key"),
        };
        assert_eq!(&*v.text("api_key").unwrap(), "real");
    }

    #[test]
    fn json_bodies_keep_types() {
        let t = JsonTemplate::parse(
            &json!({"password": "{{password}}", "n": "{{n}}", "s": "id-{{n}}", "tags": "", "list": [true, "{{credential}}"]}),
            "json",
        )
        .unwrap();
        let mut fields = t.fields();
        fields.sort();
        assert_eq!(fields, vec!["credential", "n", "n", "password"]);
        let d = doc(json!({"password": "p\"w", "n": 7}));
        let v = Values {
            credential: "c",
            doc: &d,
            primary: None,
        };
        let out: Value = serde_json::from_slice(&t.render(&v).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"password": "p\"w", "n": 7, "s": "id-7", "tags": "", "list": [true, "c"]})
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_component("a/b c?d&e=f#%"), "a%2Fb%20c%3Fd%26e%3Df%23%25");
        assert_eq!(encode_component("Az09-_.~"), "Az09-_.~");
    }

    #[test]
    fn debug_hides_literals() {
        let t = Template::parse("Bearer s3cr3t-admin {{x}}", "h").unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
