//! placeholder
pub fn register(_env: &mut minijinja::Environment<'static>) {}
