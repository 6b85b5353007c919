//! Wire payloads (JSON objects and urlencoded bodies) turned into a flat list of key/value
//! pairs. Nothing here knows about forms; it only refuses what is not well-formed.

use percent_encoding::percent_decode;

/// The most keys a body may carry, known or not. Past this the body is refused (422).
pub const MAX_KEYS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Text(String),
    Bool(bool),
    /// A JSON number, kept as its text.
    Number(String),
    /// An array or object where a scalar was expected.
    Composite,
    Null,
}

/// Keys in the order they arrived (duplicates kept, so they can be reported).
pub type RawPayload = Vec<(String, RawValue)>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("{0}")]
    Malformed(String),
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
}

pub fn parse_json(body: &[u8]) -> Result<RawPayload, PayloadError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| PayloadError::Malformed(format!("invalid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(PayloadError::Malformed(
            "the JSON body must be an object".into(),
        ));
    };
    if map.len() > MAX_KEYS {
        return Err(PayloadError::TooManyKeys);
    }
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let raw = match v {
                serde_json::Value::String(s) => RawValue::Text(s),
                serde_json::Value::Bool(b) => RawValue::Bool(b),
                serde_json::Value::Number(n) => RawValue::Number(n.to_string()),
                serde_json::Value::Null => RawValue::Null,
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => RawValue::Composite,
            };
            (k, raw)
        })
        .collect())
}

/// `application/x-www-form-urlencoded`, decoded strictly: invalid UTF-8 after percent-decoding
/// is an error, not a silent replacement character.
pub fn parse_urlencoded(body: &[u8]) -> Result<RawPayload, PayloadError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| PayloadError::Malformed("the body is not valid UTF-8".into()))?;
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_KEYS {
            return Err(PayloadError::TooManyKeys);
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, RawValue::Text(decode(v)?)));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, PayloadError> {
    if !s.contains(['+', '%']) {
        return Ok(s.to_string());
    }
    let plus = s.replace('+', " ");
    percent_decode(plus.as_bytes())
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| PayloadError::Malformed("a value is not valid UTF-8 after decoding".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_decodes_plus_and_percent() {
        let p = parse_urlencoded(b"name=Ann+Lee&email=a%40b.co&flag").unwrap();
        assert_eq!(p[0], ("name".into(), RawValue::Text("Ann Lee".into())));
        assert_eq!(p[1], ("email".into(), RawValue::Text("a@b.co".into())));
        assert_eq!(p[2], ("flag".into(), RawValue::Text(String::new())));
    }

    #[test]
    fn urlencoded_refuses_bad_utf8() {
        assert!(parse_urlencoded(b"name=%FF%FE").is_err());
        assert!(parse_urlencoded(b"name=\xff").is_err());
    }

    #[test]
    fn json_must_be_an_object() {
        assert!(parse_json(b"[1,2]").is_err());
        assert!(parse_json(b"{\"a\":").is_err());
        assert_eq!(
            parse_json(b"{\"a\":[1]}").unwrap()[0].1,
            RawValue::Composite
        );
    }
}
