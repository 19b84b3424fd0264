//! Test and benchmark helpers for Weir: an HTTP echo server that answers every request with a JSON
//! description of what it received, so tests (and the quickstart) can see what the proxy forwarded.

pub mod echo;
