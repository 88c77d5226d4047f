//! Criterion benchmarks of the layer (filled by the performance work).
fn main() {}
