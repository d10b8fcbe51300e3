//! Files that must stay apart: the configuration file, each file store's file and its
//! sidecar lock `<path>.lock` and journal `<path>.journal`, the audit log, the lock directory and each credential's
//! lock file. Two of them being one file corrupts a store, appends audit lines to the
//! configuration, or makes rekey wait on its own lock.
//!
//! Paths are compared by identity: made absolute, `.` and `..` resolved, and the longest
//! existing ancestor resolved through symbolic links (so `./secrets.json`,
//! `secrets.json` and a link to it are one file).

use super::{ConfigError, StoreConfig};
use crate::engine::lock::{lock_path, LOCK_SUFFIX};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A path as a comparable identity.
pub(crate) fn identity(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut lexical = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    // Resolve the longest existing ancestor through symbolic links.
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            for name in rest.iter().rev() {
                out.push(name);
            }
            return out;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// `a` is `b` or inside it.
fn within(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

/// The settings the check needs, resolved against the configuration's directory.
pub(crate) struct Files<'a> {
    /// The configuration file.
    pub config: &'a Path,
    /// `[defaults] audit_log`.
    pub audit_log: Option<&'a Path>,
    /// `[defaults] lock_dir`.
    pub lock_dir: &'a Path,
    /// Stores by name.
    pub stores: &'a BTreeMap<String, StoreConfig>,
    /// Credential names.
    pub credentials: Vec<&'a str>,
}

/// Refuses files that coincide.
pub(crate) fn check(file: &str, f: &Files<'_>) -> Result<(), ConfigError> {
    let fail = |message: String| Err(ConfigError::new(format!("{file}: {message}")));
    let config = identity(f.config);
    let lock_dir = identity(f.lock_dir);
    let shown = |p: &Path| p.display().to_string();

    // name, store file, its sidecars (the lock file and the journal)
    let mut stores: Vec<(&str, &Path, PathBuf, Vec<PathBuf>)> = Vec::new();
    for (name, store) in f.stores {
        let StoreConfig::File(c) = store else { continue };
        let path = identity(&c.path);
        let sidecars = [".lock", ".journal"]
            .iter()
            .map(|suffix| {
                let mut sidecar = path.clone().into_os_string();
                sidecar.push(suffix);
                PathBuf::from(sidecar)
            })
            .collect();
        stores.push((name, &c.path, path, sidecars));
    }

    for (i, (name, written, path, sidecars)) in stores.iter().enumerate() {
        if within(path, &config) || within(&config, path) {
            return fail(format!(
                "store `{name}`: `path` {} is the configuration file",
                shown(written)
            ));
        }
        for (other, _, other_path, other_sidecars) in &stores[..i] {
            if path == other_path {
                return fail(format!(
                    "store `{name}`: `path` {} is also the file of store `{other}`: two stores in one file \
                     would share keys; use one store",
                    shown(written)
                ));
            }
            if other_sidecars.contains(path) || sidecars.contains(other_path) {
                return fail(format!(
                    "store `{name}`: `path` {} collides with store `{other}`'s file or its lock file",
                    shown(written)
                ));
            }
        }
        if within(&lock_dir, path) || sidecars.iter().any(|s| within(&lock_dir, s)) {
            return fail(format!(
                "[defaults] lock_dir {} is store `{name}`'s file {} (or its lock file or journal)",
                shown(f.lock_dir),
                shown(written)
            ));
        }
        if path.parent() == Some(lock_dir.as_path())
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(LOCK_SUFFIX))
        {
            return fail(format!(
                "store `{name}`: `path` {} is in lock_dir and named like a credential's lock file \
                 (`<name>{LOCK_SUFFIX}`); rename it",
                shown(written)
            ));
        }
    }

    if within(&lock_dir, &config) {
        return fail(format!(
            "[defaults] lock_dir {} is the configuration file",
            shown(f.lock_dir)
        ));
    }

    // Every credential's lock file, as an identity. They all live in the lock
    // directory, resolved once above: only a lock file that is itself a symbolic link
    // (or cannot be looked at) is resolved on its own, which keeps a configuration of
    // 10,000 credentials from resolving 10,000 paths component by component.
    let locks: Vec<(&str, PathBuf)> = f
        .credentials
        .iter()
        .map(|credential| {
            let path = lock_path(f.lock_dir, credential);
            let resolved = match std::fs::symlink_metadata(&path) {
                Ok(meta) if !meta.file_type().is_symlink() => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                _ => Some(identity(&path)),
            };
            let lock = resolved.unwrap_or_else(|| lock_dir.join(format!("{credential}{LOCK_SUFFIX}")));
            (*credential, lock)
        })
        .collect();

    if let Some(written) = f.audit_log {
        let audit = identity(written);
        if within(&audit, &config) {
            return fail(format!(
                "[defaults] audit_log {} is the configuration file",
                shown(written)
            ));
        }
        for (name, store_written, path, sidecars) in &stores {
            if within(&audit, path) || sidecars.contains(&audit) {
                return fail(format!(
                    "[defaults] audit_log {} is store `{name}`'s file {} (or its lock file or journal): audit lines \
                     would corrupt the store",
                    shown(written),
                    shown(store_written)
                ));
            }
        }
        if audit == lock_dir {
            return fail(format!("[defaults] audit_log {} is the lock_dir", shown(written)));
        }
        for (credential, lock) in &locks {
            if &audit == lock {
                return fail(format!(
                    "[defaults] audit_log {} is the lock file of credential `{credential}`",
                    shown(written)
                ));
            }
        }
    }

    for (credential, lock) in locks {
        if lock == config {
            return fail(format!(
                "credential `{credential}`: its lock file {} is the configuration file",
                lock.display()
            ));
        }
        for (name, written, path, sidecars) in &stores {
            if &lock == path || sidecars.contains(&lock) {
                return fail(format!(
                    "credential `{credential}`: its lock file {} is store `{name}`'s file {} (or its lock file or journal)",
                    lock.display(),
                    shown(written)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resolves_dots_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let real = identity(dir.path());
        assert_eq!(identity(&dir.path().join("./a/../b.json")), real.join("b.json"));
        std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
        assert_eq!(identity(&dir.path().join("link/b.json")), real.join("b.json"));
        assert_eq!(identity(Path::new("/no/such/dir/x")), Path::new("/no/such/dir/x"));
    }

    /// A lock file that is a link to the configuration file is found (the lock files
    /// are resolved through their directory, and a link on its own).
    #[test]
    fn a_lock_file_linked_to_the_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rekey.toml");
        std::fs::write(&config, "").unwrap();
        let locks = dir.path().join("locks");
        std::fs::create_dir(&locks).unwrap();
        std::fs::write(locks.join(format!("plain{LOCK_SUFFIX}")), "").unwrap();
        let stores = BTreeMap::new();
        let files = |credentials: Vec<&'static str>| Files {
            config: &config,
            audit_log: None,
            lock_dir: &locks,
            stores: &stores,
            credentials,
        };
        check("rekey.toml", &files(vec!["plain", "absent"])).unwrap();
        std::os::unix::fs::symlink(&config, locks.join(format!("linked{LOCK_SUFFIX}"))).unwrap();
        let e = check("rekey.toml", &files(vec!["plain", "linked"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("credential `linked`: its lock file") && e.contains("is the configuration file"),
            "{e}"
        );
    }
}
