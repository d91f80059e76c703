//! Command output on stdout.
//!
//! `println!` panics (exit 101) when stdout is a closed pipe, as in
//! `eddy fs ls -R / | head -1`. Commands print through [`outln!`] instead:
//! a closed pipe ends the command quietly with status 0, as `ls` ends
//! (quietly) when `head` has read enough. Checking the write error is
//! chosen over restoring SIGPIPE's default disposition because that needs
//! `unsafe` here, and because a server (`eddy master`) whose stdout goes
//! away must keep serving, not die of a signal: servers announce through
//! [`announce`], which ignores a closed stdout.

use std::io::Write;

/// Writes one line of command output; see the module comment.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("eddy: cannot write to stdout: {e} (INTERNAL)");
        std::process::exit(1);
    }
}

/// A server's start-up line (scripts wait for it); a closed stdout is not
/// a reason to stop serving.
pub fn announce(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// `println!` for command output.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::out::line(format_args!($($t)*))
    };
}
pub(crate) use outln;
