//! Terminal handling at the binary's edge: reading a secret without echoing it, and the
//! width of the terminal on stderr (for the live progress line).

use std::io::{IsTerminal, Write};

/// While alive, the terminal on stdin does not echo what is typed or pasted; dropping
/// it restores the previous mode. Does nothing when stdin is not a terminal.
pub struct HiddenInput {
    saved: Option<libc::termios>,
}

#[allow(unsafe_code)] // termios calls; SAFETY comments at each block
impl HiddenInput {
    /// Turns echo off on a terminal stdin and prints `prompt` on stderr.
    pub fn begin(prompt: &str) -> HiddenInput {
        if !std::io::stdin().is_terminal() {
            return HiddenInput { saved: None };
        }
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a properly sized, initialised struct.
        let saved = unsafe {
            let mut mode: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut mode) != 0 {
                return HiddenInput { saved: None };
            }
            let mut hidden = mode;
            hidden.c_lflag &= !(libc::ECHO | libc::ECHONL);
            if libc::tcsetattr(0, libc::TCSANOW, &hidden) != 0 {
                return HiddenInput { saved: None };
            }
            mode
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{prompt}");
        let _ = err.flush();
        HiddenInput { saved: Some(saved) }
    }
}

#[allow(unsafe_code)] // termios calls; SAFETY comments at each block
impl Drop for HiddenInput {
    fn drop(&mut self) {
        if let Some(mode) = self.saved.take() {
            // SAFETY: restores the mode read by tcgetattr above on the same fd.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &mode);
            }
        }
    }
}

/// The width in columns of the terminal on stderr, when stderr is one.
#[allow(unsafe_code)] // ioctl; SAFETY comment at the block
pub fn stderr_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a properly sized, initialised winsize on fd 2.
    let size = unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut size) != 0 {
            return None;
        }
        size
    };
    (size.ws_col > 0).then_some(usize::from(size.ws_col))
}
