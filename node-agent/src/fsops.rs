//! Atomic file writes and removals: temp file in the same directory under a name libcni
//! ignores, fsync, rename, fsync of the directory. Unchanged bytes are not rewritten.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Prefix of temp files; with the `.tmp` suffix no CNI loader ever reads them.
pub const TEMP_PREFIX: &str = ".multus-agent-";
pub const TEMP_SUFFIX: &str = ".tmp";

/// A failed file operation, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FsError + 'a {
    move |source| FsError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a file name is one of our temp files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// What [`write_atomic`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    Unchanged,
}

/// Writes `bytes` to `path` with `mode`, atomically. Skips the write when the file already
/// holds exactly these bytes with this mode.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<WriteOutcome, FsError> {
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && fs::read(path).is_ok_and(|current| current == bytes)
    {
        return Ok(WriteOutcome::Unchanged);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(err("create directory", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!("{TEMP_PREFIX}{name}{TEMP_SUFFIX}"));
    // A temp file left by an interrupted write (or planted there) is removed, and the new
    // one is created exclusively: never written through an existing link.
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("remove stale", &temp)(e)),
    }
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(err("create", &temp))
        .and_then(|mut file| {
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(err("chmod", &temp))?;
            file.write_all(bytes).map_err(err("write", &temp))?;
            file.sync_all().map_err(err("fsync", &temp))
        })
        .and_then(|()| fs::rename(&temp, path).map_err(err("rename into", path)));
    if let Err(e) = written {
        // Nothing half-written stays behind: a full disk or a read-only directory leaves
        // the old file (or none) and no temp file.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)?;
    Ok(WriteOutcome::Written)
}

/// Removes a file (gone already is fine) and syncs its directory.
pub fn remove(path: &Path) -> Result<bool, FsError> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(err("remove", path)(e)),
    }
}

/// Copies the regular file `source` to `target` (mode 0600: the file may hold a token),
/// atomically. When `target` exists with other bytes, the copy goes to the first of
/// `target.1`, `target.2`, ... that is free or already holds these bytes, so no earlier
/// backup is ever overwritten. Returns where the copy is.
pub fn backup(source: &Path, target: &Path) -> Result<PathBuf, FsError> {
    let meta = fs::symlink_metadata(source).map_err(err("inspect", source))?;
    if !meta.is_file() {
        return Err(err("back up", source)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let bytes = fs::read(source).map_err(err("read", source))?;
    let mut candidate = target.to_path_buf();
    for n in 1u32.. {
        match fs::read(&candidate) {
            Ok(existing) if existing == bytes => return Ok(candidate),
            Ok(_) => {
                let mut name = target.as_os_str().to_owned();
                name.push(format!(".{n}"));
                candidate = PathBuf::from(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(err("read", &candidate)(e)),
        }
    }
    write_atomic(&candidate, &bytes, 0o600)?;
    Ok(candidate)
}

/// Removes our temp files left in `dir` by an interrupted write.
pub fn remove_stale_temps(dir: &Path) -> Result<usize, FsError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err("list", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if is_temp_name(&entry.file_name().to_string_lossy()) {
            remove(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_temp_file_and_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: a directory stands where the file should go.
        let target = dir.path().join("00-multus.conf");
        fs::create_dir(&target).unwrap();
        assert!(write_atomic(&target, b"{}", 0o600).is_err());
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["00-multus.conf".to_string()]);
        assert!(target.is_dir());
    }

    #[test]
    fn a_backup_never_overwrites_an_earlier_one_and_is_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("net.d/00-multus.conf");
        let target = dir.path().join("backup/etc/cni/net.d/00-multus.conf");
        write_atomic(&source, b"first", 0o644).unwrap();
        assert_eq!(backup(&source, &target).unwrap(), target);
        assert_eq!(
            backup(&source, &target).unwrap(),
            target,
            "same bytes: kept"
        );
        write_atomic(&source, b"second", 0o644).unwrap();
        let second = backup(&source, &target).unwrap();
        assert_eq!(
            second,
            dir.path().join("backup/etc/cni/net.d/00-multus.conf.1")
        );
        assert_eq!(fs::read(&target).unwrap(), b"first");
        assert_eq!(fs::read(&second).unwrap(), b"second");
        assert_eq!(
            fs::metadata(&second).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            backup(&dir.path().join("net.d"), &target).is_err(),
            "not a file"
        );
    }

    #[test]
    fn writes_are_atomic_with_mode_and_skip_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.d/00-multus.conf");
        assert_eq!(
            write_atomic(&path, b"{}", 0o600).unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            write_atomic(&path, b"{}", 0o600).unwrap(),
            WriteOutcome::Unchanged
        );
        assert_eq!(
            write_atomic(&path, b"{ }", 0o600).unwrap(),
            WriteOutcome::Written
        );
        let names: Vec<String> = fs::read_dir(dir.path().join("net.d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["00-multus.conf"], "no temp file remains");
    }

    #[test]
    fn a_planted_temp_link_is_replaced_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        let target = dir.path().join("00-multus.conf");
        let temp = dir
            .path()
            .join(format!("{TEMP_PREFIX}00-multus.conf{TEMP_SUFFIX}"));
        fs::hard_link(&victim, &temp).unwrap();
        write_atomic(&target, b"{}", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(fs::read_to_string(&target).unwrap(), "{}");
        assert!(!temp.exists());
    }

    #[test]
    fn a_wrong_mode_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.conf");
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            write_atomic(&path, b"{}", 0o600).unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn stale_temp_files_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(".multus-agent-00-multus.conf.tmp"),
            b"partial",
        )
        .unwrap();
        fs::write(dir.path().join("10-calico.conflist"), b"{}").unwrap();
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert!(dir.path().join("10-calico.conflist").exists());
        assert!(!is_temp_name("00-multus.conf"));
    }
}
