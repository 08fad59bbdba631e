//! Validated names of namespaces, apps and tokens.

use std::fmt;

use tideway_api_types::name::dns_label_error;

/// A DNS label (RFC 1123), 1–63 characters. The only way to get one is [`Name::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// A string that is not a DNS label, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    pub value: String,
    pub reason: &'static str,
}

impl Name {
    pub fn parse(s: &str) -> Result<Name, InvalidName> {
        match dns_label_error(s) {
            None => Ok(Name(s.to_owned())),
            Some(reason) => Err(InvalidName {
                value: s.chars().take(80).collect(),
                reason,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace every installation starts with.
    pub fn default_namespace() -> Name {
        Name("default".to_owned())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
