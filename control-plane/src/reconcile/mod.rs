//! Level-triggered reconcilers: each pass rereads desired and observed state from the store,
//! decides with a pure domain function, applies the decision and records it as an event.
//! A wake-up only shortens the wait; a periodic pass catches anything a wake-up missed.

pub mod release;
