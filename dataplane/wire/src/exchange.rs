//! Whole exchanges both sides of the protocol run as peers: a client reading
//! from a worker and a worker copying a block from another (replication)
//! send the same `Read` and take the same answer. No socket policy here
//! (time-outs, pools, retries are the caller's); only the frames in order.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::{
    ErrorFrame, HELLO_VERSION, Hello, Kind, ReadRequest, WireError, accept_version, decode_u64,
    expect, write_frame,
};

/// The handshake every data connection starts with: `Hello` (this side's
/// protocol version and `user`), answered `Ok` or refused with an `Error`
/// frame (`Ok(Err(frame))`; the worker closes the connection then). One
/// place, right after connecting, so a transport layered under it (TLS)
/// wraps the stream before this runs.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    user: &str,
) -> Result<Result<(), ErrorFrame>, WireError> {
    // Every version so far has the same frames: the agreed one is not kept.
    Ok(hello_version(s, user, HELLO_VERSION).await?.map(|_| ()))
}

/// As [`hello`], offering `version`: the version the worker answered (at
/// most `version`, at least 1), or its refusal.
pub async fn hello_version<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    user: &str,
    version: u16,
) -> Result<Result<u16, ErrorFrame>, WireError> {
    let h = Hello {
        version,
        user: user.to_string(),
    };
    write_frame(s, Kind::Hello, &h.encode()).await?;
    match expect(s, Kind::Ok).await? {
        Ok(body) => {
            let v = accept_version(decode_u64(Kind::Ok, &body)?, version)?;
            Ok(Ok(v))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// The `host:port` to dial for a worker's advertised host and data port
/// (an IPv6 host goes in brackets).
pub fn host_port(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sends `req` and reads the bytes it names straight into `dst`, which must
/// be exactly `req.length` long (a `ReadOk` announcing another length is
/// malformed). The worker's refusal is `Ok(Err(frame))`: the stream is then
/// at a frame boundary and may be reused; any `Err` leaves it mid-exchange.
pub async fn read_block<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &ReadRequest,
    dst: &mut [u8],
) -> Result<Result<(), ErrorFrame>, WireError> {
    write_frame(s, Kind::Read, &req.encode()).await?;
    let body = match expect(s, Kind::ReadOk).await? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let n = decode_u64(Kind::ReadOk, &body)?;
    if n != dst.len() as u64 {
        return Err(WireError::Malformed {
            kind: Kind::ReadOk,
            reason: format!("asked for {} bytes, the worker sends {n}", dst.len()),
        });
    }
    s.read_exact(dst).await?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, ReadType, u64_body};
    use tokio::io::AsyncWriteExt;

    fn req(length: u64) -> ReadRequest {
        ReadRequest {
            block_id: 7,
            offset: 0,
            length,
            block_length: length,
            file_offset: 0,
            read_type: ReadType::NoCache,
            source: None,
            token: Vec::new(),
        }
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("10.0.0.1", 29999), "10.0.0.1:29999");
        assert_eq!(host_port("::1", 29999), "[::1]:29999");
    }

    #[tokio::test]
    async fn the_bytes_land_in_dst_and_a_refusal_keeps_its_code() {
        let (mut c, mut w) = tokio::io::duplex(1 << 16);
        let peer = tokio::spawn(async move {
            // First request: served.
            let h = crate::read_header(&mut w).await.unwrap();
            assert_eq!(h.kind, Kind::Read);
            let body = crate::read_body(&mut w, h).await.unwrap();
            assert_eq!(ReadRequest::decode(Kind::Read, &body).unwrap().length, 5);
            write_frame(&mut w, Kind::ReadOk, &u64_body(5))
                .await
                .unwrap();
            w.write_all(b"hello").await.unwrap();
            // Second: refused.
            let h = crate::read_header(&mut w).await.unwrap();
            crate::read_body(&mut w, h).await.unwrap();
            let e = ErrorFrame::new(eddy_proto::EddyCode::NotFound, "no such block");
            write_frame(&mut w, Kind::Error, &e.encode()).await.unwrap();
            // Third: the wrong length.
            let h = crate::read_header(&mut w).await.unwrap();
            crate::read_body(&mut w, h).await.unwrap();
            let h = Header {
                kind: Kind::ReadOk,
                body_len: 8,
            };
            w.write_all(&h.encode()).await.unwrap();
            w.write_all(&u64_body(4)).await.unwrap();
        });
        let mut dst = [0u8; 5];
        read_block(&mut c, &req(5), &mut dst)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&dst, b"hello");
        let refused = read_block(&mut c, &req(5), &mut dst).await.unwrap();
        assert_eq!(refused.unwrap_err().code, eddy_proto::EddyCode::NotFound);
        let e = read_block(&mut c, &req(5), &mut dst).await.unwrap_err();
        assert!(
            matches!(
                e,
                WireError::Malformed {
                    kind: Kind::ReadOk,
                    ..
                }
            ),
            "{e}"
        );
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn the_handshake_takes_the_version_the_worker_answers_up_to_its_own() {
        let (mut c, mut w) = tokio::io::duplex(1 << 12);
        let peer = tokio::spawn(async move {
            for answer in [1u64, u64::from(HELLO_VERSION) + 1] {
                let h = crate::read_header(&mut w).await.unwrap();
                let body = crate::read_body(&mut w, h).await.unwrap();
                let hello = Hello::decode(&body).unwrap();
                assert_eq!(
                    (hello.version, hello.user.as_str()),
                    (HELLO_VERSION, "alice")
                );
                write_frame(&mut w, Kind::Ok, &u64_body(answer))
                    .await
                    .unwrap();
            }
            // A client offering a newer version than this worker speaks
            // gets this worker's.
            let h = crate::read_header(&mut w).await.unwrap();
            let body = crate::read_body(&mut w, h).await.unwrap();
            let theirs = Hello::decode(&body).unwrap().version;
            let agreed = crate::agree_version(theirs).unwrap();
            write_frame(&mut w, Kind::Ok, &u64_body(u64::from(agreed)))
                .await
                .unwrap();
        });
        assert_eq!(
            hello_version(&mut c, "alice", HELLO_VERSION).await.unwrap(),
            Ok(1)
        );
        let e = hello(&mut c, "alice").await.unwrap_err();
        assert!(
            matches!(e, WireError::Malformed { kind: Kind::Ok, .. }),
            "{e}"
        );
        let newer = HELLO_VERSION + 1;
        let agreed = hello_version(&mut c, "alice", newer).await.unwrap();
        assert_eq!(agreed, Ok(HELLO_VERSION));
        peer.await.unwrap();
    }
}
