//! The cap on what one connection may read from a server ([`MAX_READ_BYTES`]), counted below the client
//! library, which would buffer a reply of any size.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one connection may read from its server in one pass, 1 MiB (a kept connection starts counting again
/// when the next pass takes it, see [`super::pool`]). A pass on one server is short (an `INFO`, a few `CONFIG
/// GET`s or `ACL GETUSER`s), and a real server's replies to it are a few kilobytes; an `INFO` whose keyspace
/// lists some 25 000 non-empty databases would be over it, and that server is then reported as unreadable. A
/// connection that reaches the cap is closed.
pub const MAX_READ_BYTES: usize = 1024 * 1024;

/// A stream that fails once more than [`MAX_READ_BYTES`] have been read from it, and says so in `exceeded`.
pub(super) struct Capped<S> {
    inner: S,
    /// Read in this pass; the pool resets it when a pass takes the connection.
    read: Arc<AtomicUsize>,
    exceeded: Arc<AtomicBool>,
}

impl<S> Capped<S> {
    pub(super) fn new(inner: S, exceeded: &Arc<AtomicBool>, read: &Arc<AtomicUsize>) -> Self {
        Capped {
            inner,
            read: read.clone(),
            exceeded: exceeded.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let read = this.read.load(Ordering::SeqCst);
        if read >= MAX_READ_BYTES {
            this.exceeded.store(true, Ordering::SeqCst);
            return Poll::Ready(Err(std::io::Error::other(
                "the server sent more than the operator reads from one connection",
            )));
        }
        // Never ask for more than the cap leaves, so what the library buffers stays within it.
        let room = MAX_READ_BYTES - read;
        if buf.remaining() <= room {
            let before = buf.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            this.count(buf.filled().len() - before);
            return polled;
        }
        let mut scratch = vec![0u8; room];
        let mut limited = ReadBuf::new(&mut scratch);
        let polled = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
        buf.put_slice(limited.filled());
        this.count(limited.filled().len());
        polled
    }
}

impl<S> Capped<S> {
    fn count(&self, bytes: usize) {
        self.read.fetch_add(bytes, Ordering::SeqCst);
        super::cost::READ_BYTES.inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
