//! Small Linux helpers: procfs/sysfs reads, filesystem type, block device of a path.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Read a procfs/sysfs file, trimmed; `None` if absent or unreadable.
pub(crate) fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The running kernel's release string (`uname -r`).
pub(crate) fn kernel_release() -> Option<String> {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// `"6.1.0-18-amd64"` -> `(6, 1)`.
pub(crate) fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+', '_']);
    let major = parts.next()?.parse().ok()?;
    let minor_str = parts.next()?;
    let digits: String = minor_str.chars().take_while(char::is_ascii_digit).collect();
    let minor = digits.parse().ok()?;
    Some((major, minor))
}

/// Filesystem type name from a `statfs` magic number.
pub(crate) fn fs_type_name(magic: u64) -> &'static str {
    match magic {
        0xEF53 => "ext4", // also ext2/ext3, which share the magic
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x6969 => "nfs",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6573_5546 => "fuse", // also virtiofs
        0x7371_7368 => "squashfs",
        0x0000_4d44 => "vfat",
        0x5346_544E => "ntfs",
        0x0102_1997 => "9p",
        0x6265_6572 => "sysfs",
        0x9FA0 => "proc",
        0x8584_58F6 => "ramfs",
        0xCA45_1A4E => "bcachefs",
        0x0027_e0eb => "cgroup",
        0x6367_7270 => "cgroup2",
        0x0BD0_0BD0 => "lustre",
        0x00C3_6400 => "ceph",
        _ => "unknown",
    }
}

/// Filesystem type and magic of the filesystem holding `path`.
pub(crate) fn fs_type(path: &Path) -> std::io::Result<(&'static str, u64)> {
    let st = nix::sys::statfs::statfs(path).map_err(std::io::Error::from)?;
    // f_type is signed on some targets; the magic numbers are 32-bit patterns.
    #[allow(clippy::unnecessary_cast)]
    let magic = (st.filesystem_type().0 as i64 as u64) & 0xFFFF_FFFF;
    Ok((fs_type_name(magic), magic))
}

/// Free and total bytes for unprivileged users on the filesystem holding `path`.
pub(crate) fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::unnecessary_cast)]
    let frsize = st.fragment_size() as u64;
    #[allow(clippy::unnecessary_cast)]
    let avail = (st.blocks_available() as u64).saturating_mul(frsize);
    #[allow(clippy::unnecessary_cast)]
    let total = (st.blocks() as u64).saturating_mul(frsize);
    Ok((avail, total))
}

/// The nearest existing ancestor of `path` (the path itself if it exists).
pub(crate) fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let mut p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    loop {
        if p.exists() {
            return Some(p);
        }
        if !p.pop() {
            return None;
        }
    }
}

/// The block device under `path`, as its sysfs directory with a `queue/` subdirectory
/// (`/sys/block/vda`), and its name. `None` for filesystems without one (tmpfs, overlay, NFS).
pub(crate) fn block_device_of(path: &Path) -> Option<(String, PathBuf)> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        return None; // anonymous device: tmpfs, overlayfs, btrfs subvolumes, NFS...
    }
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // A partition has a `partition` file; its queue belongs to the parent disk.
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    if !disk.join("queue").is_dir() {
        return None;
    }
    let name = disk.file_name()?.to_string_lossy().into_owned();
    // Prefer the short, stable alias for messages (/sys/block/vda rather than the PCI path).
    let short = PathBuf::from("/sys/block").join(&name);
    Some((
        name,
        if short.join("queue").is_dir() {
            short
        } else {
            disk
        },
    ))
}

/// Whether a procfs/sysfs file could be written by this process: it exists, `access(W_OK)`
/// allows it, and its mount is not read-only (containers mount /sys and /proc/sys read-only).
pub(crate) fn writable(path: &Path) -> bool {
    if !path.exists() {
        return false;
    }
    let access_ok = nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok();
    let ro = nix::sys::statvfs::statvfs(path)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(true);
    access_ok && !ro
}

/// The bracketed choice of a sysfs multiple-choice file: `"[none] mq-deadline"` -> `"none"`.
pub(crate) fn bracketed(s: &str) -> Option<&str> {
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(&s[start + 1..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.8.0"), Some((5, 8)));
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_kernel_version("4.19.0+"), Some((4, 19)));
        assert_eq!(parse_kernel_version("6.10rc1"), Some((6, 10)));
        assert_eq!(parse_kernel_version("garbage"), None);
        assert_eq!(parse_kernel_version(""), None);
    }

    #[test]
    fn bracketed_choice() {
        assert_eq!(bracketed("[none] mq-deadline kyber"), Some("none"));
        assert_eq!(bracketed("always [madvise] never"), Some("madvise"));
        assert_eq!(bracketed("none"), None);
    }

    #[test]
    fn fs_names() {
        assert_eq!(fs_type_name(0xEF53), "ext4");
        assert_eq!(fs_type_name(0x0102_1994), "tmpfs");
        assert_eq!(fs_type_name(1), "unknown");
        let (name, _) = fs_type(Path::new("/proc")).unwrap();
        assert_eq!(name, "proc");
    }

    #[test]
    fn ancestors() {
        let p = existing_ancestor(Path::new("/definitely/not/here/x")).unwrap();
        assert_eq!(p, PathBuf::from("/"));
    }
}
