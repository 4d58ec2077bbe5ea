//! A connection's activity, for `api.idle_timeout`: when a byte last moved either way, and
//! whether vipd is working on one of its requests. hyper's own timer covers the wait for a
//! request head (`api.header_timeout`); this covers what it does not: an answer the client
//! does not read (the write side blocks), a connection that stalls after its head.
//!
//! Hand-written: hyper 1 has no write or idle timeout on the server side, and tower's timeouts
//! bound a handler's time, not the socket's.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a connection last made progress, and how many of its requests vipd is working on.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    /// Milliseconds since `base` of the last progress.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    /// A connection starting now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long nothing has moved while vipd had nothing to do for the connection (zero
    /// while one of its requests is being worked on).
    pub fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// vipd works on a request until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }
}

/// A request being worked on.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        // The idle time counts from the answer, not from the request.
        self.0.touch();
    }
}

/// A stream whose progress is recorded in an [`Activity`].
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// Watch `inner`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn progress_and_work_move_the_last_progress_mark() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = Activity::new();
            let last = || a.last.load(Ordering::Relaxed);
            let (near, mut far) = tokio::io::duplex(64);
            let mut w = Watched::new(near, Arc::clone(&a));
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(last(), 0);
            assert!(a.idle_for() >= Duration::from_millis(5));
            far.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            w.read_exact(&mut b).await.unwrap();
            let after_read = last();
            assert!(after_read >= 5, "a read is progress");
            let busy = a.busy();
            assert_eq!(a.idle_for(), Duration::ZERO, "never idle while vipd works");
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(busy);
            assert!(
                last() >= after_read + 5,
                "the idle time counts from the answer"
            );
            w.write_all(b"y").await.unwrap();
            far.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"y");
        });
    }
}
