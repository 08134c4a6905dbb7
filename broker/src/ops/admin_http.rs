//! A minimal HTTP endpoint for operators and orchestrators: `GET /health` (the process is up)
//! and `GET /ready` (every shard finished recovery and is listening). Runs on its own plain
//! thread, away from the shards. `GET /metrics` serves the shards' counters in Prometheus
//! text format (see [`crate::ops::metrics`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

/// Bound on one request line + headers; anything larger is refused.
const REQUEST_BYTES_MAX: usize = 8 * 1024;

pub struct AdminState {
    pub ready_shards: Arc<AtomicUsize>,
    pub shards: usize,
    pub metrics: std::sync::Arc<crate::ops::metrics::Metrics>,
}

/// Binds now (so a bad address fails start-up) and serves on a background thread.
pub fn start(addr: SocketAddr, state: AdminState) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot bind the admin endpoint --admin-addr {addr}: {e}"))?;
    let local = listener.local_addr()?;
    info!(addr = %local, "admin endpoint listening (/health, /ready, /metrics)");
    std::thread::Builder::new()
        .name("admin-http".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &state) {
                            warn!(error = %e, "admin request failed");
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "admin accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(local)
}

fn answer(stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    // Drain headers (bounded) so clients are not reset before they read the answer.
    let mut total = first.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        total += n;
        if n == 0 || line == "\r\n" || line == "\n" || total > REQUEST_BYTES_MAX {
            break;
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("");
    let ready = state.ready_shards.load(Ordering::SeqCst) >= state.shards;
    let mut content_type = "text/plain";
    let (status, body) = match path {
        "/health" => ("200 OK", "ok\n".to_string()),
        "/metrics" => {
            content_type = "text/plain; version=0.0.4";
            let mut body = state.metrics.render();
            body.push_str(&crate::cluster::quorum::render_metrics());
            ("200 OK", body)
        }
        "/ready" if ready => ("200 OK", "ready\n".to_string()),
        "/ready" => (
            "503 Service Unavailable",
            format!(
                "not ready: {}/{} shards recovered and listening\n",
                state.ready_shards.load(Ordering::SeqCst),
                state.shards
            ),
        ),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
