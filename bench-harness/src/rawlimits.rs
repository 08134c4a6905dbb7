//! Physical limits measured in the same run as the benchmarks, so results can be read as a
//! fraction of what the machine can do: O_DIRECT sequential write bandwidth of a directory's
//! filesystem, and loopback TCP bandwidth between two pinned threads, with 1 MiB and with
//! 64 KiB writes.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RawLimits {
    pub disk_dir: String,
    pub disk_write_block_bytes: usize,
    pub disk_write_mb_per_sec: f64,
    pub loopback_write_bytes: usize,
    pub loopback_mb_per_sec: f64,
    /// Loopback with [`LOOPBACK_SMALL_WRITE_BYTES`] writes, the other reference size the
    /// performance targets name ("e.g. 64 KiB and 1 MiB writes"). Zero in results written
    /// before it was measured.
    #[serde(default)]
    pub loopback_64k_mb_per_sec: f64,
}

/// The smaller loopback write size measured beside 1 MiB writes.
pub const LOOPBACK_SMALL_WRITE_BYTES: usize = 64 << 10;

const ALIGN: usize = 4096;

/// Sequential O_DIRECT writes of `block` bytes for about `seconds` (at most `bytes_max`),
/// then fdatasync; MB/s (10^6 bytes) including the final sync. The file is removed.
pub fn disk_write_mb_per_sec(
    dir: &Path,
    block: usize,
    seconds: f64,
    bytes_max: u64,
) -> Result<f64> {
    ensure!(
        block.is_multiple_of(ALIGN) && block > 0,
        "block must be a multiple of {ALIGN}"
    );
    let path = dir.join(format!(".ringtail-bench-odirect-{}", std::process::id()));
    let mut cpath = path.as_os_str().as_bytes().to_vec();
    cpath.push(0);
    // SAFETY: cpath is NUL-terminated and outlives the call.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr() as *const libc::c_char,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_DIRECT,
            0o600,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("open O_DIRECT {}", path.display()));
    }
    let layout = std::alloc::Layout::from_size_align(block, ALIGN).context("layout")?;
    // SAFETY: layout has non-zero size (checked above).
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    let result = (|| -> Result<f64> {
        ensure!(!buf.is_null(), "allocation failed");
        // SAFETY: buf points to `block` initialised (zeroed) bytes owned by us until dealloc.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf, block) };
        for (i, b) in slice.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8; // not all zeros, in case the device dedups zeros
        }
        let start = Instant::now();
        let mut written: u64 = 0;
        while start.elapsed().as_secs_f64() < seconds && written < bytes_max {
            // SAFETY: buf is valid for `block` bytes and aligned to ALIGN.
            let n = unsafe { libc::write(fd, buf as *const libc::c_void, block) };
            if n < 0 {
                return Err(std::io::Error::last_os_error()).context("O_DIRECT write");
            }
            ensure!(n as usize == block, "short O_DIRECT write");
            written += n as u64;
        }
        // SAFETY: fd is an open file descriptor.
        if unsafe { libc::fdatasync(fd) } != 0 {
            return Err(std::io::Error::last_os_error()).context("fdatasync");
        }
        Ok(written as f64 / 1e6 / start.elapsed().as_secs_f64())
    })();
    if !buf.is_null() {
        // SAFETY: buf was allocated above with exactly this layout and is freed once.
        unsafe { std::alloc::dealloc(buf, layout) };
    }
    // SAFETY: fd is open and closed exactly once.
    unsafe { libc::close(fd) };
    let _ = std::fs::remove_file(&path);
    result
}

/// One TCP stream over loopback, writer pinned to `cores.0`, reader to `cores.1`.
pub fn loopback_mb_per_sec(write_bytes: usize, seconds: f64, cores: (usize, usize)) -> Result<f64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let reader = std::thread::spawn(move || -> Result<(u64, f64)> {
        core_affinity::set_for_current(core_affinity::CoreId { id: cores.1 });
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut start = None;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            start.get_or_insert_with(Instant::now);
            total += n as u64;
        }
        Ok((total, start.map_or(0.0, |s| s.elapsed().as_secs_f64())))
    });
    // The writer gets its own thread so the caller's CPU affinity is left alone.
    let writer = std::thread::spawn(move || -> Result<()> {
        core_affinity::set_for_current(core_affinity::CoreId { id: cores.0 });
        let mut s = std::net::TcpStream::connect(addr)?;
        let buf = vec![7u8; write_bytes];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    match writer.join() {
        Ok(r) => r?,
        Err(_) => bail!("loopback writer panicked"),
    }
    let (total, secs) = match reader.join() {
        Ok(r) => r?,
        Err(_) => bail!("loopback reader panicked"),
    };
    ensure!(secs > 0.0, "nothing received");
    Ok(total as f64 / 1e6 / secs)
}

pub fn measure(dir: &Path, seconds: f64) -> Result<RawLimits> {
    let block = 1 << 20;
    let write_bytes = 1 << 20;
    Ok(RawLimits {
        disk_dir: dir.display().to_string(),
        disk_write_block_bytes: block,
        disk_write_mb_per_sec: disk_write_mb_per_sec(dir, block, seconds, 8 << 30)?,
        loopback_write_bytes: write_bytes,
        loopback_mb_per_sec: loopback_mb_per_sec(write_bytes, seconds, (0, 1))?,
        loopback_64k_mb_per_sec: loopback_mb_per_sec(LOOPBACK_SMALL_WRITE_BYTES, seconds, (0, 1))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_something_positive() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
        match disk_write_mb_per_sec(dir.path(), 1 << 20, 0.2, 64 << 20) {
            Ok(v) => assert!(v > 0.0),
            // tmpfs has no O_DIRECT: acceptable on some CI machines.
            Err(e) => eprintln!("O_DIRECT unavailable here: {e:#}"),
        }
        assert!(
            std::fs::read_dir(dir.path())
                .expect("read dir")
                .next()
                .is_none(),
            "probe file removed"
        );
        let lo = loopback_mb_per_sec(256 << 10, 0.2, (0, 0)).expect("loopback");
        assert!(lo > 0.0);
    }

    #[test]
    fn results_from_before_the_64k_figure_still_load() {
        let old = r#"{"disk_dir":"/d","disk_write_block_bytes":1048576,"disk_write_mb_per_sec":1600.0,
                      "loopback_write_bytes":1048576,"loopback_mb_per_sec":3500.0}"#;
        let r: RawLimits = serde_json::from_str(old).expect("old raw-limits JSON");
        assert_eq!(r.loopback_mb_per_sec, 3500.0);
        assert_eq!(r.loopback_64k_mb_per_sec, 0.0);
        let new: RawLimits = serde_json::from_str(
            &serde_json::to_string(&RawLimits {
                loopback_64k_mb_per_sec: 2000.0,
                ..r
            })
            .expect("serialize"),
        )
        .expect("round trip");
        assert_eq!(new.loopback_64k_mb_per_sec, 2000.0);
    }
}
