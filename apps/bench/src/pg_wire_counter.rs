//! Counting PostgreSQL round trips on the wire, from outside the engine: a loopback TCP
//! proxy between the benchmark's connections and the server that reads the frontend
//! messages passing through it. A round trip is a message the client then waits on: `Sync`
//! (ending an extended-protocol exchange, or alone: sqlx's ping when a pooled connection is
//! acquired) or `Query` (the simple protocol: `BEGIN`, `COMMIT`, `LISTEN`). Used only by the
//! round-trip workload; the timed workloads connect directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Counts {
    syncs: AtomicU64,
    queries: AtomicU64,
    parses: AtomicU64,
    executes: AtomicU64,
    pings: AtomicU64,
    connections: AtomicU64,
}

/// What crossed the wire so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wire {
    /// `Sync` + `Query` messages: exchanges the client waited on.
    pub round_trips: u64,
    /// `Execute` + `Query`: statements run.
    pub statements: u64,
    /// `Parse`: statements prepared (a statement seen for the first time on a connection).
    pub parses: u64,
    /// `Sync` alone: connection checks on acquire.
    pub pings: u64,
    pub connections: u64,
}

impl std::ops::Sub for Wire {
    type Output = Wire;
    fn sub(self, o: Wire) -> Wire {
        Wire {
            round_trips: self.round_trips - o.round_trips,
            statements: self.statements - o.statements,
            parses: self.parses - o.parses,
            pings: self.pings - o.pings,
            connections: self.connections - o.connections,
        }
    }
}

pub struct WireCounter {
    addr: SocketAddr,
    counts: Arc<Counts>,
    accept: JoinHandle<()>,
}

impl WireCounter {
    /// Listen on a loopback port and relay every connection to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Result<WireCounter> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(relay(client, upstream.clone(), c.clone()));
            }
        });
        Ok(WireCounter { addr, counts, accept })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn snapshot(&self) -> Wire {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Acquire);
        Wire {
            round_trips: get(&c.syncs) + get(&c.queries),
            statements: get(&c.executes) + get(&c.queries),
            parses: get(&c.parses),
            pings: get(&c.pings),
            connections: get(&c.connections),
        }
    }
}

impl Drop for WireCounter {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(client: TcpStream, upstream: String, counts: Arc<Counts>) {
    let Ok(server) = TcpStream::connect(&upstream).await else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut frontend = Frontend::default();
        while let Ok(k) = client_read.read(&mut buf).await {
            if k == 0 || server_write.write_all(&buf[..k]).await.is_err() {
                break;
            }
            frontend.feed(&buf[..k], &counts);
        }
        let _ = server_write.shutdown().await;
    };
    tokio::join!(down, up);
}

/// Splits the client's byte stream into protocol messages: first untyped start-up packets
/// (`SSLRequest`, `GSSENCRequest`, then the `StartupMessage`), then `type + length + body`.
#[derive(Default)]
struct Frontend {
    started: bool,
    pending: Vec<u8>,
    /// A `Parse`/`Bind`/`Describe`/`Execute` since the last `Sync`.
    busy: bool,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

impl Frontend {
    fn feed(&mut self, bytes: &[u8], c: &Counts) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if !self.started {
                if rest.len() < 8 {
                    break;
                }
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < len {
                    break;
                }
                let code = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                self.started = code != SSL_REQUEST && code != GSSENC_REQUEST;
                at += len.max(8);
                continue;
            }
            if rest.len() < 5 {
                break;
            }
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if rest.len() < 1 + len {
                break;
            }
            match rest[0] {
                b'Q' => {
                    c.queries.fetch_add(1, Ordering::AcqRel);
                }
                b'S' => {
                    c.syncs.fetch_add(1, Ordering::AcqRel);
                    if !self.busy {
                        c.pings.fetch_add(1, Ordering::AcqRel);
                    }
                    self.busy = false;
                }
                b'P' => {
                    c.parses.fetch_add(1, Ordering::AcqRel);
                    self.busy = true;
                }
                b'E' => {
                    c.executes.fetch_add(1, Ordering::AcqRel);
                    self.busy = true;
                }
                b'B' | b'D' => self.busy = true,
                _ => {}
            }
            at += 1 + len.max(4);
        }
        self.pending.drain(..at);
    }
}
