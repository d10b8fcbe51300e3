//! Build metadata for `rekey --version` and the man page: the git commit the binary
//! was built from and that commit's date, or `unknown` outside a git checkout (a source
//! tarball, a vendored copy).

use std::path::PathBuf;
use std::process::Command;

/// The package's directory, as cargo tells the running script.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = git(&["log", "-1", "--format=%cs", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=REKEY_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=REKEY_GIT_DATE={date}");
    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild when HEAD moves: HEAD itself (a checkout, a detached commit), the branch it
    // points at, and packed refs. In a worktree HEAD lives in its own git dir and the
    // branches in the common one.
    let absolute = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            manifest_dir().join(p)
        }
    };
    if let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]).map(absolute),
        git(&["rev-parse", "--git-common-dir"]).map(absolute),
    ) {
        let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(common.join(branch));
        }
        for path in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    } else if manifest_dir().join(".git").exists() {
        // A checkout where git failed this time (not installed yet, a lock, an
        // environment that hid the repository): try again when the repository changes,
        // rather than keeping `unknown` for good.
        println!("cargo:rerun-if-changed={}", manifest_dir().join(".git").display());
    }
    println!("cargo:rerun-if-env-changed=GIT_DIR");
}
