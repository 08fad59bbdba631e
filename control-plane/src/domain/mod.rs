//! The control plane's domain: validated values and pure decisions. Nothing here does I/O,
//! awaits, or knows about HTTP or SQL; handlers parse wire types into these values and the
//! store persists them.

pub mod event;
pub mod name;
pub mod placement;
pub mod policy;
pub mod registry;
pub mod release;
pub mod spec;
pub mod token;
pub mod traffic;

use std::fmt;

/// A rule broken by an input, with the path of the offending field (`metrics[0].target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// Checks a condition, naming the field when it fails.
pub(crate) fn ensure(ok: bool, field: &str, reason: impl Into<String>) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(field, reason))
    }
}
