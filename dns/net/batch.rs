//! Datagrams in batches: one `recvmmsg` takes every query waiting on a socket (up to [`BATCH`]),
//! one `sendmmsg` sends the answers of a batch. This is how Knot DNS keeps the system calls
//! per query well under one at load, while a lone query still costs one receive and one send:
//! the receive blocks until the first datagram only (`MSG_WAITFORONE`) and takes the others
//! that are already there, so a batch never waits to fill.
//!
//! A leaf of `net`: it imports only `libc` and `socket2` (addresses). The system calls are
//! written here rather than taken from a crate: this is the hot path of every UDP answer, its
//! buffers are kept from batch to batch, and nothing is allocated per call.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams taken by one receive call at most (Knot takes 10; more buys little once a batch
/// amortises the wake-up and the calls).
pub const BATCH: usize = 16;

/// The largest datagram a query can be.
const DATAGRAM: usize = 65_535;

/// Buffers and headers for one receive call, kept from batch to batch.
pub struct Inbox {
    bufs: Vec<Box<[u8]>>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

impl Inbox {
    pub fn new() -> Inbox {
        let mut bufs: Vec<Box<[u8]>> = (0..BATCH)
            .map(|_| vec![0u8; DATAGRAM].into_boxed_slice())
            .collect();
        // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (unspecified) value.
        let mut addrs: Vec<libc::sockaddr_storage> =
            (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        let iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let headers = Vec::with_capacity(BATCH);
        let mut inbox = Inbox {
            bufs,
            addrs: Vec::new(),
            iovecs,
            headers,
            received: 0,
        };
        for (addr, iovec) in addrs.iter_mut().zip(inbox.iovecs.iter_mut()) {
            // SAFETY: mmsghdr is plain data; the pointers are set just below.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_iov = iovec;
            h.msg_hdr.msg_iovlen = 1;
            inbox.headers.push(h);
        }
        inbox.addrs = addrs;
        inbox
    }

    /// Blocks until at least one datagram is waiting on `fd`, then takes as many as are there
    /// (at most [`BATCH`]); how many. `Ok(0)` after the socket was shut down for reading.
    pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        for h in &mut self.headers {
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: `headers` holds BATCH valid headers whose buffers and address slots the Inbox
        // owns for its whole life; the kernel writes at most their given lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(std::io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last batch: its bytes (a datagram cut to the buffer is whole, as no
    /// query can be larger), its sender, or `None` for a datagram from an address that is not
    /// IP (none on these sockets) or the empty read of a shut down socket.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let h = &self.headers[i];
        let len = (h.msg_len as usize).min(DATAGRAM);
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: the kernel filled `addrs[i]` with `msg_namelen` bytes of an address, and
        // SockAddrStorage is a sockaddr_storage.
        let addr = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.addrs[i];
            SockAddr::new(storage, h.msg_hdr.msg_namelen)
        };
        let from = addr.as_socket()?;
        Some((&self.bufs[i][..len], from))
    }
}

/// Answers of one batch, sent with one call. Its headers are kept from batch to batch.
pub struct Outbox {
    answers: Vec<(Vec<u8>, SockAddr)>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            answers: Vec::with_capacity(BATCH),
            iovecs: Box::new(
                [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; BATCH],
            ),
            // SAFETY: mmsghdr is plain data; all zeroes is a valid (empty) header.
            headers: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

impl Outbox {
    pub fn push(&mut self, bytes: Vec<u8>, to: SocketAddr) {
        self.answers.push((bytes, SockAddr::from(to)));
    }

    /// Sends every answer held (blocking while the socket's buffer is full, so a full buffer
    /// slows the receive loop rather than losing answers) and empties the box. A send that
    /// fails for one answer (an unreachable client) is skipped; the rest still go.
    pub fn send(&mut self, fd: RawFd) {
        let mut start = 0;
        while start < self.answers.len() {
            let chunk = &self.answers[start..(start + BATCH).min(self.answers.len())];
            for (i, (bytes, to)) in chunk.iter().enumerate() {
                self.iovecs[i] = libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                };
                let h = &mut self.headers[i];
                h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = to.len();
                h.msg_hdr.msg_iov = &mut self.iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first `chunk.len()` headers point at answers and addresses that live
            // until the call returns; the kernel only reads them.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                start += n as usize;
            } else {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The first answer of the rest failed: skip it, send the others.
                tracing::debug!(%error, "udp send failed");
                start += 1;
            }
        }
        self.answers.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}
