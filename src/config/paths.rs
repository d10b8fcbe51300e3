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
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
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
    // (or whose type the directory listing does not tell) is resolved on its own. One
    // listing of the directory says which those are, so a configuration of 10,000
    // credentials costs neither 10,000 path resolutions nor 10,000 `stat` calls.
    // A lock file that is not a link can only be one of the other files if that file is
    // in the lock directory too: only those names are compared further, so the check
    // costs a set lookup per credential.
    let linked = linked_entries(f.lock_dir);
    let audit = f.audit_log.map(identity);
    let mut in_lock_dir: HashSet<&OsStr> = HashSet::new();
    let others = stores
        .iter()
        .flat_map(|(_, _, path, sidecars)| std::iter::once(path).chain(sidecars))
        .chain([&config])
        .chain(audit.as_ref());
    for other in others {
        if other.parent() == Some(lock_dir.as_path()) {
            in_lock_dir.extend(other.file_name());
        }
    }
    let locks: Vec<(&str, PathBuf)> = f
        .credentials
        .iter()
        .filter_map(|credential| {
            let name = format!("{credential}{LOCK_SUFFIX}");
            let name = OsStr::new(&name);
            if linked.contains(name) {
                Some((*credential, identity(&lock_path(f.lock_dir, credential))))
            } else if in_lock_dir.contains(name) {
                Some((*credential, lock_dir.join(name)))
            } else {
                None
            }
        })
        .collect();

    if let (Some(written), Some(audit)) = (f.audit_log, audit) {
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

/// The names in `dir` that are symbolic links, or whose type could not be told (an
/// entry that vanished while listed counts too): one `readdir` pass, whose entries
/// carry their type on the file systems rekey runs on. Empty when `dir` does not exist
/// (no lock file has been made yet) or cannot be listed (the lock is then made and
/// checked at run time).
fn linked_entries(dir: &Path) -> HashSet<OsString> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Default::default();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().map_or(true, |t| t.is_symlink()))
        .map(|entry| entry.file_name())
        .collect()
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

    /// A configuration file in the lock directory named as a credential's lock file is
    /// that lock file (found without a `stat` per credential).
    #[test]
    fn a_config_named_as_a_lock_file_in_the_lock_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(format!("app{LOCK_SUFFIX}"));
        std::fs::write(&config, "").unwrap();
        let stores = BTreeMap::new();
        let files = |credentials: Vec<&'static str>| Files {
            config: &config,
            audit_log: None,
            lock_dir: dir.path(),
            stores: &stores,
            credentials,
        };
        check("c", &files(vec!["other"])).unwrap();
        let e = check("c", &files(vec!["other", "app"])).unwrap_err().to_string();
        assert!(
            e.contains("credential `app`: its lock file") && e.contains("is the configuration file"),
            "{e}"
        );
    }
}
