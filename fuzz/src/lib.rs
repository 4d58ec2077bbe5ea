//! Fuzz targets for vipd's packet core, with their oracles. Three targets:
//!
//! * [`pipeline`]: sequences of frames (raw bytes, or valid frames of every class vipd handles,
//!   mutated) through two workers sharing a fixed snapshot with NAT, DR and TUN services, flow
//!   state kept across frames and time advancing. Every transmitted frame is checked by
//!   etherparse and by the oracles in [`oracle`]; no allocation is allowed inside the pipeline.
//! * [`wire`]: every header view on arbitrary bytes, compared field by field with etherparse.
//! * [`rewrites`]: the NAT, tunnel, ICMP too-big and ICMP relay rewrites on arbitrary packets:
//!   no panic, and checksums that were right stay right.
//!
//! The entry points in `fuzz_targets/` are libFuzzer's (scripts/fuzz builds them on stable
//! Rust); `cargo test` here replays the committed corpus through the same functions.

pub mod alloc;
pub mod fixture;
pub mod oracle;
pub mod pipeline;
pub mod rewrites;
pub mod seeds;
pub mod wire;

/// A cursor over the fuzzer's input.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Read from the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// The next byte, if any.
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next two bytes as a big-endian number (missing bytes read as 0).
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0)])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}
