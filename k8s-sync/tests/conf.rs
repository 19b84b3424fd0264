//! Every file under `conf/` is loaded here: each folder must parse with no error and translate
//! with no rejected object.

use std::path::{Path, PathBuf};

use k8s_sync::{ManifestDir, SyncOptions, Syncer};
use proxy_core::SnapshotHandle;

fn conf_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

#[test]
fn every_conf_folder_loads_cleanly() {
    let mut folders = vec![];
    let mut files_seen = 0;
    for entry in std::fs::read_dir(conf_root()).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            path.is_dir(),
            "conf/ holds folders of manifests only: {}",
            path.display()
        );
        folders.push(path);
    }
    assert!(!folders.is_empty());
    for dir in folders {
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"),
                "{} would not be read by file mode",
                f.display()
            );
        }
        files_seen += files.len();
        let scan = ManifestDir::new(&dir).scan().unwrap();
        assert!(
            scan.errors.is_empty(),
            "{}: {:?}",
            dir.display(),
            scan.errors
        );
        let handle = SnapshotHandle::new();
        let report =
            Syncer::new(SyncOptions::default(), handle.clone(), None).apply(&scan.objects, &[]);
        assert!(
            report.rejected.is_empty(),
            "{}: {:?}",
            dir.display(),
            report.rejected
        );
        assert!(
            report.warnings.is_empty(),
            "{}: {:?}",
            dir.display(),
            report.warnings
        );
        assert!(report.served > 0, "{}: serves no Ingress", dir.display());
    }
    assert!(files_seen > 0);
}
