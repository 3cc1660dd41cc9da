//! Waiting for a namespace's link notifications on the tokio reactor.

use std::io;

use tokio::io::unix::AsyncFd;

use super::socket::{RouteSocket, Watch};

/// A non-blocking socket subscribed to the calling thread's namespace's link changes.
pub struct LinkWatcher {
    fd: AsyncFd<RouteSocket>,
}

impl LinkWatcher {
    /// Opens the socket in the calling thread's namespace. Call it inside a tokio runtime.
    pub fn open() -> io::Result<Self> {
        let socket = RouteSocket::open(Watch::Links)?;
        socket.set_non_blocking()?;
        // SAFETY: `socket` owns its descriptor for its whole life and is moved into the
        // AsyncFd, which deregisters it before the socket (and so the descriptor) is dropped;
        // nothing else closes or reuses that descriptor meanwhile.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(LinkWatcher { fd })
    }

    /// Waits until links changed (or notifications were lost), then returns.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable_mut().await?;
            let socket = ready.get_inner_mut();
            // Reads everything queued; a read error other than "nothing left" is reported.
            let drained = socket.drain_notifications();
            let changed = socket.take_changed();
            ready.clear_ready();
            drained.map_err(io::Error::other)?;
            if changed {
                return Ok(());
            }
        }
    }
}
