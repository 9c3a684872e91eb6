//! `synshare keygen`: a new key file for the exchange, in the format
//! `exchange.key_file` reads (`ID SECRET` per line, `#` comments).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes of randomness in a new secret (written as twice as many hex digits).
const SECRET_BYTES: usize = 32;

/// `n` random bytes from the kernel, as lower-case hex.
fn random_hex(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a new key file at `path` with key `id`: mode 600, its directory
/// created (mode 700) when missing. An existing file is kept unless
/// `force`. The file appears whole or not at all: it is written beside
/// `path` first, then linked (or, with `force`, renamed) into place.
pub fn write_key_file(path: &Path, id: u8, force: bool) -> Result<(), String> {
    let shown = path.display();
    let name = path
        .file_name()
        .ok_or_else(|| format!("{shown}: not a file name"))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            return Err(format!("{shown}: a directory"));
        }
        if !force {
            return Err(format!("{shown} exists: not replaced (--force replaces it)"));
        }
    }
    let text = format!(
        "# synshare cluster key (synshare keygen): the same file on every member.\n\
         # One key per line, ID SECRET; add a line with a new id to rotate.\n\
         {id} {}\n",
        random_hex(SECRET_BYTES)?
    );
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // The umask only removes bits; 600 whatever it is.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if force {
            fs::rename(&temp, path)
        } else {
            // Fails if the file appeared meanwhile: never replaced unasked.
            fs::hard_link(&temp, path).and_then(|()| fs::remove_file(&temp))
        }
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{shown} exists: not replaced (--force replaces it)")
        } else {
            format!("{shown}: {e}")
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExchangeConfig;
    use std::os::unix::fs::MetadataExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("synshare-keygen-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_key_file_is_private_in_a_new_directory_and_reads_as_a_key() {
        let dir = temp_dir("new");
        let path = dir.join("sub").join("cluster.key");
        write_key_file(&path, 7, false).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        let x = ExchangeConfig {
            key_file: Some(path.display().to_string()),
            ..ExchangeConfig::default()
        };
        let keys = x.keys().expect("the exchange reads what keygen writes");
        assert_eq!(keys.sending().id, 7);
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_file_is_kept_unless_forced_and_two_keys_differ() {
        let dir = temp_dir("exists");
        let path = dir.join("cluster.key");
        write_key_file(&path, 1, false).unwrap();
        let first = fs::read_to_string(&path).unwrap();
        let refused = write_key_file(&path, 1, false).unwrap_err();
        assert!(refused.contains("exists") && refused.contains("--force"), "{refused}");
        assert_eq!(fs::read_to_string(&path).unwrap(), first);
        write_key_file(&path, 1, true).unwrap();
        let second = fs::read_to_string(&path).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let secret = second.lines().last().unwrap().split_once(' ').unwrap().1;
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(write_key_file(&dir, 1, true).unwrap_err().contains("directory"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
