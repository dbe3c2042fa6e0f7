//! A TCP stream of length-prefixed messages, delivered in pieces cut at arbitrary points and cut
//! short at an arbitrary point: the server's framing reads back exactly the whole messages sent,
//! in order, and reports the rest as the end of the stream or an error, never as a message; each
//! message read is answered as over TCP, and the answer parses and frames.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use arbitrary::Arbitrary;
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use lodestar::Snapshot;
use server::gen::{ask, runtime, server};
use server::pipeline::Handler;
use server::proto::framing::{frame, read_body, read_len};
use server::proto::Transport;
use tokio::io::{AsyncRead, ReadBuf};

#[derive(Arbitrary, Debug)]
struct Input {
    messages: Vec<Vec<u8>>,
    /// Sizes of the pieces the stream arrives in (each at least one byte).
    pieces: Vec<u8>,
    /// Bytes cut from the end of the stream.
    cut: u16,
}

/// A reader that hands out the stream in the given pieces.
struct Pieces {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<u8>,
    next: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = usize::from(self.sizes.get(self.next).copied().unwrap_or(255)).max(1);
        self.next += 1;
        let n = size.min(buf.remaining()).min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

fn handler() -> &'static Arc<Handler> {
    static H: OnceLock<Arc<Handler>> = OnceLock::new();
    H.get_or_init(|| {
        let (view, handler) = server();
        let mut snap = Snapshot::from_values([
            (
                "dev/webapp/redis/1",
                br#"{"host":"10.0.0.1","port":6379}"#.as_slice(),
                1,
            ),
            (
                "dev/webapp/www",
                br#"{"host":"redis.webapp.dev"}"#.as_slice(),
                1,
            ),
        ]);
        view.publish(&mut snap, true);
        Arc::new(handler)
    })
}

fuzz_target!(|input: Input| {
    let messages: Vec<&Vec<u8>> = input.messages.iter().take(16).collect();
    let mut data = Vec::new();
    for m in &messages {
        data.extend(frame(m).expect("under 65,535 bytes"));
    }
    let cut = usize::from(input.cut).min(data.len());
    data.truncate(data.len() - cut);
    let total = data.len();
    let mut r = Pieces {
        data,
        at: 0,
        sizes: input.pieces,
        next: 0,
    };
    let read = runtime().block_on(async {
        let mut got = Vec::new();
        loop {
            let len = match read_len(&mut r).await {
                Ok(Some(len)) => len,
                Ok(None) | Err(_) => break,
            };
            match read_body(&mut r, len).await {
                Ok(body) => got.push(body),
                Err(_) => break,
            }
        }
        got
    });
    // Exactly the messages that were whole before the cut, in order.
    let mut whole = 0;
    let mut end = 0;
    for m in &messages {
        end += 2 + m.len();
        if end <= total {
            whole += 1;
        }
    }
    assert_eq!(read.len(), whole, "whole messages read");
    for (got, sent) in read.iter().zip(&messages) {
        assert_eq!(got, *sent);
    }
    for m in read.iter().take(4) {
        if let Some(bytes) = ask(handler(), m, Transport::Tcp) {
            Message::from_vec(&bytes).expect("every answer parses");
            frame(&bytes).expect("every answer frames");
        }
    }
});
