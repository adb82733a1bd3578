//! `application/x-www-form-urlencoded` parameters (bodies and query strings), parsed by one
//! parser of ours so that every form obeys the same rules.
//!
//! Guarantees:
//! - one pass over the input; at most [`MAX_PARAMS`] parameters, refused as soon as one more
//!   appears, so the work is bounded whatever the input's length;
//! - RFC 6749 §3.2 / §3.1: a parameter may not be repeated, except the ones the caller declares
//!   multi-valued (RFC 8707 `resource`); a repeat is refused at parse time, even of a parameter
//!   no form reads;
//! - names and values are percent-decoded (`+` is a space) into UTF-8; invalid UTF-8 is refused;
//!   a value needing no decoding is borrowed from the input, not copied.
//!
//! Typed forms implement [`FromPairs`], built from [`Pairs::one`] and [`Pairs::all`].

use std::borrow::Cow;

/// Most parameters one form or query may carry. The largest form of this server (the login
/// form: the nine authorization request parameters, CSRF token, username, password) has twelve;
/// the rest is room for repeated `resource` indicators and for parameters a client sends that
/// the server ignores.
pub const MAX_PARAMS: usize = 64;

/// Why a form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form has more than {MAX_PARAMS} parameters")]
    TooManyParams,
    #[error("the form repeats the parameter {0:?}")]
    Repeated(String),
    #[error("the form is not valid UTF-8 once decoded")]
    NotUtf8,
}

/// The parsed parameters of one form, in the order given.
#[derive(Debug, Default)]
pub struct Pairs<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Pairs<'a> {
    /// Parses `input`. `multi` names the parameters that may repeat. Empty segments (`&&`) are
    /// skipped; a segment without `=` is a name with an empty value.
    pub fn parse(input: &'a [u8], multi: &[&str]) -> Result<Self, FormError> {
        // Most forms are small; a guess from the separators avoids regrowing, within the cap.
        let mut pairs: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(4);
        for segment in input.split(|&b| b == b'&') {
            if segment.is_empty() {
                continue;
            }
            if pairs.len() == MAX_PARAMS {
                return Err(FormError::TooManyParams);
            }
            let (name, value) = match segment.iter().position(|&b| b == b'=') {
                Some(i) => (&segment[..i], &segment[i + 1..]),
                None => (segment, &segment[segment.len()..]),
            };
            let name = decode(name)?;
            // Repeats are refused here, against at most MAX_PARAMS earlier names.
            if !multi.contains(&name.as_ref()) && pairs.iter().any(|(n, _)| *n == name) {
                return Err(FormError::Repeated(name.into_owned()));
            }
            pairs.push((name, decode(value)?));
        }
        Ok(Pairs { pairs })
    }

    /// The value of a single-valued parameter, if present. Repeats were refused by `parse`
    /// unless `name` was declared multi-valued; then this is an error too, since the caller
    /// asked for one.
    pub fn one(&self, name: &str) -> Result<Option<&str>, FormError> {
        let mut found = None;
        for (n, v) in &self.pairs {
            if n == name {
                if found.is_some() {
                    return Err(FormError::Repeated(name.to_owned()));
                }
                found = Some(v.as_ref());
            }
        }
        Ok(found)
    }

    /// `one`, owned: what typed forms store.
    pub fn owned(&self, name: &str) -> Result<Option<String>, FormError> {
        Ok(self.one(name)?.map(str::to_owned))
    }

    /// Every value of `name`, in the order given.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// A typed form, built from parsed pairs.
pub trait FromPairs: Sized {
    /// Parameters that may repeat (RFC 8707 `resource`); every other one may appear once.
    const MULTI_VALUED: &'static [&'static str] = &[];

    fn from_pairs(pairs: &Pairs<'_>) -> Result<Self, FormError>;

    /// Parses `input` and builds the form.
    fn parse_form(input: &[u8]) -> Result<Self, FormError> {
        Self::from_pairs(&Pairs::parse(input, Self::MULTI_VALUED)?)
    }
}

/// Decodes one name or value: `+` is a space, `%XX` a byte; an invalid escape stays as written
/// (as browsers do). Borrows when there is nothing to decode; otherwise one pass into one
/// buffer of the input's size.
fn decode(raw: &[u8]) -> Result<Cow<'_, str>, FormError> {
    if !raw.iter().any(|&b| b == b'+' || b == b'%') {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| FormError::NotUtf8);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%' {
            match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| FormError::NotUtf8)
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

/// Encodes pairs as a form (the inverse of [`Pairs::parse`]), for redirects and tests.
pub fn encode<'a, I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Pairs<'_>, FormError> {
        Pairs::parse(s.as_bytes(), &["resource"])
    }

    #[test]
    fn decodes_names_and_values() {
        let p = parse("a=1&b=x+y%21&c&&d=%E2%9C%93&e=%ZZ").unwrap();
        assert_eq!(p.one("a").unwrap(), Some("1"));
        assert_eq!(p.one("b").unwrap(), Some("x y!"));
        assert_eq!(p.one("c").unwrap(), Some(""));
        assert_eq!(p.one("d").unwrap(), Some("\u{2713}"));
        assert_eq!(p.one("e").unwrap(), Some("%ZZ"), "an invalid escape stays as written");
        assert_eq!(p.one("missing").unwrap(), None);
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn repeats_are_refused_except_multi_valued() {
        assert_eq!(parse("a=1&a=2").unwrap_err(), FormError::Repeated("a".into()));
        // An encoded name is the same parameter.
        assert_eq!(
            parse("token=1&tok%65n=2").unwrap_err(),
            FormError::Repeated("token".into())
        );
        let p = parse("resource=https%3A%2F%2Fa&resource=https://b").unwrap();
        assert_eq!(p.all("resource").collect::<Vec<_>>(), ["https://a", "https://b"]);
        assert!(p.one("resource").is_err(), "asking for one of several is an error");
    }

    #[test]
    fn the_parameter_cap_holds() {
        let at_cap: Vec<String> = (0..MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        assert_eq!(parse(&at_cap.join("&")).unwrap().len(), MAX_PARAMS);
        let over = format!("{}&one=more", at_cap.join("&"));
        assert_eq!(parse(&over).unwrap_err(), FormError::TooManyParams);
        // Separators alone are no parameters.
        assert!(parse(&"&".repeat(100_000)).unwrap().is_empty());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(parse("a=%FF%FE").unwrap_err(), FormError::NotUtf8);
        assert_eq!(Pairs::parse(b"a=\xff", &[]).unwrap_err(), FormError::NotUtf8);
    }

    #[test]
    fn encode_is_the_inverse_of_parse() {
        let pairs = [
            ("redirect_uri", "https://a.example/cb?x=1&y=2"),
            ("scope", "openid read"),
            ("s", "ü+%"),
        ];
        let wire = encode(pairs);
        assert_eq!(
            wire,
            "redirect_uri=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1%26y%3D2&scope=openid+read&s=%C3%BC%2B%25"
        );
        let back = parse(&wire).unwrap();
        for (n, v) in pairs {
            assert_eq!(back.one(n).unwrap(), Some(v));
        }
    }
}
