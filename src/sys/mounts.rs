//! Whether the mount table changed: `poll` on `/proc/self/mountinfo` reports `POLLPRI` once
//! after every change of this process's mount namespace (proc(5)). A namespace bind-mounted
//! under `/run/netns`, or unmounted there, is such a change, also when it is made on the host
//! and propagated into the agent's container.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

pub struct MountWatch {
    file: File,
}

impl MountWatch {
    /// Starts watching from now (`proc` is the mounted procfs, normally `/proc`).
    pub fn open(proc: &Path) -> io::Result<Self> {
        Ok(MountWatch {
            file: File::open(proc.join("self/mountinfo"))?,
        })
    }

    /// Whether any mount or unmount happened since the last call (or since `open`). An error
    /// counts as a change: the caller then looks for itself.
    pub fn changed(&mut self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for an fd this struct owns; timeout 0 never blocks.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n != 0 && (n < 0 || pfd.revents & (libc::POLLPRI | libc::POLLERR) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_is_noticed_once() {
        let mut watch = MountWatch::open(Path::new("/proc")).expect("mountinfo");
        assert!(!watch.changed(), "nothing happened yet");
        let dir = std::env::temp_dir().join(format!("nst-mountwatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "none"])
            .arg(&dir)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
            let _ = std::fs::remove_dir(&dir);
            return;
        }
        let seen = watch.changed();
        let _ = std::process::Command::new("umount").arg(&dir).status();
        let _ = std::fs::remove_dir(&dir);
        assert!(seen, "the mount was noticed");
        assert!(watch.changed(), "the unmount was noticed");
        assert!(!watch.changed(), "each change once");
    }
}
