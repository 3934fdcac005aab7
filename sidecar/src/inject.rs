//! Hands the leased datasets to the tests (docs/sidecar.md, "What the tests
//! see"): the 0600 datasets file and the environment variables.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use stockroom_protocol::api::LeaseGranted;
use stockroom_protocol::datasets_file::{DatasetsFile, ShardInfo};
use stockroom_protocol::env_names::{EnvVar, lease_env_vars};
use stockroom_protocol::manifest::Manifest;

use crate::errors::Error;

/// Where the datasets file lives, and whether it goes away with us.
#[derive(Debug)]
pub struct DatasetsFileHome {
    pub path: PathBuf,
    /// The private temp dir holding the file; dropping it removes both.
    _temp_dir: Option<tempfile::TempDir>,
}

impl DatasetsFileHome {
    /// `[inject] json_file` if the manifest names one (kept at exit), else a
    /// file in a fresh private (0700) temp dir, removed at exit.
    pub fn for_run(manifest: &Manifest) -> Result<DatasetsFileHome, Error> {
        if let Some(path) = &manifest.inject.json_file {
            return Ok(DatasetsFileHome {
                path: absolute(path)?,
                _temp_dir: None,
            });
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("stockroom-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| Error::Config(format!("failed to create a private temp dir for the datasets file: {e}; set TMPDIR to a writable directory")))?;
        Ok(DatasetsFileHome {
            path: dir.path().join("datasets.json"),
            _temp_dir: Some(dir),
        })
    }

    /// A path that outlives this process (for `start`).
    pub fn kept(path: PathBuf) -> DatasetsFileHome {
        DatasetsFileHome {
            path,
            _temp_dir: None,
        }
    }
}

pub fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| {
        Error::Config(format!(
            "failed to resolve the path {}: {e}",
            path.display()
        ))
    })
}

/// The datasets file of a granted lease.
pub fn datasets_file(granted: &LeaseGranted, shard: ShardInfo) -> DatasetsFile {
    DatasetsFile::from_lease(
        &granted.lease_id,
        &granted.expires_at,
        shard,
        &granted.datasets,
    )
}

/// Registers every secret value of `file` with the redactor.
pub fn register_secrets(file: &DatasetsFile) {
    for entry in file.datasets.values() {
        for dataset in entry.datasets() {
            crate::redact::register(dataset.secret_values());
        }
    }
}

/// Writes `file` at `path` with mode 0600, atomically (temp file + rename),
/// so a test never reads half a file.
pub fn write_datasets_file(path: &Path, file: &DatasetsFile) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(file)
        .map_err(|e| Error::Internal(format!("failed to encode the datasets file: {e}")))?;
    write_private_atomically(path, &text).map_err(|e| {
        Error::Config(format!(
            "failed to write the datasets file {}: {e}",
            path.display()
        ))
    })
}

/// Writes `bytes` to `path` (mode 0600) through a temp file in the same directory.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Every variable a test sees; a name collision is a configuration error.
pub fn env_vars(
    manifest: &Manifest,
    file: &DatasetsFile,
    path: &Path,
) -> Result<Vec<EnvVar>, Error> {
    lease_env_vars(&manifest.inject.env_prefix, file, &path.to_string_lossy()).map_err(
        |collisions| {
            let lines: Vec<String> = collisions.iter().map(ToString::to_string).collect();
            Error::Config(format!(
                "failed to name the variables of lease {}: {}",
                file.lease_id,
                lines.join("; ")
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_is_private_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("d.json");
        write_private_atomically(&path, b"one").expect("write");
        write_private_atomically(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = std::fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .count();
        assert_eq!(leftovers, 1);
    }
}
