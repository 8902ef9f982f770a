//! Just enough XML for STS answers: a forward-only scanner of tags, text and
//! CDATA (linear in the body, no DOCTYPE, so no entity definitions), and the
//! decoding of character data.

use crate::rotation::parse::bounds::ParseError;

/// One piece of an XML document.
pub(super) enum Token<'a> {
    /// `<name ...>` or, with `empty`, `<name .../>`.
    Start { name: &'a str, empty: bool },
    /// `</name>`.
    End(&'a str),
    /// Character data, still escaped.
    Text(&'a str),
    /// The inside of `<![CDATA[...]]>`, taken literally.
    CData(&'a str),
}

/// Just enough XML for STS: every step consumes input and scans forward only,
/// so the work is linear in the body. Declarations, processing instructions
/// and comments are skipped; a DOCTYPE is refused (no entity definitions).
pub(super) struct XmlScanner<'a> {
    /// What is left to scan.
    pub(super) rest: &'a str,
}

impl<'a> XmlScanner<'a> {
    /// The next token; `None` at the end of the input.
    pub(super) fn next_token(&mut self) -> Result<Option<Token<'a>>, ParseError> {
        loop {
            if self.rest.is_empty() {
                return Ok(None);
            }
            let Some(markup) = self.rest.strip_prefix('<') else {
                let end = self.rest.find('<').unwrap_or(self.rest.len());
                let (text, rest) = self
                    .rest
                    .split_at_checked(end)
                    .ok_or(ParseError::Malformed)?;
                self.rest = rest;
                return Ok(Some(Token::Text(text)));
            };
            if let Some(r) = markup.strip_prefix('?') {
                self.rest = after(r, "?>")?.1;
            } else if let Some(r) = markup.strip_prefix("!--") {
                self.rest = after(r, "-->")?.1;
            } else if let Some(r) = markup.strip_prefix("![CDATA[") {
                let (data, rest) = after(r, "]]>")?;
                self.rest = rest;
                return Ok(Some(Token::CData(data)));
            } else if markup.starts_with('!') {
                return Err(ParseError::Malformed);
            } else if let Some(r) = markup.strip_prefix('/') {
                let (inner, rest) = after(r, ">")?;
                self.rest = rest;
                return Ok(Some(Token::End(element_name(inner.trim_end())?)));
            } else {
                let end = start_tag_end(markup)?;
                let (inner, rest) = markup.split_at_checked(end).ok_or(ParseError::Malformed)?;
                self.rest = rest.get(1..).ok_or(ParseError::Malformed)?;
                let empty = inner.ends_with('/');
                let inner = inner.strip_suffix('/').unwrap_or(inner);
                let name_end = inner
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(inner.len());
                let name = inner.get(..name_end).ok_or(ParseError::Malformed)?;
                return Ok(Some(Token::Start {
                    name: element_name(name)?,
                    empty,
                }));
            }
        }
    }
}

/// Splits at the first `pat`: the text before it and the text after it.
fn after<'a>(s: &'a str, pat: &str) -> Result<(&'a str, &'a str), ParseError> {
    let i = s.find(pat).ok_or(ParseError::Malformed)?;
    let before = s.get(..i).ok_or(ParseError::Malformed)?;
    let rest = s.get(i + pat.len()..).ok_or(ParseError::Malformed)?;
    Ok((before, rest))
}

/// The byte offset of a start tag's closing `>`, skipping quoted attribute values.
fn start_tag_end(s: &str) -> Result<usize, ParseError> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '>') => return Ok(i),
            (None, '<') => return Err(ParseError::Malformed),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            _ => {}
        }
    }
    Err(ParseError::Malformed)
}

fn element_name(name: &str) -> Result<&str, ParseError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(ParseError::Malformed)
    }
}

/// Appends XML character data to `out`, decoding the five predefined entities
/// and numeric character references.
pub(super) fn decode_xml_text(out: &mut String, mut s: &str) -> Result<(), ParseError> {
    while let Some(amp) = s.find('&') {
        let (plain, rest) = s.split_at_checked(amp).ok_or(ParseError::Malformed)?;
        out.push_str(plain);
        // A failed entity ends the scan, a decoded one consumes its text: linear overall.
        let (entity, rest) = after(rest.get(1..).ok_or(ParseError::Malformed)?, ";")?;
        out.push(decode_entity(entity).ok_or(ParseError::Malformed)?);
        s = rest;
    }
    out.push_str(s);
    Ok(())
}

fn decode_entity(entity: &str) -> Option<char> {
    match entity {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let num = entity.strip_prefix('#')?;
            let (digits, radix) = match num.strip_prefix('x') {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            // from_str_radix would accept a leading '+'.
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            char::from_u32(u32::from_str_radix(digits, radix).ok()?).filter(|&c| c != '\0')
        }
    }
}
