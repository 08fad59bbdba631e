//! Small text codecs shared by both transports: Go durations, query strings, path
//! segments, and a minimal XML reader and escaper for Eureka's XML bodies.

use std::time::Duration;

/// Parses a Go duration (`"10s"`, `"1m30s"`, `"1.5h"`, `"250ms"`); a bare number is
/// nanoseconds, as Consul's JSON decoding accepts.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(nanos) = s.parse::<u64>() {
        return Some(Duration::from_nanos(nanos));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest.get(..num_len)?.parse().ok()?;
        rest = rest.get(num_len..)?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest.get(..unit_len)?;
        rest = rest.get(unit_len..)?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Formats a duration as Go does (`10s`, `1m30s`, `500ms`).
pub(crate) fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_secs_f64() * 1000.0;
        return format!("{}ms", trim_float(ms));
    }
    let total = d.as_secs_f64();
    let hours = (total / 3600.0).floor();
    let minutes = ((total - hours * 3600.0) / 60.0).floor();
    let seconds = total - hours * 3600.0 - minutes * 60.0;
    let seconds = format!("{}s", trim_float(seconds));
    if hours > 0.0 {
        format!("{hours}h{minutes}m{seconds}")
    } else if minutes > 0.0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// Decoded query pairs, in order.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The first value of a query parameter.
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Percent-decodes one path segment.
pub(crate) fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Escapes text for XML element content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `s` can be an XML element name that ElementTree-style readers accept
/// (no namespace prefix).
pub(crate) fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let lower = s.to_ascii_lowercase();
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && !lower.starts_with("xml")
}

/// An XML element: name, attributes, child elements and concatenated text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct XmlElement {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<XmlElement>,
    pub text: String,
}

/// Parses a document into its root element. Supports what Eureka bodies use: a
/// declaration, comments, elements, attributes, text, CDATA and the predefined and numeric
/// entities. No DTDs.
pub(crate) fn parse_xml(input: &str) -> Result<XmlElement, String> {
    let mut p = XmlParser { s: input, pos: 0 };
    p.skip_misc()?;
    let root = p.element()?;
    p.skip_misc()?;
    if p.pos != p.s.len() {
        return Err("content after the root element".into());
    }
    Ok(root)
}

struct XmlParser<'a> {
    s: &'a str,
    pos: usize,
}

impl XmlParser<'_> {
    fn rest(&self) -> &str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn skip_past(&mut self, end: &str) -> Result<(), String> {
        match self.rest().find(end) {
            Some(i) => {
                self.pos += i + end.len();
                Ok(())
            }
            None => Err(format!("unterminated construct, expected {end}")),
        }
    }

    /// Skips whitespace, declarations, processing instructions and comments.
    fn skip_misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            if self.rest().starts_with("<?") {
                self.skip_past("?>")?;
            } else if self.rest().starts_with("<!--") {
                self.skip_past("-->")?;
            } else if self.rest().starts_with("<!DOCTYPE") {
                return Err("DTDs are not supported".into());
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '>' | '/' | '=' | '<'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err("expected a name".into());
        }
        let name = rest.get(..len).unwrap_or("").to_owned();
        self.pos += len;
        Ok(name)
    }

    fn element(&mut self) -> Result<XmlElement, String> {
        if !self.rest().starts_with('<') {
            return Err("expected an element".into());
        }
        self.pos += 1;
        let mut el = XmlElement {
            name: self.name()?,
            ..XmlElement::default()
        };
        loop {
            self.skip_ws();
            let rest = self.rest();
            if rest.starts_with("/>") {
                self.pos += 2;
                return Ok(el);
            }
            if rest.starts_with('>') {
                self.pos += 1;
                break;
            }
            let key = self.name()?;
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return Err(format!("attribute {key} has no value"));
            }
            self.pos += 1;
            self.skip_ws();
            let quote = self
                .rest()
                .chars()
                .next()
                .filter(|c| *c == '"' || *c == '\'');
            let Some(quote) = quote else {
                return Err(format!("attribute {key} is not quoted"));
            };
            self.pos += 1;
            let Some(end) = self.rest().find(quote) else {
                return Err(format!("attribute {key} is not terminated"));
            };
            let raw = self.rest().get(..end).unwrap_or("").to_owned();
            self.pos += end + 1;
            el.attributes.push((key, unescape(&raw)?));
        }
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Err(format!("element {} is not closed", el.name));
            }
            if rest.starts_with("</") {
                self.pos += 2;
                let closing = self.name()?;
                if closing != el.name {
                    return Err(format!("expected </{}>, found </{closing}>", el.name));
                }
                self.skip_ws();
                if !self.rest().starts_with('>') {
                    return Err("malformed closing tag".into());
                }
                self.pos += 1;
                return Ok(el);
            }
            if rest.starts_with("<!--") {
                self.skip_past("-->")?;
            } else if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
                let Some(end) = cdata.find("]]>") else {
                    return Err("unterminated CDATA".into());
                };
                el.text.push_str(cdata.get(..end).unwrap_or(""));
                self.pos += "<![CDATA[".len() + end + 3;
            } else if rest.starts_with("<?") {
                self.skip_past("?>")?;
            } else if rest.starts_with('<') {
                let child = self.element()?;
                el.children.push(child);
            } else {
                let len = rest.find('<').unwrap_or(rest.len());
                el.text.push_str(&unescape(rest.get(..len).unwrap_or(""))?);
                self.pos += len;
            }
        }
    }
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        let after = rest.get(amp + 1..).unwrap_or("");
        let Some(semi) = after.find(';') else {
            return Err("unterminated entity".into());
        };
        let entity = after.get(..semi).unwrap_or("");
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(c);
        rest = after.get(semi + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_durations_round_trip() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(
            parse_go_duration("1000000000"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(parse_go_duration("10x"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(format_go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn xml_reads_eureka_instance() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <instance><hostName>h &amp; co</hostName>
              <port enabled='true'>8080</port>
              <metadata class="java.util.Collections$EmptyMap"/>
              <note><![CDATA[<raw>]]> &#65;&#x42;</note>
            </instance>"#;
        let root = parse_xml(doc).unwrap();
        assert_eq!(root.name, "instance");
        assert_eq!(root.children[0].text, "h & co");
        assert_eq!(
            root.children[1].attributes,
            vec![("enabled".into(), "true".into())]
        );
        assert_eq!(root.children[1].text, "8080");
        assert_eq!(
            root.children[2].attributes[0].1,
            "java.util.Collections$EmptyMap"
        );
        assert_eq!(root.children[3].text, "<raw> AB");
        assert!(parse_xml("<a><b></a>").is_err());
        assert!(parse_xml("<a>&bogus;</a>").is_err());
    }

    #[test]
    fn xml_names() {
        assert!(is_xml_name("management.port"));
        assert!(is_xml_name("lane"));
        assert!(!is_xml_name("a:b"));
        assert!(!is_xml_name("a/b"));
        assert!(!is_xml_name("1abc"));
        assert!(!is_xml_name(""));
        assert_eq!(xml_escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
