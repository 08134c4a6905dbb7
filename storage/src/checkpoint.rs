//! The partition checkpoint file: log start offset, recovery point, a clean-shutdown
//! flag, a pending truncation, a pending segment replacement (compaction) and the
//! cleaner's offset, written atomically (temporary file, fsync, rename,
//! directory fsync).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const CHECKPOINT_FILE: &str = "partition.checkpoint";
const HEADER: &str = "ringtail-partition-checkpoint v1";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Checkpoint {
    /// First offset visible to readers (DeleteRecords / retention).
    pub log_start_offset: i64,
    /// Segments wholly below this offset are sealed, fsynced and have valid index
    /// files; recovery does not rescan them.
    pub recovery_point: i64,
    /// The log was closed cleanly: the last segment too is sealed with its index.
    pub clean: bool,
    /// A [`crate::PartitionLog::truncate_to`] of this offset started and may not have
    /// finished: recovery completes it before anything else (see [`crate::recovery`]).
    /// Older readers ignore the line (unknown keys are skipped).
    pub truncate_to: Option<i64>,
    /// A [`crate::PartitionLog::replace_segments`] of these segments (base offsets, in
    /// order) by the cleaned file `<first base>.log.cleaned` is committed and may not have
    /// finished: recovery completes it (see [`crate::recovery`]). Older readers ignore it.
    pub replace: Option<Vec<i64>>,
    /// Offsets below this were compacted (the cleaner's "first dirty offset"); 0 = never.
    pub cleaner_offset: i64,
}

impl Checkpoint {
    fn encode(&self) -> String {
        let mut s = format!(
            "{HEADER}\nlog_start_offset {}\nrecovery_point {}\nclean {}\n",
            self.log_start_offset, self.recovery_point, self.clean as u8
        );
        if let Some(t) = self.truncate_to {
            s.push_str(&format!("truncate_to {t}\n"));
        }
        if let Some(bases) = &self.replace {
            let list: Vec<String> = bases.iter().map(i64::to_string).collect();
            s.push_str(&format!("replace_segments {}\n", list.join(",")));
        }
        if self.cleaner_offset > 0 {
            s.push_str(&format!("cleaner_offset {}\n", self.cleaner_offset));
        }
        s
    }

    fn decode(s: &str) -> Option<Checkpoint> {
        let mut lines = s.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut cp = Checkpoint::default();
        let mut seen = 0;
        for line in lines {
            let (k, v) = line.split_once(' ')?;
            match k {
                "log_start_offset" => cp.log_start_offset = v.parse().ok()?,
                "recovery_point" => cp.recovery_point = v.parse().ok()?,
                "clean" => cp.clean = v == "1",
                "truncate_to" => {
                    cp.truncate_to = Some(v.parse().ok()?);
                    continue;
                }
                "replace_segments" => {
                    let bases: Option<Vec<i64>> = v.split(',').map(|b| b.parse().ok()).collect();
                    let bases = bases.filter(|b| !b.is_empty())?;
                    cp.replace = Some(bases);
                    continue;
                }
                "cleaner_offset" => {
                    cp.cleaner_offset = v.parse().ok()?;
                    continue;
                }
                _ => continue,
            }
            seen += 1;
        }
        (seen == 3).then_some(cp)
    }
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// Reads the checkpoint; `Ok(None)` when absent or unreadable (recovery then rescans
/// everything, which is always safe).
pub(crate) fn read(dir: &Path) -> std::io::Result<Option<Checkpoint>> {
    match fs::read_to_string(path(dir)) {
        Ok(s) => Ok(Checkpoint::decode(&s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Blocking; run it on the blocking pool.
pub(crate) fn write(dir: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    write_atomically(dir, &path(dir), cp.encode().as_bytes())
}

/// Writes `data` to `target` so that after a crash the file holds either the old or the
/// new content. Blocking.
pub(crate) fn write_atomically(dir: &Path, target: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, target)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()).unwrap(), None);
        let mut cp = Checkpoint {
            log_start_offset: 5,
            recovery_point: 77,
            clean: true,
            truncate_to: None,
            replace: None,
            cleaner_offset: 0,
        };
        write(d.path(), &cp).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(cp.clone()));
        cp.truncate_to = Some(40);
        write(d.path(), &cp).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(cp.clone()));
        cp.replace = Some(vec![0, 10, 20]);
        cp.cleaner_offset = 30;
        write(d.path(), &cp).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(cp));
        fs::write(path(d.path()), "garbage").unwrap();
        assert_eq!(read(d.path()).unwrap(), None);
    }
}
