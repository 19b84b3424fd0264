//! `nginx.ingress.kubernetes.io/*` annotations: the [`registry`] of every annotation ingress-nginx documents.

pub mod registry;
