//! Config parsing: the config file as `eddy` reads it (cli/src/config.rs:
//! TOML into the `[master]`, `[worker]`, `[client]` and `[ufs.*]` tables),
//! then the checks a process runs before it starts (the object-store keys,
//! the worker's tier layout and I/O settings).
//!
//! Properties: nothing panics; the object-store tables reach the master and
//! the worker; the sample config is the defaults.
#![no_main]

#[allow(dead_code)]
#[path = "../../../cli/src/config.rs"]
mod config;

use config::{Config, SAMPLE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        // Once per run: the printed sample is the defaults.
        assert_eq!(Config::parse(SAMPLE).unwrap(), Config::default());
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The whole file, as `eddy --config` reads it: its `[master]`,
    // `[worker]`, `[client]` and `[ufs.*]` tables.
    if let Ok(cfg) = Config::parse(text) {
        assert_eq!(cfg.master.ufs, cfg.ufs);
        assert_eq!(cfg.worker.ufs, cfg.ufs);
        let _ = cfg.worker.validate();
        if cfg.worker.memory_capacity > 0 {
            assert_eq!(
                cfg.worker.effective_memory_capacity(),
                cfg.worker.memory_capacity
            );
        }
        let _ = format!("{cfg:?}");
    }
});
