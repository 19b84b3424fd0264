//! Manifest files (`k8s_sync::manifests::parse_manifest`, YAML or JSON) through Ingress validation
//! (`k8s_sync::admission::validate_ingress`, which parses the annotations) and the whole sync
//! pipeline (`k8s_sync::Syncer::apply`) into a snapshot: never panic, bounded time.
//!
//! Input: the first byte picks the parser (odd: JSON, even: YAML); the rest is the file's text.
#![no_main]

use std::cell::RefCell;
use std::path::Path;

use k8s_sync::objects::{Object, ObjectSet};
use k8s_sync::{ObjectRef, SyncOptions, Syncer};
use libfuzzer_sys::fuzz_target;
use proxy_core::SnapshotHandle;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let json = mode & 1 == 1;
    let objects = match k8s_sync::manifests::parse_manifest(Path::new("fuzz.yaml"), text, json) {
        Ok(objects) => objects,
        Err(e) => {
            // The report names the file and, for YAML, a document that exists.
            let _ = e.to_string();
            return;
        }
    };
    let mut set = ObjectSet::default();
    for obj in objects {
        assert!(obj.meta().name.as_deref().is_some_and(|n| !n.is_empty()));
        if let Object::Ingress(ing) = &obj {
            for prefix in [k8s_sync::annotations::DEFAULT_PREFIX, ""] {
                match k8s_sync::admission::validate_ingress(ing, 0, prefix) {
                    Ok(valid) => {
                        // Every rule path starts with '/' and every host is lowercase.
                        for r in &valid.rules {
                            assert!(r.path.starts_with('/'), "{:?}", r.path);
                            if let Some(h) = &r.host {
                                assert!(!h.bytes().any(|b| b.is_ascii_uppercase()), "{h:?}");
                            }
                        }
                    }
                    Err(e) => {
                        let _ = (e.to_string(), e.metric_label());
                    }
                }
            }
        }
        set.insert(obj);
    }
    // The whole pipeline: admission, annotations, endpoints, translation, TLS, report. The syncer
    // is made once (it generates a certificate) and reset after each input by an empty round, so
    // that no Ingress version of one input is remembered into the next.
    SYNCER.with_borrow_mut(|syncer| {
        let _ = syncer.apply(&set, &[]);
        let snapshot = syncer.handle().load();
        let _ = snapshot.resolve(snapshot.find("example.com", "/"));
        let _ = syncer.apply(&ObjectSet::default(), &[]);
    });
});

thread_local! {
    /// Serves Ingresses without a class too, and reads the objects the seeds name: the ConfigMap
    /// `default/weir`, the Secret `default/tls`, the Service `default/backend`.
    static SYNCER: RefCell<Syncer> = RefCell::new(Syncer::new(
        SyncOptions {
            watch_ingress_without_class: true,
            configmap: Some(object_ref("weir")),
            default_ssl_certificate: Some(object_ref("tls")),
            default_backend_service: Some(object_ref("backend")),
            ..SyncOptions::default()
        },
        SnapshotHandle::new(),
        None,
    ));
}

fn object_ref(name: &str) -> ObjectRef {
    ObjectRef {
        namespace: "default".into(),
        name: name.into(),
    }
}
