//! Blocking file system work: permission checks, reading, the sidecar lock and the
//! atomic replace. Everything here runs on a blocking thread, never on the runtime.

use crate::model::{Journal, StoreFile};
use rekey_api::{ProviderError, ProviderResult};
use rustix::fs::{Access, AtFlags, FlockOperation, OFlags};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// Permission bits that must be clear on the store file and its lock file.
const PRIVATE_MASK: u32 = 0o077;

/// The files a store works with.
#[derive(Clone)]
pub(crate) struct Paths {
    /// The store file.
    pub file: PathBuf,
    /// The sidecar lock file, `<file>.lock`.
    pub lock: PathBuf,
    /// The journal of changes since the last snapshot, `<file>.journal`.
    pub journal: PathBuf,
    /// The directory holding both, where temp files are made.
    pub dir: PathBuf,
    /// Name prefix of this store's temp files, `.<file name>.rekey-tmp.`.
    tmp_prefix: OsString,
}

impl Paths {
    pub(crate) fn new(file: PathBuf) -> ProviderResult<Paths> {
        let Some(name) = file.file_name().map(|n| n.to_owned()) else {
            return Err(ProviderError::invalid_input(format!(
                "store path {:?} does not name a file",
                file.display().to_string()
            )));
        };
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut lock = file.as_os_str().to_owned();
        lock.push(".lock");
        let mut journal = file.as_os_str().to_owned();
        journal.push(".journal");
        let mut tmp_prefix = OsString::from(".");
        tmp_prefix.push(&name);
        tmp_prefix.push(".rekey-tmp.");
        Ok(Paths {
            lock: PathBuf::from(lock),
            journal: PathBuf::from(journal),
            file,
            dir,
            tmp_prefix,
        })
    }
}

/// An I/O error naming what was being done to which path. `EACCES`/`EPERM` become
/// `PermissionDenied`, anything else `Other`.
pub(crate) fn io_error(action: &str, path: &Path, e: &io::Error) -> ProviderError {
    let message = format!("cannot {action} {}: {e}", path.display());
    if e.kind() == io::ErrorKind::PermissionDenied {
        ProviderError::permission_denied(message)
    } else {
        ProviderError::other(message)
    }
}

/// Quotes a path for the shell when it holds anything beyond the plainly safe characters.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Refuses a file that group or others can access, with the command that fixes it.
fn check_private(what: &str, path: &Path, mode: u32) -> ProviderResult<()> {
    if mode & PRIVATE_MASK != 0 {
        return Err(ProviderError::permission_denied(format!(
            "{what} {} is accessible by group or others (mode {:04o}); run: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            shell_quote(path)
        )));
    }
    Ok(())
}

fn not_regular(what: &str, path: &Path, meta: &fs::Metadata) -> ProviderError {
    if meta.file_type().is_symlink() {
        ProviderError::invalid_input(format!(
            "{what} {} is a symbolic link; configure the path of the file itself",
            path.display()
        ))
    } else {
        ProviderError::invalid_input(format!("{what} {} is not a regular file", path.display()))
    }
}

/// Maps an open error: a symbolic link (refused by `O_NOFOLLOW`) gets its own message.
fn open_error(what: &str, path: &Path, e: &io::Error) -> ProviderError {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return ProviderError::invalid_input(format!(
            "{what} {} is a symbolic link; configure the path of the file itself",
            path.display()
        ));
    }
    io_error(&format!("open {what}"), path, e)
}

fn nofollow() -> i32 {
    (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32
}

/// Checks, without following symbolic links, that `path` is either absent or a private
/// regular file.
pub(crate) fn check_existing(what: &str, path: &Path) -> ProviderResult<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => check_private(what, path, meta.mode()).map(|()| true),
        Ok(meta) => Err(not_regular(what, path, &meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(&format!("inspect {what}"), path, &e)),
    }
}

/// The store file does not exist (its directory does): [`ErrorKind::NotFound`] naming the
/// path and how to create a store.
///
/// [`ErrorKind::NotFound`]: rekey_api::ErrorKind::NotFound
pub(crate) fn missing_file(paths: &Paths) -> ProviderError {
    ProviderError::not_found(format!(
        "store file {} does not exist; create it with `rekey import` or `rekey rotate --create-store`",
        paths.file.display()
    ))
}

/// The store file's directory does not exist: a typo in the path or a file system that is
/// not mounted. Never created by rekey.
fn missing_dir(paths: &Paths) -> ProviderError {
    ProviderError::not_found(format!(
        "directory {} of store file {} does not exist; check the path and that its file system is mounted",
        paths.dir.display(),
        paths.file.display()
    ))
}

/// Why the store file is absent: [`missing_dir`] when its directory is missing too, else
/// [`missing_file`].
pub(crate) fn missing(paths: &Paths) -> ProviderError {
    match fs::metadata(&paths.dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => missing_dir(paths),
        _ => missing_file(paths),
    }
}

/// Checks the directory: it must exist and be a directory.
fn check_dir(paths: &Paths) -> ProviderResult<()> {
    match fs::metadata(&paths.dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ProviderError::invalid_input(format!(
            "{} is not a directory (store file {})",
            paths.dir.display(),
            paths.file.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing_dir(paths)),
        Err(e) => Err(io_error("inspect directory", &paths.dir, &e)),
    }
}

/// The checks of opening a store: the store file and its lock file, where they exist,
/// are private regular files; the directory exists; and, unless `create`, so does the
/// store file.
pub(crate) fn check_open(paths: &Paths, create: bool) -> ProviderResult<()> {
    let exists = check_existing("store file", &paths.file)?;
    check_existing("lock file", &paths.lock)?;
    if exists {
        return Ok(());
    }
    check_dir(paths)?;
    if create {
        Ok(())
    } else {
        Err(missing_file(paths))
    }
}

/// A write found no store file: allowed, as the write that creates it, only with `create`
/// and while the directory exists.
pub(crate) fn check_creatable(paths: &Paths, create: bool) -> ProviderResult<()> {
    if create {
        check_dir(paths)
    } else {
        Err(missing(paths))
    }
}

/// What identifies one version of the store file: the inode (`st_dev`, `st_ino`) plus its
/// size, mtime and ctime (to the nanosecond). See [`Snapshot`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The identity of a store file this handle read or wrote, with that file kept open.
///
/// Keeping it open pins the inode: while it is open its number cannot be freed and
/// handed to a new file, so a file at the store path with the same `st_dev`/`st_ino` is
/// this very file, not a later one that reused the number (ext4 reuses freed inode
/// numbers at once). Every writer following the protocol replaces the file by renaming a
/// new file over it, so any such change gives the path another inode. Size, mtime and
/// ctime (which user space cannot set back) additionally catch an in-place edit by hand.
pub(crate) struct Snapshot {
    identity: Identity,
    _pin: File,
}

/// The raw contents of the store file, in a buffer zeroized on drop.
pub(crate) struct Raw {
    pub bytes: Zeroizing<Vec<u8>>,
    snapshot: Snapshot,
}

/// Reads the store file's raw contents; `None` when it does not exist. Checks the lock
/// file and the store file's privacy first. The identity is taken before reading, so an
/// in-place change during the read makes it stale rather than wrongly current.
pub(crate) fn read_raw(paths: &Paths) -> ProviderResult<Option<Raw>> {
    check_existing("lock file", &paths.lock)?;
    read_private("store file", &paths.file)
}

/// Reads the journal's raw contents; `None` when there is none. Read before the store
/// file: a journal compacted away meanwhile is then stale against the newer snapshot, never
/// missing from it.
pub(crate) fn read_journal(paths: &Paths) -> ProviderResult<Option<Raw>> {
    read_private("journal", &paths.journal)
}

/// Reads a private regular file (not following links); `None` when absent.
fn read_private(what: &str, path: &Path) -> ProviderResult<Option<Raw>> {
    let mut file = match OpenOptions::new().read(true).custom_flags(nofollow()).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(what, path, &e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error(&format!("inspect {what}"), path, &e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(what, path, &meta));
    }
    check_private(what, path, meta.mode())?;
    let len = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Zeroizing::new(Vec::with_capacity(len.saturating_add(1)));
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(&format!("read {what}"), path, &e))?;
    Ok(Some(Raw {
        bytes,
        snapshot: Snapshot {
            identity: Identity::of(&meta),
            _pin: file,
        },
    }))
}

/// The journal file as a writer knows it.
pub(crate) struct JournalFile {
    /// Its identity, with the file kept open (see [`Snapshot`]).
    snapshot: Snapshot,
    /// Bytes up to the end of its last valid line; a torn tail after it is cut off
    /// before the next append.
    valid_len: u64,
    /// Whether it extends the current snapshot (else it is stale and is replaced).
    live: bool,
}

impl JournalFile {
    /// Its size in valid bytes.
    pub(crate) fn len(&self) -> u64 {
        self.valid_len
    }

    /// Whether it extends the current snapshot.
    pub(crate) fn live(&self) -> bool {
        self.live
    }
}

/// The store file, read and fully parsed (and validated), with the journal applied.
pub(crate) struct Loaded {
    pub model: StoreFile,
    /// The snapshot's size in bytes.
    pub size: usize,
    pub snapshot: Snapshot,
    /// The journal file, when there is one.
    pub journal: Option<JournalFile>,
}

/// Reads and fully parses the store file and its journal; `None` when the store file
/// does not exist. The raw bytes live in buffers zeroized on drop.
pub(crate) fn load(paths: &Paths) -> ProviderResult<Option<Loaded>> {
    let journal_raw = read_journal(paths)?;
    let Some(raw) = read_raw(paths)? else {
        return Ok(None);
    };
    let journal = journal_raw
        .as_ref()
        .map(|j| Journal::parse(&paths.journal, &j.bytes))
        .transpose()?;
    let (model, live) = StoreFile::load(&paths.file, &raw.bytes, journal.as_ref())?;
    let valid_len = journal.map_or(0, |j| j.valid_len);
    Ok(Some(Loaded {
        model,
        size: raw.bytes.len(),
        snapshot: raw.snapshot,
        journal: journal_raw.map(|j| JournalFile {
            snapshot: j.snapshot,
            valid_len,
            live,
        }),
    }))
}

/// Whether the store file is still the one `snapshot` was taken of (see [`Snapshot`]),
/// and the journal still the one `journal` describes (or still absent). Checks the lock
/// file and the store file's privacy like a [`load`] would; anything that is not a
/// private regular file is "changed", so that the full [`load`] reports it.
pub(crate) fn unchanged(paths: &Paths, snapshot: &Snapshot, journal: Option<&JournalFile>) -> ProviderResult<bool> {
    check_existing("lock file", &paths.lock)?;
    if !same_file("store file", &paths.file, Some(snapshot))? {
        return Ok(false);
    }
    same_file("journal", &paths.journal, journal.map(|j| &j.snapshot))
}

/// Whether `path` has the identity of `snapshot` (`None`: whether it is absent).
fn same_file(what: &str, path: &Path, snapshot: Option<&Snapshot>) -> ProviderResult<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {
            check_private(what, path, meta.mode())?;
            Ok(snapshot.is_some_and(|s| Identity::of(&meta) == s.identity))
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(snapshot.is_none()),
        Err(e) => Err(io_error(&format!("inspect {what}"), path, &e)),
    }
}

/// Takes the exclusive lock on the sidecar lock file (created 0600 when absent),
/// waiting for any other holder. The lock is released when the returned file closes.
pub(crate) fn lock(paths: &Paths) -> ProviderResult<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nofollow())
        .open(&paths.lock)
        .map_err(|e| match check_dir(paths) {
            // The directory vanished since open (an unmounted file system, say).
            Err(missing) if missing.kind() == rekey_api::ErrorKind::NotFound => missing,
            _ => open_error("lock file", &paths.lock, &e),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| io_error("inspect lock file", &paths.lock, &e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular("lock file", &paths.lock, &meta));
    }
    check_private("lock file", &paths.lock, meta.mode())?;
    loop {
        match rustix::fs::flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_error("lock", &paths.lock, &e.into())),
        }
    }
}

/// A growable buffer that zeroizes every allocation it leaves behind, so serializing the
/// store does not scatter copies of secrets over freed memory.
pub(crate) struct SecureBuf(Zeroizing<Vec<u8>>);

impl SecureBuf {
    pub(crate) fn with_capacity(capacity: usize) -> SecureBuf {
        SecureBuf(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Write for SecureBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let needed = self.0.len() + data.len();
        if needed > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(self.0.capacity() * 2)));
            bigger.extend_from_slice(&self.0);
            // The old allocation is zeroized as it drops.
            self.0 = bigger;
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A buffered writer to a file whose buffer holds at most [`ZeroizingWriter::CAPACITY`]
/// bytes, never grows (so no allocation holding secrets is left behind) and is zeroized
/// after every flush and when it drops. Counts what it wrote; keeps the first I/O error
/// (a serializer's error hides it).
pub(crate) struct ZeroizingWriter<'f> {
    file: &'f File,
    buf: Zeroizing<Vec<u8>>,
    /// Bytes accepted so far.
    written: usize,
    /// The first error writing to the file.
    failed: Option<io::Error>,
}

impl<'f> ZeroizingWriter<'f> {
    /// The buffer's size.
    const CAPACITY: usize = 64 * 1024;

    fn new(file: &'f File) -> Self {
        ZeroizingWriter {
            file,
            buf: Zeroizing::new(Vec::with_capacity(Self::CAPACITY)),
            written: 0,
            failed: None,
        }
    }

    /// Writes out the buffer and zeroizes it.
    fn drain(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = write_noting(self.file, &mut self.failed, &self.buf);
        zeroize::Zeroize::zeroize(&mut *self.buf);
        result
    }
}

/// Writes `data` to `file`; the first error is kept in `failed` too.
fn write_noting(mut file: &File, failed: &mut Option<io::Error>, data: &[u8]) -> io::Result<()> {
    file.write_all(data).map_err(|e| {
        let copy = io::Error::new(e.kind(), e.to_string());
        failed.get_or_insert(e);
        copy
    })
}

impl Write for ZeroizingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.buf.capacity() {
            self.drain()?;
        }
        if data.len() >= self.buf.capacity() {
            // Straight from the caller's memory: no copy to zeroize.
            write_noting(self.file, &mut self.failed, data)?;
        } else {
            self.buf.extend_from_slice(data);
        }
        self.written += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

/// Removes temp files of this store left by a writer that crashed. Only called with the
/// lock held: every live writer makes its temp file under the lock, so any that exist
/// now are stale.
fn sweep_stale_temps(paths: &Paths) {
    let Ok(entries) = fs::read_dir(&paths.dir) else {
        return;
    };
    let prefix = paths.tmp_prefix.as_bytes();
    for entry in entries.flatten() {
        if entry.file_name().as_bytes().starts_with(prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Owner, group and permission bits of the store file being replaced, which the file
/// replacing it gets too.
#[derive(Clone, Copy)]
struct Attributes {
    uid: u32,
    gid: u32,
    /// The owner's permission bits only: group and others never get any (a store file
    /// with any is refused before it gets here), and no set-id or sticky bit is copied.
    mode: u32,
}

impl Attributes {
    /// Gives the temp file `tmp` (created 0600 by this process) these attributes.
    /// Changing the owner needs root, or the same owner and a group this process is in:
    /// a store file this process cannot give back its owner is not replaced (the
    /// applications reading it as that owner would lose it).
    fn apply(self, paths: &Paths, file: &File, tmp: &Path) -> ProviderResult<()> {
        let meta = file.metadata().map_err(|e| io_error("inspect temp file", tmp, &e))?;
        if (meta.uid(), meta.gid()) != (self.uid, self.gid) {
            std::os::unix::fs::fchown(file, Some(self.uid), Some(self.gid)).map_err(|e| {
                let message = format!(
                    "cannot give the rewritten store file {} its owner and group {}:{} ({e}); run rekey as \
                     that user or as root",
                    paths.file.display(),
                    self.uid,
                    self.gid
                );
                if e.kind() == io::ErrorKind::PermissionDenied {
                    ProviderError::permission_denied(message)
                } else {
                    ProviderError::other(message)
                }
            })?;
        }
        if meta.mode() & 0o7777 != self.mode {
            file.set_permissions(fs::Permissions::from_mode(self.mode))
                .map_err(|e| io_error("set the mode of temp file", tmp, &e))?;
        }
        Ok(())
    }
}

/// The attributes of the store file now, if there is one. Call with the lock held.
fn existing_attributes(paths: &Paths) -> ProviderResult<Option<Attributes>> {
    match fs::symlink_metadata(&paths.file) {
        Ok(meta) if meta.file_type().is_file() => {
            check_private("store file", &paths.file, meta.mode())?;
            Ok(Some(Attributes {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode() & 0o700,
            }))
        }
        Ok(meta) => Err(not_regular("store file", &paths.file, &meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("inspect store file", &paths.file, &e)),
    }
}

/// Compaction: atomically replaces the store file with the snapshot `serialize` writes
/// (a whole snapshot): a temp file in the same directory, given the replaced file's
/// owner, group and mode (0600 and this process's owner for a new store), written
/// through a [`ZeroizingWriter`] (the snapshot is never whole in memory: a 12 MB store
/// took 15 to 30 MB of buffer) and fsynced, renamed over the store file, then the
/// directory fsynced; then the journal, now stale (its generation is older), is removed.
/// A crash before the rename leaves the old snapshot and its journal; after it, the new
/// snapshot and a stale journal that readers ignore. A failure to serialize is "cannot
/// serialize store file", one to write the temp file "cannot write temp file". Call with
/// the lock held. Returns the new file's snapshot and size.
pub(crate) fn replace(
    paths: &Paths,
    serialize: impl FnOnce(&mut ZeroizingWriter<'_>) -> io::Result<()>,
) -> ProviderResult<(Snapshot, usize)> {
    sweep_stale_temps(paths);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = paths.tmp_prefix.clone();
    name.push(format!(
        "{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = paths.dir.join(name);

    let keep = existing_attributes(paths)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nofollow())
        .open(&tmp)
        .map_err(|e| io_error("create temp file", &tmp, &e))?;
    let mut size = 0;
    let written = keep
        .map_or(Ok(()), |keep| keep.apply(paths, &file, &tmp))
        .and_then(|()| {
            let mut out = ZeroizingWriter::new(&file);
            let result = serialize(&mut out).and_then(|()| out.flush());
            size = out.written;
            match (result, out.failed.take()) {
                (Ok(()), _) => Ok(()),
                (Err(_), Some(e)) => Err(io_error("write temp file", &tmp, &e)),
                (Err(_), None) => Err(ProviderError::other(format!(
                    "cannot serialize store file {}",
                    paths.file.display()
                ))),
            }
        })
        .and_then(|()| file.sync_all().map_err(|e| io_error("fsync temp file", &tmp, &e)));
    let renamed = written
        .and_then(|()| fs::rename(&tmp, &paths.file).map_err(|e| io_error("replace store file", &paths.file, &e)));
    if let Err(e) = renamed {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(paths)?;
    match fs::remove_file(&paths.journal) {
        Ok(()) => sync_dir(paths)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("remove journal", &paths.journal, &e)),
    }
    // Taken after the rename, which updates the ctime; the file stays open (see Snapshot).
    let meta = file
        .metadata()
        .map_err(|e| io_error("inspect store file", &paths.file, &e))?;
    Ok((
        Snapshot {
            identity: Identity::of(&meta),
            _pin: file,
        },
        size,
    ))
}

fn sync_dir(paths: &Paths) -> ProviderResult<()> {
    File::open(&paths.dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error("fsync directory", &paths.dir, &e))
}

/// Appends `records` (whole lines) to the journal extending snapshot `generation` and
/// makes them durable (`fdatasync`). `live_len` is the valid length of the live journal
/// ([`JournalFile::len`]), `None` when it is missing or stale: then it is replaced by a
/// new one (created 0600, given the store file's owner, group and mode, its header first,
/// the directory fsynced); a torn tail left by a crashed writer is cut off first. On
/// failure the journal is cut back to its previous length (best effort: a torn tail is
/// ignored by every reader anyway). Call with the lock held.
pub(crate) fn append(
    paths: &Paths,
    live_len: Option<u64>,
    generation: u64,
    records: &[u8],
) -> ProviderResult<JournalFile> {
    let path = &paths.journal;
    let (mut file, start, fresh) = match live_len {
        Some(valid_len) => {
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(nofollow())
                .open(path)
                .map_err(|e| open_error("journal", path, &e))?;
            let meta = file.metadata().map_err(|e| io_error("inspect journal", path, &e))?;
            if meta.len() != valid_len {
                // A torn tail after the last valid line (a writer crashed mid-append).
                file.set_len(valid_len)
                    .map_err(|e| io_error("cut the torn tail of journal", path, &e))?;
            }
            (file, valid_len, false)
        }
        None => {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove stale journal", path, &e)),
            }
            let keep = existing_attributes(paths)?;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nofollow())
                .open(path)
                .map_err(|e| io_error("create journal", path, &e))?;
            if let Some(keep) = keep {
                if let Err(e) = keep.apply(paths, &file, path) {
                    let _ = fs::remove_file(path);
                    return Err(e);
                }
            }
            (file, 0, true)
        }
    };
    let written = (|| -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(start))?;
        if fresh {
            file.write_all(&Journal::header(generation))?;
        }
        file.write_all(records)?;
        file.sync_data()
    })();
    if let Err(e) = written {
        let _ = file.set_len(start);
        return Err(io_error("append to journal", path, &e));
    }
    if fresh {
        sync_dir(paths)?;
    }
    let meta = file.metadata().map_err(|e| io_error("inspect journal", path, &e))?;
    Ok(JournalFile {
        valid_len: meta.len(),
        snapshot: Snapshot {
            identity: Identity::of(&meta),
            _pin: file,
        },
        live: true,
    })
}

/// Read-only preflight, the part about paths: the directory exists and accepts new files
/// (needed for the atomic replace) and the lock file is usable. The caller then checks
/// that the store file (and journal) are private and parse ([`load`]).
pub(crate) fn check_writable_paths(paths: &Paths) -> ProviderResult<()> {
    check_dir(paths)?;
    rustix::fs::accessat(
        rustix::fs::CWD,
        &paths.dir,
        Access::WRITE_OK | Access::EXEC_OK,
        AtFlags::EACCESS,
    )
    .map_err(|e| io_error("create files in directory", &paths.dir, &e.into()))?;
    if check_existing("lock file", &paths.lock)? {
        rustix::fs::accessat(
            rustix::fs::CWD,
            &paths.lock,
            Access::READ_OK | Access::WRITE_OK,
            AtFlags::EACCESS,
        )
        .map_err(|e| io_error("open lock file", &paths.lock, &e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces smaller than, as large as and larger than the buffer reach the file whole
    /// and in order, and are counted.
    #[test]
    fn the_zeroizing_writer_writes_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let cap = ZeroizingWriter::CAPACITY;
        let pieces: Vec<Vec<u8>> = [1, 10, cap - 5, 7, cap, 3, 3 * cap + 1, cap - 1, 2]
            .iter()
            .enumerate()
            .map(|(i, &len)| vec![b'a' + i as u8; len])
            .collect();
        let mut out = ZeroizingWriter::new(&file);
        for piece in &pieces {
            out.write_all(piece).unwrap();
        }
        out.flush().unwrap();
        assert!(
            out.buf.is_empty() && out.buf.capacity() == cap,
            "the buffer never grows"
        );
        let expected = pieces.concat();
        assert_eq!(out.written, expected.len());
        assert!(out.failed.is_none());
        drop(out);
        assert_eq!(fs::read(&path).unwrap(), expected);
    }

    /// A failed write is kept, so that it is reported as an I/O error and not as a
    /// serialization error.
    #[test]
    fn the_zeroizing_writer_keeps_the_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        fs::write(&path, b"").unwrap();
        let read_only = File::open(&path).unwrap();
        let mut out = ZeroizingWriter::new(&read_only);
        out.write_all(b"small").unwrap();
        assert!(out.flush().is_err());
        assert!(out.failed.is_some());
        let mut out = ZeroizingWriter::new(&read_only);
        assert!(out.write_all(&vec![0; ZeroizingWriter::CAPACITY]).is_err());
        assert!(out.failed.is_some());
    }
}
