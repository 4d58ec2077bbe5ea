//! HTTP over vipd's local admin socket (`api.socket`): a ureq transport on a Unix stream.
//! Hand-written because ureq speaks TCP only; it uses ureq's connector interface
//! (`unversioned`: pinned by Cargo.lock), so requests, answers and errors go through the very
//! code the TCP client uses.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Connects every request to the socket at its path, whatever the URL's host.
#[derive(Debug)]
pub struct UnixConnector(pub PathBuf);

/// The socket needs no name resolution.
#[derive(Debug)]
pub struct NoResolver;

impl Resolver for NoResolver {
    fn resolve(
        &self,
        _: &ureq::http::Uri,
        _: &ureq::config::Config,
        _: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        Ok(self.empty())
    }
}

/// One connection to the socket.
#[derive(Debug)]
pub struct UnixTransport {
    stream: UnixStream,
    buffers: LazyBuffers,
}

impl<In: Transport> Connector<In> for UnixConnector {
    type Out = UnixTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let stream = UnixStream::connect(&self.0)?;
        let c = details.config;
        Ok(Some(UnixTransport {
            stream,
            buffers: LazyBuffers::new(c.input_buffer_size(), c.output_buffer_size()),
        }))
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

impl Transport for UnixTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        self.stream
            .set_write_timeout(timeout.not_zero().map(|d| *d))?;
        match self.stream.write_all(&self.buffers.output()[..amount]) {
            Err(e) if timed_out(&e) => Err(ureq::Error::Timeout(timeout.reason)),
            r => Ok(r?),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        self.stream
            .set_read_timeout(timeout.not_zero().map(|d| *d))?;
        let n = match self.stream.read(self.buffers.input_append_buf()) {
            Err(e) if timed_out(&e) => return Err(ureq::Error::Timeout(timeout.reason)),
            r => r?,
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // One request per connection: vipctl makes a handful.
        false
    }
}
