//! Releases as pure decisions: the plan of each strategy, the state machine that walks it,
//! the user's controls over it and the analysis that compares the target version with the
//! stable one. It must never do I/O or read a clock: the caller passes what it observed and
//! the time, and persists the transition it gets back.
