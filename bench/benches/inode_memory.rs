//! Master resident memory per inode: builds a namespace of 1,000,000 files
//! (1,000 directories of 1,000 files, names like a data lake's) in process
//! and reports the growth in RSS. Baseline: the same process before.
//!
//! Run: `cargo bench -p eddy-bench --bench inode_memory`.

use eddy_master::mount::MountPoint;
use eddy_master::namespace::{CreateOpts, Effects, MkdirOpts, Namespace, NewAttrs};
use eddy_master::path::EddyPath;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to list
    }
    let dirs = 1_000;
    let per_dir = 1_000;
    let root = MountPoint {
        id: 1,
        path: EddyPath::root(),
        uri: "file:///unused".into(),
        read_only: false,
        options: Default::default(),
        sync_interval_ms: -1,
    };
    let before = eddy_bench::rss_bytes();
    let (mut ns, _) = Namespace::new(root, 64 << 20, 0);
    let attrs = NewAttrs {
        owner: "etl".into(),
        group: "data".into(),
        ..Default::default()
    };
    for d in 0..dirs {
        let mut fx = Effects::default();
        let dir = EddyPath::parse(&format!("/warehouse/date={d:04}")).unwrap();
        let opts = MkdirOpts {
            recursive: true,
            allow_exists: true,
            persisted: true,
        };
        ns.mkdir(&dir, opts, &attrs, 0, &mut fx).unwrap();
        for f in 0..per_dir {
            let p = dir.join(&format!("part-{f:05}.parquet"));
            let opts = CreateOpts {
                recursive: false,
                parents_persisted: true,
            };
            ns.create_file(&p, opts, &attrs, 0, &mut fx).unwrap();
            ns.complete_file(
                &p,
                100 << 20,
                true,
                "104857600:1700000000000000000",
                0,
                &mut fx,
            )
            .unwrap();
        }
        // The metastore ops are dropped here: this measures memory only.
        drop(fx);
    }
    let after = eddy_bench::rss_bytes();
    let n = ns.inode_count() as u64;
    println!(
        "inode_memory: {n} inodes, RSS grew {:.1} MiB, {} bytes per inode",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) / n
    );
}
