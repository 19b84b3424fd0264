//! `wait-shutdown`: the container's `preStop` hook, as ingress-nginx's `/wait-shutdown`. Sends
//! SIGTERM to the Weir controller running in the same container (PID namespace) and waits until
//! it has exited, so the kubelet's own SIGTERM comes after the drain rather than in its middle.
//!
//! Run as `weir wait-shutdown`, or through a link named `wait-shutdown` to the `weir` binary
//! (the image's `/wait-shutdown`). The controller is found by a `/proc` scan: every other process
//! running the same executable that is not itself a `wait-shutdown`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The name (of a link to the binary, or of the subcommand) that selects this mode.
pub const NAME: &str = "wait-shutdown";

/// Send SIGTERM to the Weir controller in this container and wait until it has exited.
#[derive(Parser, Debug)]
#[command(name = "wait-shutdown", version, about, long_about = None)]
struct Args {
    /// Give up (exit 1) when the controller is still running after this many seconds. Keep it
    /// above --shutdown-grace-period + --worker-shutdown-timeout; the kubelet stops the hook at
    /// terminationGracePeriodSeconds anyway.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
}

/// The arguments of this mode when the process was started in it (`argv[0]` named
/// `wait-shutdown`, or `weir wait-shutdown ...`), first the program name.
pub fn invoked() -> Option<Vec<OsString>> {
    let args: Vec<OsString> = std::env::args_os().collect();
    is_wait_shutdown(&args).then(|| {
        let skip = usize::from(!is_named(args.first()));
        std::iter::once(OsString::from(NAME))
            .chain(args.into_iter().skip(1 + skip))
            .collect()
    })
}

fn is_named(arg0: Option<&OsString>) -> bool {
    arg0.and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == NAME)
}

/// Whether a command line (`argv`) is a `wait-shutdown` invocation rather than a controller.
fn is_wait_shutdown<S: AsRef<std::ffi::OsStr>>(argv: &[S]) -> bool {
    let first = argv.first().map(|a| OsString::from(a.as_ref()));
    is_named(first.as_ref()) || argv.get(1).is_some_and(|a| a.as_ref() == NAME)
}

/// Run the mode with `args` (from [`invoked`]).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    match run(Duration::from_secs(args.timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(timeout: Duration) -> Result<(), String> {
    let exe = own_exe().map_err(|e| format!("cannot read /proc/self/exe: {e}"))?;
    let targets = controllers(&exe).map_err(|e| format!("cannot scan /proc: {e}"))?;
    if targets.is_empty() {
        return Err(format!(
            "no running weir controller ({}) found",
            exe.display()
        ));
    }
    for p in &targets {
        match kill(Pid::from_raw(p.pid), Signal::SIGTERM) {
            Ok(()) => eprintln!("{NAME}: sent SIGTERM to weir (pid {})", p.pid),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("cannot signal pid {}: {e}", p.pid)),
        }
    }
    let start = Instant::now();
    loop {
        let running: Vec<i32> = targets
            .iter()
            .filter(|p| p.running())
            .map(|p| p.pid)
            .collect();
        if running.is_empty() {
            eprintln!(
                "{NAME}: weir exited after {:.1}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "weir (pid {running:?}) still running after {}s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The executable a process runs, as `/proc/PID/exe` shows it (without ` (deleted)`).
fn exe_of(proc_dir: &Path) -> std::io::Result<PathBuf> {
    let link = std::fs::read_link(proc_dir.join("exe"))?;
    let text = link.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(t) => PathBuf::from(t),
        None => link,
    })
}

fn own_exe() -> std::io::Result<PathBuf> {
    exe_of(Path::new("/proc/self"))
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug)]
struct Process {
    pid: i32,
    started: u64,
}

impl Process {
    fn read(pid: i32) -> Option<Process> {
        let (state, started) = stat(pid)?;
        (!matches!(state, 'Z' | 'X')).then_some(Process { pid, started })
    }

    /// Still running: neither gone, nor a zombie, nor replaced by another process.
    fn running(&self) -> bool {
        stat(self.pid)
            .is_some_and(|(state, started)| !matches!(state, 'Z' | 'X') && started == self.started)
    }
}

/// State and start time (fields 3 and 22) of `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let started = fields.get(19)?.parse().ok()?;
    Some((state, started))
}

/// Every other process running `exe` as a controller.
fn controllers(exe: &Path) -> std::io::Result<Vec<Process>> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        let argv: Vec<OsString> = argv
            .iter()
            .map(|a| OsString::from(String::from_utf8_lossy(a).into_owned()))
            .collect();
        if argv.is_empty() || is_wait_shutdown(&argv) || !runs(&entry.path(), &argv[0], exe) {
            continue;
        }
        if let Some(p) = i32::try_from(pid).ok().and_then(Process::read) {
            found.push(p);
        }
    }
    Ok(found)
}

/// Whether the process in `proc_dir` runs `exe`. Its `/proc/PID/exe` is unreadable when the
/// binary has file capabilities (the process is then not dumpable); its `argv[0]` decides then.
fn runs(proc_dir: &Path, arg0: &OsString, exe: &Path) -> bool {
    match exe_of(proc_dir) {
        Ok(other) => other == exe,
        Err(_) => {
            let arg0 = Path::new(arg0);
            if arg0.is_absolute() {
                std::fs::canonicalize(arg0).is_ok_and(|p| p == exe)
            } else {
                arg0.file_name().is_some() && arg0.file_name() == exe.file_name()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_its_invocations() {
        assert!(is_wait_shutdown(&["/wait-shutdown"]));
        assert!(is_wait_shutdown(&["wait-shutdown", "--timeout", "5"]));
        assert!(is_wait_shutdown(&["/usr/bin/weir", "wait-shutdown"]));
        assert!(!is_wait_shutdown(&["/usr/bin/weir", "--manifests", "conf"]));
        assert!(!is_wait_shutdown(&["/usr/bin/weir"]));
    }

    #[test]
    fn reads_its_own_stat() {
        let me = Process::read(std::process::id() as i32).expect("own stat");
        assert!(me.running());
        let other = Process {
            pid: me.pid,
            started: me.started + 1,
        };
        assert!(!other.running(), "another start time is another process");
    }
}
