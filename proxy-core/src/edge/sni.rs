//! The certificate for each TLS handshake, chosen by SNI from the current snapshot.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::snapshot::SnapshotHandle;
use crate::tls::TlsCert;

/// rustls certificate resolver over the current snapshot's [`CertIndex`](crate::CertIndex):
/// exact name, then one-label wildcard, then the index's default, then `fallback`. New
/// certificates apply from the next handshake after a snapshot is stored.
#[derive(Debug)]
pub struct SniResolver {
    snapshot: SnapshotHandle,
    fallback: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Resolve with the certificates of `snapshot`; `fallback` serves when it has none.
    pub fn new(snapshot: SnapshotHandle, fallback: &TlsCert) -> Self {
        SniResolver {
            snapshot,
            fallback: fallback.certified_key().clone(),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshot.load();
        Some(
            snapshot
                .tls()
                .find(hello.server_name())
                .map_or_else(|| self.fallback.clone(), |c| c.certified_key().clone()),
        )
    }
}
