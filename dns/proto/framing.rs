//! DNS over a stream (RFC 1035 4.2.2, RFC 7766): every message behind a two-byte length. The one
//! place that frames, for the server's TCP connections and for its TCP exchanges upstream.

use tokio::io::{AsyncRead, AsyncReadExt};

/// `message` behind its length; an error for one longer than 65,535 bytes (nothing this server
/// writes is: answers are built within that).
pub fn frame(message: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::other("a DNS message is at most 65,535 bytes"))?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// The length of the next message; `None` when the stream ended cleanly before it.
pub async fn read_len<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<u16>> {
    match r.read_u16().await {
        Ok(len) => Ok(Some(len)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `len` bytes of a message whose length was read.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, len: u16) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::from(len)];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_read_back() {
        let framed = frame(b"hello").unwrap();
        assert_eq!(&framed[..2], &[0, 5]);
        let mut r = &framed[..];
        let len = read_len(&mut r).await.unwrap().unwrap();
        assert_eq!(read_body(&mut r, len).await.unwrap(), b"hello");
        assert_eq!(read_len(&mut r).await.unwrap(), None, "a clean end");
        assert!(frame(&vec![0; 70_000]).is_err());
    }
}
