//! lodestar-dns
mod answer;
fn main() {}
