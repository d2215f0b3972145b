//! easel
fn main() {}
