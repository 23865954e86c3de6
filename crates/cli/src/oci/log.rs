//! Where errors and warnings go: stderr always, and `--log FILE`, each record in runc's
//! shape: `time="..." level=error msg="..."`, or with `--log-format json` a JSON line
//! (`{"level","msg","time"}`, which containerd's shim reads).

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Clone)]
pub struct Logger {
    file: Option<PathBuf>,
    json: bool,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

pub fn install(l: Logger) {
    let _ = LOGGER.set(l);
}

/// The warning sink handed to the runtime library.
pub fn warn(msg: &str) {
    if let Some(l) = LOGGER.get() {
        l.write("warning", msg);
    }
}

/// A debug record (only with `--debug`).
pub fn debug(msg: &str) {
    if let Some(l) = LOGGER.get() {
        l.debug(msg);
    }
}

impl Logger {
    pub fn new(file: Option<PathBuf>, format: String, debug: bool) -> Logger {
        Logger {
            file,
            json: format == "json",
            debug,
        }
    }

    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    /// One record, as runc writes it (logrus' text or JSON shape): clients and
    /// conformance tools look for `level=error` in a failed call's stderr, and
    /// containerd's shim reads the `--log` file's JSON.
    fn line(&self, level: &str, msg: &str) -> String {
        let time = codex_runtime::state::now_rfc3339();
        if self.json {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        } else {
            format!("time={time:?} level={level} msg={msg:?}")
        }
    }

    fn write(&self, level: &str, msg: &str) {
        if matches!(level, "error" | "warning") {
            eprintln!("{}", self.line(level, msg));
        }
        let Some(path) = &self.file else { return };
        let line = self.line(level, msg);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
