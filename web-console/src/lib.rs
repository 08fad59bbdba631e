//! The web console: server-rendered operations UI, served by the control plane on its API
//! port.
//!
//! It owns pages and their live updates. It must speak only the public REST API types
//! (`tideway-api-types`), never the store, so everything it shows a user can also be done
//! with the CLI.
//!
//! Filled by the web console issue.
