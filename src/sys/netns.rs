//! Network namespace files: identifying them, opening them, and entering one on a dedicated
//! thread to open a netlink socket that stays bound to it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::model::NetnsKey;
use crate::sys::netlink::RouteSocket;

/// The (device, inode) of a namespace file, following symlinks. Every nsfs file shares one
/// device, so a bind mount and `/proc/PID/ns/net` of the same namespace compare equal.
pub fn stat_key(path: &Path) -> io::Result<NetnsKey> {
    let meta = std::fs::metadata(path)?;
    Ok(NetnsKey {
        dev: meta.dev(),
        inode: meta.ino(),
    })
}

/// The network namespace of this process (its main thread), which the agent treats as the
/// host's: it runs with host networking. `/proc/1/ns/net` is not used since even root may be
/// denied it.
pub fn own_netns_key() -> io::Result<NetnsKey> {
    stat_key(Path::new("/proc/self/ns/net"))
}

/// An open network namespace file. Holding it keeps the namespace alive, so handles are dropped
/// as soon as the namespace is no longer reported by a receiver.
#[derive(Debug)]
pub struct NetnsFile {
    file: File,
    key: NetnsKey,
}

impl NetnsFile {
    /// Opens `path` and records which namespace it turned out to be.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        Ok(NetnsFile {
            file,
            key: NetnsKey {
                dev: meta.dev(),
                inode: meta.ino(),
            },
        })
    }

    pub fn key(&self) -> NetnsKey {
        self.key
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Opens one rtnetlink socket inside each of `namespaces`. The sockets stay bound to their
/// namespace for their whole life, so later reads need no `setns`.
///
/// `setns` changes the calling thread only, so this runs on a short-lived OS thread made for the
/// purpose and never on an async worker. The thread is discarded afterwards: it never has to find
/// its way back to the host namespace, and no other work can run in the wrong namespace.
pub fn open_sockets_in(namespaces: &[&NetnsFile]) -> Vec<io::Result<RouteSocket>> {
    if namespaces.is_empty() {
        return Vec::new();
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("netshim-setns".into())
            .spawn_scoped(scope, || {
                namespaces
                    .iter()
                    .map(|ns| {
                        enter_netns(ns.fd())?;
                        RouteSocket::open()
                    })
                    .collect::<Vec<_>>()
            });
        match worker {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                // The closure does not panic; if it ever did, report every namespace as failed
                // rather than propagating the panic.
                namespaces
                    .iter()
                    .map(|_| Err(io::Error::other("setns thread panicked")))
                    .collect()
            }),
            Err(e) => namespaces
                .iter()
                .map(|_| {
                    Err(io::Error::new(
                        e.kind(),
                        format!("spawning setns thread: {e}"),
                    ))
                })
                .collect(),
        }
    })
}

/// Moves the calling thread into the network namespace `fd` refers to.
fn enter_netns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor for the duration of the call (it is borrowed from a
    // live `NetnsFile`); setns only reads it. It affects the calling thread alone, which is the
    // dedicated thread of `open_sockets_in`.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
