//! Request extraction with the API's error contract: JSON bodies ([`JsonBody`]) and path
//! parameters ([`Path`]), every rejection an [`ApiError`].

use crate::error::ApiError;
use crate::MAX_BODY_BYTES;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body of type `T`, checked in this order:
/// 1. `Content-Type` is `application/json` or `application/*+json` (else 415);
/// 2. at most `LIMIT` bytes, [`MAX_BODY_BYTES`] unless a route asks for more (else 413,
///    at once when `Content-Length` says so);
/// 3. exactly as long as its `Content-Length`, when it has one (else 400 `invalid_request`:
///    a body cut short is not "too large");
/// 4. parses as `T`: unknown fields refused, and a JSON array never stands for an object
///    (serde would read a struct from its fields in order), else 400 `invalid_json` naming
///    the JSON path of the bad field (no field for malformed JSON: the whole document).
#[derive(Debug)]
pub struct JsonBody<T, const LIMIT: usize = MAX_BODY_BYTES>(pub T);

/// Whether `content_type` is `application/json` or `application/*+json`.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S>
    for JsonBody<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let json =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json);
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let declared = content_length(req.headers())?;
        if declared.is_some_and(|n| n > LIMIT as u64) {
            return Err(ApiError::PayloadTooLarge(LIMIT));
        }
        let bytes = axum::body::to_bytes(req.into_body(), LIMIT).await.map_err(|e| {
            if is_length_limit(&e) {
                ApiError::PayloadTooLarge(LIMIT)
            } else {
                ApiError::InvalidRequest(
                    "request body could not be read: it ended before its Content-Length".into(),
                )
            }
        })?;
        if let Some(declared) = declared.filter(|&n| n != bytes.len() as u64) {
            return Err(ApiError::InvalidRequest(format!(
                "request body is {} bytes, Content-Length says {declared}",
                bytes.len()
            )));
        }
        Ok(Self(parse(&bytes)?))
    }
}

/// The body `bytes` as `T`, with [`JsonBody`]'s rules (step 4).
///
/// # Errors
/// [`ApiError::InvalidJson`].
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(strict::Strict(&mut de)).map_err(|e| {
        let field = json_path(e.path());
        let inner = e.into_inner();
        let syntax =
            matches!(inner.classify(), serde_json::error::Category::Syntax) || inner.is_eof();
        let text = without_quoted_values(&inner.to_string());
        if syntax {
            return ApiError::InvalidJson {
                field: None,
                message: format!("malformed JSON: {text}"),
            };
        }
        let message = match &field {
            Some(f) => format!("{f}: {text}"),
            None => text,
        };
        ApiError::InvalidJson { field, message }
    })?;
    de.end().map_err(|e| ApiError::InvalidJson {
        field: None,
        message: format!("malformed JSON: {e}"),
    })?;
    Ok(value)
}

/// The JSON path of `path` (`hls.segment_duration`, `devices[1].id`), leaving out the
/// segments serde could not name; `None` for the whole document.
fn json_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `Content-Length` as a number: `None` when absent; 400 when it is not one decimal number
/// (a repeated header, a list, a sign or spaces inside).
fn content_length(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = values.next() else { return Ok(None) };
    let bad = || ApiError::InvalidRequest("Content-Length must be one decimal number".into());
    if values.next().is_some() {
        return Err(bad());
    }
    parse_content_length(first.as_bytes()).map(Some).ok_or_else(bad)
}

/// One `Content-Length` field value as a number: 1 to 19 decimal digits, surrounding
/// whitespace ignored; `None` for anything else (a list, a sign, spaces inside, empty).
/// Shared by the extractor and the local server's request-head check.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    let raw = value.trim_ascii();
    if raw.is_empty() || raw.len() > 19 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// Whether reading a body failed on the size limit (not on a body cut short).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A path parameter of type `T` (axum's `Path`), rejected as 400 `invalid_parameter` naming
/// the parameter (a non-UTF-8 `%FF` id, a value of the wrong type) instead of axum's
/// `text/plain` answer. The value is never echoed.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => {
            let key = match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                _ => None,
            };
            let field = key.unwrap_or_else(|| "path".into());
            let why = match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { .. } => {
                    "is not valid UTF-8 once percent-decoded"
                }
                _ => "is not a valid path parameter",
            };
            ApiError::InvalidParameter { message: format!("{field}: {why}"), field }
        }
        other => ApiError::Internal(other.body_text()),
    }
}

/// `message` with every double-quoted value replaced by `"…"`: serde_json quotes the
/// offending input (`invalid type: string "rtsp://admin:pw@cam/1", expected …`), which may be
/// a camera password; field names (in backticks) are kept.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        // Odd parts are inside quotes; an unpaired last quote keeps what follows.
        if i % 2 == 0 && i + 1 < rest.len() {
            out.push_str("\"…\"");
        } else if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push('"');
            out.push_str(part);
        }
    }
    out
}

/// A deserializer adapter that refuses the sequence form of structs: serde's derive reads a
/// struct from a JSON array of its fields in order (`["x"]` as `{"name":"x"}`), which
/// `deny_unknown_fields` does not stop. Every nested value goes through the adapter too.
mod strict {
    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected, Visitor,
    };
    use std::fmt;

    /// Wraps a deserializer.
    pub struct Strict<D>(pub D);

    struct Wrap<V>(V);
    struct ObjectOnly<V>(V);
    struct Seq<A>(A);
    struct Map<A>(A);
    struct Seed<T>(T);

    macro_rules! forward_deserialize {
        ($($method:ident)*) => {$(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Wrap(visitor))
            }
        )*};
    }

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
        type Error = D::Error;

        forward_deserialize! {
            deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
            deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
            deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
            deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
            deserialize_option deserialize_unit deserialize_seq deserialize_map
            deserialize_identifier deserialize_ignored_any
        }

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_unit_struct(name, Wrap(visitor))
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_newtype_struct(name, Wrap(visitor))
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_tuple(len, Wrap(visitor))
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_tuple_struct(name, len, Wrap(visitor))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_struct(name, fields, ObjectOnly(Wrap(visitor)))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_enum(name, variants, Wrap(visitor))
        }

        fn is_human_readable(&self) -> bool {
            self.0.is_human_readable()
        }
    }

    macro_rules! forward_visit {
        ($($method:ident: $ty:ty)*) => {$(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.0.$method(v)
            }
        )*};
    }

    impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }

        forward_visit! {
            visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64
            visit_i128: i128 visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64
            visit_u128: u128 visit_f32: f32 visit_f64: f64 visit_char: char
            visit_str: &str visit_borrowed_str: &'de str visit_string: String
            visit_bytes: &[u8] visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
        }

        fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
            self.0.visit_none()
        }

        fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
            self.0.visit_unit()
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
            self.0.visit_some(Strict(d))
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
            self.0.visit_newtype_struct(Strict(d))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
            self.0.visit_seq(Seq(seq))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.0.visit_map(Map(map))
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
            self.0.visit_enum(data)
        }
    }

    impl<'de, V: Visitor<'de>> Visitor<'de> for ObjectOnly<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.0.visit_map(map)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<V::Value, A::Error> {
            Err(de::Error::invalid_type(Unexpected::Seq, &self))
        }
    }

    impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
        type Error = A::Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, A::Error> {
            self.0.next_element_seed(Seed(seed))
        }

        fn size_hint(&self) -> Option<usize> {
            self.0.size_hint()
        }
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            self.0.next_key_seed(seed)
        }

        fn next_value_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<T::Value, A::Error> {
            self.0.next_value_seed(Seed(seed))
        }

        fn size_hint(&self) -> Option<usize> {
            self.0.size_hint()
        }
    }

    impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<T> {
        type Value = T::Value;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
            self.0.deserialize(Strict(d))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
        b: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
        list: Option<Vec<Inner>>,
    }

    fn field(body: &str) -> Option<String> {
        match super::parse::<Outer>(body.as_bytes()) {
            Err(ApiError::InvalidJson { field, message }) => {
                assert!(!message.starts_with('?') && !message.contains("?:"), "{message}");
                field
            }
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn arrays_never_stand_for_objects() {
        assert!(super::parse::<Outer>(br#"{"name":"x","inner":{"a":1},"list":[{"a":2}]}"#).is_ok());
        assert_eq!(field(r#"["x"]"#), None);
        assert_eq!(field(r#"{"name":"x","inner":[1,2]}"#).as_deref(), Some("inner"));
        assert_eq!(field(r#"{"name":"x","list":[[1]]}"#).as_deref(), Some("list[0]"));
    }

    #[test]
    fn malformed_json_names_no_field() {
        for body in ["{not json", "{\"name\":", "", "{\"name\":\"x\"} 3", "{\"inner\":{\"a\" 1}}"] {
            assert_eq!(field(body), None, "{body}");
        }
    }

    #[test]
    fn quoted_values_are_not_echoed() {
        let m = super::without_quoted_values(
            r#"invalid type: string "rtsp://admin:pw@cam/1", expected struct Report"#,
        );
        assert_eq!(m, r#"invalid type: string "…", expected struct Report"#);
        assert_eq!(super::without_quoted_values("unknown field `x`"), "unknown field `x`");
    }

    #[test]
    fn json_media_types() {
        assert!(super::is_json("application/json"));
        assert!(super::is_json("Application/JSON; charset=utf-8"));
        assert!(super::is_json("application/merge-patch+json"));
        assert!(!super::is_json("text/plain"));
        assert!(!super::is_json("application/jsonx"));
    }
}
