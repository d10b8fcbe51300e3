//! `rekey init`: writes a commented starter configuration (mode 0600), never over an
//! existing file unless `--force`.

use crate::cli::{Cli, Output};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `init` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rekey init                       # writes ./rekey.toml (or $REKEY_CONFIG)\n  \
rekey init conf/rekey.toml       # somewhere else\n  \
rekey init --force               # replace an existing file\n\n\
Then set ORDERS_ADMIN_URL, edit the credential and check it offline with `rekey validate`.")]
pub struct InitArgs {
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Where to write it [default: -c FILE, else $REKEY_CONFIG, else ./rekey.toml].
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
}

/// The starter configuration: a file store and one PostgreSQL credential whose admin
/// URL comes from the environment. It passes `rekey validate` once `ORDERS_ADMIN_URL`
/// is set.
pub const STARTER: &str = r#"# rekey configuration (written by `rekey init`). Check it offline with `rekey validate`,
# see what a rotation would do with `rekey plan`. Strings may use ${NAME} to read the
# environment; unknown keys are errors.

[defaults]
# Credentials rotated at once.
parallel = 4
# Rotation period: `rekey rotate --due` rotates what is older; `rekey verify` fails a
# credential older than this.
every = "30d"
# How long the previous secret keeps working after a rotation. Unset, "single" revokes
# it at once (0s) and "dual"/"alternating" keep it 1h (or a quarter of `every` when
# shorter), so applications that re-read the store see no failure. A later
# `rekey rotate --due` finishes deferred revocations.
# grace = "1h"
# Audit log: one JSON line per step, never a secret value. Relative paths are read
# from this file's directory.
audit_log = "rekey-audit.jsonl"
# Generated passwords.
password = { length = 32 }

# Where secrets are kept and read by applications. A file store is one JSON file
# (mode 0600); AWS Secrets Manager (`type = "aws-secretsmanager"`) and Vault KV
# (`type = "vault-kv"`) work the same way. `rekey import` creates the file.
[stores.local]
type = "file"
path = "secrets.json"

# One credential: a PostgreSQL role whose password rekey rotates.
[[credentials]]
name = "orders-db"
store = "local"
# The secret's id or path inside the store.
key = "orders/db"
# "single": one role, the new password replaces the old one. "alternating" takes
# `usernames = ["a", "b"]`: two roles take turns, for zero downtime.
strategy = "single"
tags = ["prod"]
# `admin`: a role allowed to ALTER the application's role (superuser or CREATEROLE),
# e.g. ORDERS_ADMIN_URL=postgres://rotator:...@127.0.0.1:5432/postgres. Kept in the
# environment, never in this file.
target = { type = "postgres", host = "127.0.0.1", port = 5432, dbname = "orders",
           username = "orders_app", admin = "${ORDERS_ADMIN_URL}", sslmode = "prefer" }

# Next: put the role's current password in the store (read from stdin, never argv):
#   printf %s "$PASSWORD" | rekey import orders-db
# then `rekey plan orders-db` and `rekey rotate orders-db`.
"#;

/// Writes the starter configuration; `Err` is a one-line usage error (exit 2).
pub fn run(cli: &Cli, args: &InitArgs) -> Result<i32, String> {
    let path = match &args.path {
        Some(p) => p.clone(),
        None => crate::config::config_path(cli.config.as_deref()),
    };
    write(&path, args.force)?;
    match cli.output {
        Output::Json => println!("{}", crate::report::json::render_init(&path)),
        Output::Human if !cli.quiet => println!(
            "wrote {} (mode 0600); next: set ORDERS_ADMIN_URL, edit the credential, then `rekey{} validate`",
            path.display(),
            if args.path.is_some() || cli.config.is_some() {
                format!(" -c {}", path.display())
            } else {
                String::new()
            }
        ),
        Output::Human => {}
    }
    Ok(crate::exit::SUCCESS)
}

/// Creates `path` with the starter text, mode 0600. Without `force` an existing file
/// is left alone (created exclusively, so a file appearing meanwhile is not replaced);
/// with `force` the new text is written beside it and renamed over it.
fn write(path: &Path, force: bool) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let shown = path.display();
    if path.is_dir() {
        return Err(format!(
            "{shown} is a directory; name the file, e.g. `rekey init {shown}/rekey.toml`"
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "cannot write {shown}: directory {} does not exist",
            dir.display()
        ));
    }
    let open = |target: &Path, exclusive: bool| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).mode(0o600);
        if exclusive {
            options.create_new(true);
        } else {
            options.create(true).truncate(true);
        }
        options.open(target).and_then(|mut f| {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(STARTER.as_bytes())?;
            f.sync_all()
        })
    };
    if !force {
        return open(path, true).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{shown} already exists; keeping it (pass --force to replace it, or another PATH)")
            }
            _ => format!("cannot write {shown}: {e}"),
        });
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.rekey-init-{}", std::process::id()));
    let written = open(&temporary, false).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(format!("cannot write {shown}: {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_config_is_valid() {
        let config = crate::config::Config::parse(Path::new("/etc/rekey/rekey.toml"), STARTER, |name| {
            (name == "ORDERS_ADMIN_URL").then(|| "postgres://rotator:pw@127.0.0.1:5432/postgres".to_owned())
        })
        .unwrap();
        assert_eq!(config.credentials.len(), 1);
        assert_eq!(config.stores.len(), 1);
        assert_eq!(config.credentials[0].name, "orders-db");
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rekey.toml");
        write(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "mine").unwrap();
        let e = write(&path, false).unwrap_err();
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), STARTER);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
