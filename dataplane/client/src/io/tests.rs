//! The reader's and writer's exchanges against a small in-test worker that
//! speaks the data protocol on a real loopback socket. The master is never
//! asked: the reader is handed the file's metadata, the write session is
//! opened on the worker directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eddy_wire::{ErrorFrame, Kind, ReadRequest, ReadType, WriteOk, WriteOpen, WriteType};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::block::BlockTransport;
use super::conn::TcpWorker;
use super::reader::FileReader;
use super::tcp_write::{TcpWrite, WRITE_CHUNK};
use crate::options::ClientOptions;
use crate::shared::{FileInfo, Shared};
use crate::{EddyCode, MasterClient, pb};

/// How the in-test worker answers the next `Read`s.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Serve,
    /// An `Error` frame (NOT_FOUND): the stream stays whole.
    Refuse,
    /// An `Error` frame INTERNAL, as a worker whose disk tier failed under
    /// the fill answers.
    Fail,
    /// `ReadOk` announcing one byte more than asked, then nothing.
    WrongLength,
    /// Reads the request and never answers.
    Stall,
}

#[derive(Default)]
struct Seen {
    /// (block id, offset, length) of each `Read`.
    reads: Vec<(u64, u64, u64)>,
    /// Bytes of `Data` frames, and the total a `WriteClose` named.
    written: Vec<u8>,
    closed_with: Option<u64>,
    cancelled: bool,
}

struct FakeWorker {
    addr: String,
    blocks: HashMap<u64, Vec<u8>>,
    answer: Mutex<Answer>,
    accepted: AtomicUsize,
    seen: Mutex<Seen>,
}

impl FakeWorker {
    async fn start(blocks: HashMap<u64, Vec<u8>>) -> Arc<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let w = Arc::new(Self {
            addr: l.local_addr().unwrap().to_string(),
            blocks,
            answer: Mutex::new(Answer::Serve),
            accepted: AtomicUsize::new(0),
            seen: Mutex::default(),
        });
        let me = w.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                me.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(me.clone().serve(s));
            }
        });
        w
    }

    async fn serve(self: Arc<Self>, mut s: TcpStream) {
        while let Ok(h) = eddy_wire::read_header(&mut s).await {
            let Ok(body) = eddy_wire::read_body(&mut s, h).await else {
                return;
            };
            let refuse = *self.answer.lock() == Answer::Refuse;
            let answered = match h.kind {
                Kind::Read => self.read(&mut s, &body).await,
                // Loads, stats and opens are served or refused whole.
                Kind::Load | Kind::Stats | Kind::WriteOpen if refuse => {
                    let e = ErrorFrame::new(EddyCode::NotFound, "refused");
                    eddy_wire::write_frame(&mut s, Kind::Error, &e.encode()).await
                }
                Kind::Load => eddy_wire::write_frame(&mut s, Kind::Ok, &[]).await,
                // The handshake every connection starts with.
                Kind::Hello => {
                    eddy_wire::write_frame(&mut s, Kind::Ok, &eddy_wire::u64_body(1)).await
                }
                Kind::Stats => {
                    let stats = eddy_wire::encode_stats(&[("reads".into(), 1)]);
                    eddy_wire::write_frame(&mut s, Kind::StatsOk, &stats).await
                }
                Kind::WriteOpen => eddy_wire::write_frame(&mut s, Kind::Ok, &[]).await,
                Kind::Data => {
                    self.seen.lock().written.extend_from_slice(&body);
                    Ok(())
                }
                Kind::WriteClose => {
                    let total = eddy_wire::decode_u64(Kind::WriteClose, &body).unwrap();
                    self.seen.lock().closed_with = Some(total);
                    let ok = WriteOk {
                        length: total,
                        blocks: 1,
                        fingerprint: String::new(),
                    };
                    eddy_wire::write_frame(&mut s, Kind::WriteOk, &ok.encode()).await
                }
                Kind::WriteCancel => {
                    self.seen.lock().cancelled = true;
                    Ok(())
                }
                _ => return,
            };
            if answered.is_err() {
                return;
            }
        }
    }

    async fn read(&self, s: &mut TcpStream, body: &[u8]) -> Result<(), eddy_wire::WireError> {
        let r = ReadRequest::decode(Kind::Read, body)?;
        self.seen
            .lock()
            .reads
            .push((r.block_id, r.offset, r.length));
        let answer = *self.answer.lock();
        match answer {
            Answer::Serve => {
                let b = &self.blocks[&r.block_id];
                let (from, to) = (r.offset as usize, (r.offset + r.length) as usize);
                eddy_wire::write_frame(s, Kind::ReadOk, &eddy_wire::u64_body(r.length)).await?;
                s.write_all(&b[from..to]).await?;
                Ok(())
            }
            Answer::Refuse => {
                let e = ErrorFrame::new(EddyCode::NotFound, "no such block here");
                eddy_wire::write_frame(s, Kind::Error, &e.encode()).await
            }
            Answer::Fail => {
                let e = ErrorFrame::new(EddyCode::Internal, "the disk tier failed");
                eddy_wire::write_frame(s, Kind::Error, &e.encode()).await
            }
            Answer::WrongLength => {
                let n = eddy_wire::u64_body(r.length + 1);
                eddy_wire::write_frame(s, Kind::ReadOk, &n).await
            }
            Answer::Stall => {
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }

    fn set(&self, a: Answer) {
        *self.answer.lock() = a;
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A client whose master is never reached, with short exchanges and no
/// short-circuit (every byte goes over TCP).
fn shared(timeout: Duration) -> Arc<Shared> {
    let master = MasterClient::lazy_with_timeout("127.0.0.1:1", timeout).unwrap();
    let opts = ClientOptions {
        short_circuit: false,
        timeout,
        ..Default::default()
    };
    Arc::new(Shared::new(master, opts))
}

const BS: u64 = 4;

/// A complete 10-byte file of 4-byte blocks (0..4, 4..8, 8..10), every
/// block cached on `w`.
fn file_on(w: &FakeWorker) -> (Arc<FileInfo>, Vec<u8>) {
    file_on_all(&[w])
}

/// As [`file_on`], every block cached on each of `ws` (listed in order).
fn file_on_all(ws: &[&FakeWorker]) -> (Arc<FileInfo>, Vec<u8>) {
    let data: Vec<u8> = (0u8..10).map(|i| b'a' + i).collect();
    let locations: Vec<pb::BlockLocation> = ws
        .iter()
        .zip(1u64..)
        .map(|(w, id)| {
            let (host, port) = w.addr.rsplit_once(':').unwrap();
            pb::BlockLocation {
                worker_id: id,
                host: host.into(),
                data_port: port.parse().unwrap(),
                ..Default::default()
            }
        })
        .collect();
    let blocks = (0..3u64)
        .map(|i| pb::FileBlock {
            block_id: eddy_proto::block_id(1, i),
            offset: i * BS,
            length: BS.min(10 - i * BS),
            locations: locations.clone(),
        })
        .collect();
    let info = FileInfo {
        path: b"/f".to_vec(),
        status: pb::FileStatus {
            id: 1,
            length: 10,
            block_size: BS,
            complete: true,
            ..Default::default()
        },
        blocks,
        ufs: None,
        grace_left_ms: 0,
        block_token: Vec::new(),
    };
    (Arc::new(info), data)
}

fn blocks_of(data: &[u8]) -> HashMap<u64, Vec<u8>> {
    data.chunks(BS as usize)
        .enumerate()
        .map(|(i, c)| (eddy_proto::block_id(1, i as u64), c.to_vec()))
        .collect()
}

fn whole_block(len: u64) -> ReadRequest {
    ReadRequest {
        block_id: eddy_proto::block_id(1, 0),
        offset: 0,
        length: len,
        block_length: len,
        file_offset: 0,
        read_type: ReadType::Cache,
        source: None,
        token: Vec::new(),
    }
}

#[tokio::test]
async fn a_range_across_block_boundaries_comes_whole_over_one_pooled_connection() {
    let data: Vec<u8> = (0u8..10).map(|i| b'a' + i).collect();
    let w = FakeWorker::start(blocks_of(&data)).await;
    let (info, data) = file_on(&w);
    let sh = shared(Duration::from_secs(5));
    let r = FileReader::new(sh.clone(), info, ReadType::Cache);
    // Bytes 2..9: the end of block 0, all of block 1, the start of block 2.
    let mut buf = [0u8; 7];
    assert_eq!(r.read_at(2, &mut buf).await.unwrap(), 7);
    assert_eq!(&buf, &data[2..9]);
    let b = |i| eddy_proto::block_id(1, i);
    assert_eq!(
        w.seen.lock().reads,
        [(b(0), 2, 2), (b(1), 0, 4), (b(2), 0, 1)]
    );
    // Each good read gave the connection back for the next one.
    assert_eq!(w.accepted(), 1);
    assert_eq!(sh.pool.idle_count(&w.addr), 1);
    // Past the end: short, then nothing.
    let mut tail = [0u8; 8];
    assert_eq!(r.read_at(6, &mut tail).await.unwrap(), 4);
    assert_eq!(&tail[..4], &data[6..]);
    assert_eq!(r.read_at(10, &mut tail).await.unwrap(), 0);
    assert_eq!(w.accepted(), 1);
}

#[tokio::test]
async fn a_worker_failing_inside_itself_is_skipped_for_the_next_holder() {
    let data: Vec<u8> = (0u8..10).map(|i| b'a' + i).collect();
    let broken = FakeWorker::start(blocks_of(&data)).await;
    let good = FakeWorker::start(blocks_of(&data)).await;
    broken.set(Answer::Fail);
    let (info, data) = file_on_all(&[&broken, &good]);
    let sh = shared(Duration::from_secs(5));
    let r = FileReader::new(sh, info, ReadType::Cache);
    let mut buf = [0u8; 4];
    assert_eq!(r.read_at(4, &mut buf).await.unwrap(), 4);
    assert_eq!(&buf, &data[4..8]);
    let b1 = eddy_proto::block_id(1, 1);
    assert_eq!(broken.seen.lock().reads, [(b1, 0, 4)], "asked first");
    assert_eq!(good.seen.lock().reads, [(b1, 0, 4)], "then the next");
}

#[tokio::test]
async fn a_connection_goes_back_after_an_answer_and_not_after_a_broken_exchange() {
    let data: Vec<u8> = (0u8..10).map(|i| b'a' + i).collect();
    let w = FakeWorker::start(blocks_of(&data)).await;
    let sh = shared(Duration::from_secs(5));
    let t = TcpWorker {
        shared: &sh,
        addr: &w.addr,
    };
    let mut dst = [0u8; BS as usize];
    t.fetch(&whole_block(BS), &mut dst).await.unwrap();
    assert_eq!(&dst, &data[..4]);
    assert_eq!(sh.pool.idle_count(&w.addr), 1);
    // A refusal is a whole answer: the worker's code, and the connection
    // is reused.
    w.set(Answer::Refuse);
    let e = t.fetch(&whole_block(BS), &mut dst).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NotFound, "{e}");
    assert_eq!(sh.pool.idle_count(&w.addr), 1);
    assert_eq!(w.accepted(), 1);
    // An answer that breaks off mid-exchange: PROTOCOL, and that
    // connection never serves another request (the read is tried once more
    // on a fresh one, which breaks off too).
    w.set(Answer::WrongLength);
    let e = t.fetch(&whole_block(BS), &mut dst).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::Protocol, "{e}");
    assert_eq!(sh.pool.idle_count(&w.addr), 0);
    assert_eq!(w.accepted(), 2);
    w.set(Answer::Serve);
    t.fetch(&whole_block(BS), &mut dst).await.unwrap();
    assert_eq!(w.accepted(), 3, "the next read dialled a fresh connection");
    assert_eq!(sh.pool.idle_count(&w.addr), 1);
}

#[tokio::test]
async fn a_refused_load_stats_or_open_leaves_the_connection_reusable() {
    let w = FakeWorker::start(HashMap::new()).await;
    let sh = shared(Duration::from_secs(5));
    let t = TcpWorker {
        shared: &sh,
        addr: &w.addr,
    };
    t.load(&whole_block(BS)).await.unwrap();
    assert_eq!(t.stats().await.unwrap(), [("reads".to_string(), 1)]);
    assert_eq!(sh.pool.idle_count(&w.addr), 1);
    // Each refusal is a whole `Error` frame: the worker's code, and the
    // connection serves the next request.
    w.set(Answer::Refuse);
    let e = t.load(&whole_block(BS)).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NotFound, "{e}");
    let e = t.stats().await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NotFound, "{e}");
    let e = TcpWrite::open(&sh, &w.addr, &open()).await.err().unwrap();
    assert_eq!(e.code(), EddyCode::NotFound, "{e}");
    assert_eq!(sh.pool.idle_count(&w.addr), 1);
    assert_eq!(w.accepted(), 1, "one connection served all six");
}

#[tokio::test]
async fn a_worker_that_stops_answering_is_deadline_exceeded_naming_it() {
    let data = vec![7u8; BS as usize];
    let w = FakeWorker::start(blocks_of(&data)).await;
    w.set(Answer::Stall);
    let sh = shared(Duration::from_millis(300));
    let t = TcpWorker {
        shared: &sh,
        addr: &w.addr,
    };
    let mut dst = [0u8; BS as usize];
    let e = t.fetch(&whole_block(BS), &mut dst).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::DeadlineExceeded, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&w.addr) && text.contains("raise the client timeout"),
        "{text}"
    );
    // Not asked again on a second connection, and nothing kept.
    assert_eq!(w.seen.lock().reads.len(), 1);
    assert_eq!(sh.pool.idle_count(&w.addr), 0);
}

/// Waits (at most 5 s) until `cond` holds: the worker reads on its own task.
async fn eventually(cond: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited.await.expect("the worker never saw it");
}

fn open() -> WriteOpen {
    WriteOpen {
        file_id: 1,
        block_size: 64 << 20,
        write_type: WriteType::MustCache,
        target: None,
        token: Vec::new(),
    }
}

#[tokio::test]
async fn a_write_session_is_committed_at_close_and_gives_its_connection_back() {
    let w = FakeWorker::start(HashMap::new()).await;
    let sh = shared(Duration::from_secs(5));
    let mut s = TcpWrite::open(&sh, &w.addr, &open()).await.unwrap();
    // Held by the session, not idle.
    assert_eq!(sh.pool.idle_count(&w.addr), 0);
    let big: Vec<u8> = (0..WRITE_CHUNK + 5).map(|i| i as u8).collect();
    s.write(&big).await.unwrap();
    s.write(b"tail").await.unwrap();
    // The large write went out as it came; the small tail waits for close.
    eventually(|| w.seen.lock().written.len() == big.len()).await;
    assert_eq!(w.seen.lock().closed_with, None);
    let total = (big.len() + 4) as u64;
    let ok = s.close(total).await.unwrap();
    assert_eq!(ok.length, total);
    let seen = w.seen.lock();
    assert_eq!(seen.closed_with, Some(total));
    assert_eq!(&seen.written[..big.len()], &big[..]);
    assert_eq!(&seen.written[big.len()..], b"tail");
    drop(seen);
    assert_eq!(sh.pool.idle_count(&w.addr), 1);
}

#[tokio::test]
async fn a_cancelled_or_dropped_write_session_never_goes_back_to_the_pool() {
    let w = FakeWorker::start(HashMap::new()).await;
    let sh = shared(Duration::from_secs(5));
    let mut s = TcpWrite::open(&sh, &w.addr, &open()).await.unwrap();
    s.write(b"abc").await.unwrap();
    s.cancel().await;
    assert_eq!(sh.pool.idle_count(&w.addr), 0);
    let mut s = TcpWrite::open(&sh, &w.addr, &open()).await.unwrap();
    s.write(b"abc").await.unwrap();
    drop(s);
    assert_eq!(sh.pool.idle_count(&w.addr), 0);
    assert_eq!(w.accepted(), 2);
}
