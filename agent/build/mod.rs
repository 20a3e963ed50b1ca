//! The image pipeline as a library: what the build modules and verbs use. Knows nothing of SSH
//! and nothing of the engine.

pub mod inputs;
