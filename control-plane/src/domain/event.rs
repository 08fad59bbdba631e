//! Entries for the append-only event log: every change and every decision, with who made it
//! and why.

use serde_json::Value;

/// An event about to be appended; the store assigns its id and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub namespace: Option<String>,
    pub app: Option<String>,
    /// `<Area><Noun><Verb>`, e.g. `AppCreated`.
    pub kind: &'static str,
    pub actor: String,
    pub reason: String,
    pub details: Value,
}

impl NewEvent {
    pub fn new(kind: &'static str, actor: &str, reason: impl Into<String>) -> Self {
        NewEvent {
            namespace: None,
            app: None,
            kind,
            actor: actor.to_owned(),
            reason: reason.into(),
            details: Value::Null,
        }
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_owned());
        self
    }

    pub fn app(mut self, ns: &str, app: &str) -> Self {
        self.namespace = Some(ns.to_owned());
        self.app = Some(app.to_owned());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}
